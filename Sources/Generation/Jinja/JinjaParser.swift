/// An expression of the template language.
indirect enum JinjaExpression: Sendable {
    case literal(JinjaValue)
    case name(String)
    case list([JinjaExpression])
    case tuple([JinjaExpression])
    case dict([(JinjaExpression, JinjaExpression)])
    case attribute(JinjaExpression, String)
    case `subscript`(JinjaExpression, JinjaExpression)
    case slice(JinjaExpression, JinjaExpression?, JinjaExpression?, JinjaExpression?)
    case call(JinjaExpression, [JinjaExpression], [(String, JinjaExpression)])
    case filter(JinjaExpression, String, [JinjaExpression], [(String, JinjaExpression)])
    case test(JinjaExpression, String, [JinjaExpression], negated: Bool)
    case unary(String, JinjaExpression)
    case binary(String, JinjaExpression, JinjaExpression)
    case conditional(JinjaExpression, then: JinjaExpression, otherwise: JinjaExpression?)
}

/// A statement of the template: text, output, and the blocks of the subset.
indirect enum JinjaNode: Sendable {
    case text(String)
    case output(JinjaExpression, line: Int)
    case ifBlock([(JinjaExpression, [JinjaNode])], otherwise: [JinjaNode], line: Int)
    case forBlock(targets: [String], iterable: JinjaExpression, condition: JinjaExpression?, body: [JinjaNode], otherwise: [JinjaNode], line: Int)
    /// `set name = value`, `set a, b = value`, `set ns.attr = value`.
    case set(targets: [String], attribute: String?, JinjaExpression, line: Int)
    case setBlock(String, [JinjaNode], line: Int)
    case macro(JinjaMacro)
    case breakLoop, continueLoop
    /// `{% filter name %}...{% endfilter %}`.
    case filterBlock(String, [JinjaNode], line: Int)
}

/// Parses the lexer's parts into nodes (recursive descent, jinja2's precedence). Nesting deeper
/// than `JinjaLimits.depth` is refused (`.depthLimit`).
struct JinjaParser {
    let parts: [JinjaLexer.Part]
    var index = 0
    let maxDepth: Int
    var depth = 0
    // Expression state.
    var tokens: [JinjaToken] = []
    var position = 0
    var line = 1

    init(parts: [JinjaLexer.Part], maxDepth: Int) {
        self.parts = parts
        self.maxDepth = maxDepth
    }

    static func parse(_ source: String, limits: JinjaLimits) throws(JinjaError) -> [JinjaNode] {
        var parser = JinjaParser(parts: try JinjaLexer.parts(source), maxDepth: limits.depth)
        let (nodes, end) = try parser.block(until: [])
        if let end { throw JinjaError(.syntax, "unexpected '{% \(end) %}'", line: parser.line) }
        return nodes
    }

    static let refused: Set<String> = ["include", "import", "from", "extends", "block", "raw", "call", "with", "autoescape", "do", "trans"]

    /// Nodes up to one of `enders` (returned, its tokens left in `tokens`), or to the end.
    mutating func block(until enders: Set<String>) throws(JinjaError) -> ([JinjaNode], String?) {
        depth += 1
        defer { depth -= 1 }
        guard depth <= maxDepth else { throw JinjaError(.depthLimit, "blocks nest deeper than \(maxDepth) levels", line: line) }
        var nodes: [JinjaNode] = []
        while index < parts.count {
            let part = parts[index]
            index += 1
            switch part {
            case let .text(t, l):
                line = l
                nodes.append(.text(t))
            case let .output(toks, l):
                begin(toks, l)
                let e = try expression()
                try finishTag()
                nodes.append(.output(e, line: l))
            case let .statement(toks, l):
                begin(toks, l)
                guard case let .name(keyword)? = peek else { throw JinjaError(.syntax, "a '{%' tag needs a statement", line: l) }
                if enders.contains(keyword) { return (nodes, keyword) }
                position += 1
                nodes.append(try statement(keyword, line: l))
            }
        }
        if !enders.isEmpty {
            throw JinjaError(.syntax, "the template ends inside a block (expected \(enders.sorted().map { "'{% \($0) %}'" }.joined(separator: " or ")))", line: line)
        }
        return (nodes, nil)
    }

    mutating func statement(_ keyword: String, line l: Int) throws(JinjaError) -> JinjaNode {
        switch keyword {
        case "if":
            var branches: [(JinjaExpression, [JinjaNode])] = []
            var condition = try expression()
            try finishTag()
            while true {
                let (body, end) = try block(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                position += 1
                switch end ?? "" {
                case "elif":
                    condition = try expression()
                    try finishTag()
                case "else":
                    try finishTag()
                    let (otherwise, _) = try block(until: ["endif"])
                    position += 1
                    try finishTag()
                    return .ifBlock(branches, otherwise: otherwise, line: l)
                default:
                    try finishTag()
                    return .ifBlock(branches, otherwise: [], line: l)
                }
            }
        case "for":
            var targets = [try name()]
            while accept(",") { targets.append(try name()) }
            guard accept(.name("in")) else { throw JinjaError(.syntax, "'for' needs 'in'", line: l) }
            let iterable = try orExpression(allowConditional: false)
            var condition: JinjaExpression?
            if accept(.name("if")) { condition = try orExpression(allowConditional: false) }
            if accept(.name("recursive")) { throw JinjaError(.unsupported, "recursive loops are not supported", line: l) }
            try finishTag()
            let (body, end) = try block(until: ["else", "endfor"])
            position += 1
            try finishTag()
            var otherwise: [JinjaNode] = []
            if end == "else" {
                (otherwise, _) = try block(until: ["endfor"])
                position += 1
                try finishTag()
            }
            return .forBlock(targets: targets, iterable: iterable, condition: condition, body: body, otherwise: otherwise, line: l)
        case "set":
            var targets = [try name()]
            var attribute: String?
            if accept(".") { attribute = try name() }
            while attribute == nil, accept(",") { targets.append(try name()) }
            if attribute == nil, targets.count == 1, atEnd {
                let (body, _) = try block(until: ["endset"])
                position += 1
                try finishTag()
                return .setBlock(targets[0], body, line: l)
            }
            guard accept("=") else { throw JinjaError(.syntax, "'set' needs '='", line: l) }
            let value = try tupleOrExpression()
            try finishTag()
            return .set(targets: targets, attribute: attribute, value, line: l)
        case "macro":
            let macroName = try name()
            guard accept("(") else { throw JinjaError(.syntax, "'macro' needs a parameter list", line: l) }
            var parameters: [(String, JinjaExpression?)] = []
            while !accept(")") {
                let p = try name()
                var defaultValue: JinjaExpression?
                if accept("=") { defaultValue = try expression() }
                parameters.append((p, defaultValue))
                if !accept(",") {
                    guard accept(")") else { throw JinjaError(.syntax, "expected ',' or ')' in the parameters of '\(macroName)'", line: l) }
                    break
                }
            }
            try finishTag()
            let (body, _) = try block(until: ["endmacro"])
            position += 1
            try finishTag()
            return .macro(JinjaMacro(name: macroName, parameters: parameters, body: body))
        case "break", "continue":
            try finishTag()
            return keyword == "break" ? .breakLoop : .continueLoop
        case "filter":
            let filterName = try name()
            try finishTag()
            let (body, _) = try block(until: ["endfilter"])
            position += 1
            try finishTag()
            return .filterBlock(filterName, body, line: l)
        case "generation":
            // Hugging Face's AssistantTracker marks; render the body as is.
            try finishTag()
            let (body, _) = try block(until: ["endgeneration"])
            position += 1
            try finishTag()
            return .ifBlock([(.literal(.bool(true)), body)], otherwise: [], line: l)
        default:
            if Self.refused.contains(keyword) {
                throw JinjaError(.unsupported, "'{% \(keyword) %}' is refused: a chat template cannot read other templates or files", line: l)
            }
            throw JinjaError(.unsupported, "the statement '\(keyword)' is not supported", line: l)
        }
    }

    // MARK: Tokens

    mutating func begin(_ toks: [JinjaToken], _ l: Int) {
        tokens = toks
        position = 0
        line = l
    }

    var peek: JinjaToken? { position < tokens.count ? tokens[position] : nil }
    var atEnd: Bool { position >= tokens.count }

    mutating func accept(_ op: String) -> Bool { accept(.op(op)) }

    mutating func accept(_ token: JinjaToken) -> Bool {
        guard peek == token else { return false }
        position += 1
        return true
    }

    mutating func expect(_ op: String) throws(JinjaError) {
        guard accept(op) else { throw JinjaError(.syntax, "expected '\(op)'\(found)", line: line) }
    }

    var found: String {
        switch peek {
        case nil: " at the end of the tag"
        case let .name(n)?: ", found '\(n)'"
        case let .op(o)?: ", found '\(o)'"
        case .string?: ", found a string"
        default: ", found a number"
        }
    }

    mutating func finishTag() throws(JinjaError) {
        guard atEnd else { throw JinjaError(.syntax, "unexpected tokens at the end of the tag\(found)", line: line) }
    }

    mutating func name() throws(JinjaError) -> String {
        guard case let .name(n)? = peek else { throw JinjaError(.syntax, "expected a name\(found)", line: line) }
        position += 1
        return n
    }

    // MARK: Expressions (jinja2's precedence, loosest first)

    mutating func nest() throws(JinjaError) {
        depth += 1
        guard depth <= maxDepth else { throw JinjaError(.depthLimit, "an expression nests deeper than \(maxDepth) levels", line: line) }
    }

    /// `a, b` without brackets (for `set a, b = ...`), or one expression.
    mutating func tupleOrExpression() throws(JinjaError) -> JinjaExpression {
        let first = try expression()
        guard peek == .op(",") else { return first }
        var items = [first]
        while accept(",") { if atEnd { break }; items.append(try expression()) }
        return .tuple(items)
    }

    mutating func expression() throws(JinjaError) -> JinjaExpression {
        try orExpression(allowConditional: true)
    }

    mutating func orExpression(allowConditional: Bool) throws(JinjaError) -> JinjaExpression {
        try nest()
        defer { depth -= 1 }
        var e = try andExpression()
        while accept(.name("or")) { e = .binary("or", e, try andExpression()) }
        if allowConditional, accept(.name("if")) {
            let condition = try orExpression(allowConditional: false)
            var otherwise: JinjaExpression?
            if accept(.name("else")) { otherwise = try orExpression(allowConditional: true) }
            return .conditional(condition, then: e, otherwise: otherwise)
        }
        return e
    }

    mutating func andExpression() throws(JinjaError) -> JinjaExpression {
        var e = try notExpression()
        while accept(.name("and")) { e = .binary("and", e, try notExpression()) }
        return e
    }

    mutating func notExpression() throws(JinjaError) -> JinjaExpression {
        if accept(.name("not")) {
            try nest()
            defer { depth -= 1 }
            return .unary("not", try notExpression())
        }
        return try comparison()
    }

    mutating func comparison() throws(JinjaError) -> JinjaExpression {
        var e = try sum()
        while true {
            if case let .op(o)? = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                position += 1
                e = .binary(o, e, try sum())
            } else if accept(.name("in")) {
                e = .binary("in", e, try sum())
            } else if peek == .name("not"), position + 1 < tokens.count, tokens[position + 1] == .name("in") {
                position += 2
                e = .binary("not in", e, try sum())
            } else {
                return e
            }
        }
    }

    mutating func sum() throws(JinjaError) -> JinjaExpression {
        var e = try concatenation()
        while case let .op(o)? = peek, o == "+" || o == "-" {
            position += 1
            e = .binary(o, e, try concatenation())
        }
        return e
    }

    mutating func concatenation() throws(JinjaError) -> JinjaExpression {
        var e = try product()
        while accept("~") { e = .binary("~", e, try product()) }
        return e
    }

    mutating func product() throws(JinjaError) -> JinjaExpression {
        var e = try power()
        while case let .op(o)? = peek, ["*", "/", "//", "%"].contains(o) {
            position += 1
            e = .binary(o, e, try power())
        }
        return e
    }

    mutating func power() throws(JinjaError) -> JinjaExpression {
        var e = try unary()
        while accept("**") { e = .binary("**", e, try unary()) }
        return e
    }

    mutating func unary() throws(JinjaError) -> JinjaExpression {
        if case let .op(o)? = peek, o == "-" || o == "+" {
            position += 1
            try nest()
            defer { depth -= 1 }
            return try filtersAndTests(.unary(o, try unary()))
        }
        return try filtersAndTests(try postfix(try primary()))
    }

    mutating func filtersAndTests(_ base: JinjaExpression) throws(JinjaError) -> JinjaExpression {
        var e = base
        while true {
            if accept("|") {
                let f = try dottedName()
                var args: [JinjaExpression] = [], kwargs: [(String, JinjaExpression)] = []
                if accept("(") { (args, kwargs) = try arguments() }
                e = .filter(e, f, args, kwargs)
            } else if accept(.name("is")) {
                let negated = accept(.name("not"))
                let t: String
                if case let .name(n)? = peek {
                    position += 1
                    t = n
                } else if case let .op(o)? = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                    position += 1
                    t = o
                } else {
                    throw JinjaError(.syntax, "expected a test name after 'is'\(found)", line: line)
                }
                var args: [JinjaExpression] = []
                if accept("(") {
                    let (a, _) = try arguments()
                    args = a
                } else if let p = peek, startsPrimary(p) {
                    // `x is divisibleby 3`, `x is sameas none`: one argument without parentheses.
                    args = [try postfix(try primary())]
                }
                e = .test(e, t, args, negated: negated)
            } else {
                return e
            }
        }
    }

    func startsPrimary(_ t: JinjaToken) -> Bool {
        switch t {
        case .string, .int, .double: true
        case let .name(n): !["and", "or", "if", "else", "not", "in", "is", "recursive"].contains(n)
        case let .op(o): o == "(" || o == "[" || o == "{"
        }
    }

    mutating func dottedName() throws(JinjaError) -> String {
        var n = try name()
        while accept(".") { n += "." + (try name()) }
        return n
    }

    /// Arguments after `(`, through `)`.
    mutating func arguments() throws(JinjaError) -> ([JinjaExpression], [(String, JinjaExpression)]) {
        var args: [JinjaExpression] = [], kwargs: [(String, JinjaExpression)] = []
        while !accept(")") {
            if case let .name(n)? = peek, position + 1 < tokens.count, tokens[position + 1] == .op("=") {
                position += 2
                kwargs.append((n, try expression()))
            } else {
                guard kwargs.isEmpty else { throw JinjaError(.syntax, "a positional argument after a keyword argument", line: line) }
                args.append(try expression())
            }
            if !accept(",") {
                try expect(")")
                break
            }
        }
        return (args, kwargs)
    }

    mutating func postfix(_ base: JinjaExpression) throws(JinjaError) -> JinjaExpression {
        var e = base
        while true {
            if accept(".") {
                if case let .int(i)? = peek {
                    position += 1
                    e = .subscript(e, .literal(.int(i)))
                } else {
                    e = .attribute(e, try name())
                }
            } else if accept("[") {
                try nest()
                defer { depth -= 1 }
                var parts: [JinjaExpression?] = [nil]
                var isSlice = false
                while !accept("]") {
                    if accept(":") {
                        isSlice = true
                        parts.append(nil)
                        guard parts.count <= 3 else { throw JinjaError(.syntax, "a slice has at most three parts", line: line) }
                    } else {
                        guard parts[parts.count - 1] == nil else { throw JinjaError(.syntax, "expected ']'\(found)", line: line) }
                        parts[parts.count - 1] = try expression()
                    }
                }
                if isSlice {
                    while parts.count < 3 { parts.append(nil) }
                    e = .slice(e, parts[0], parts[1], parts[2])
                } else {
                    guard let key = parts[0] else { throw JinjaError(.syntax, "an empty subscript '[]'", line: line) }
                    e = .subscript(e, key)
                }
            } else if accept("(") {
                try nest()
                defer { depth -= 1 }
                let (args, kwargs) = try arguments()
                e = .call(e, args, kwargs)
            } else {
                return e
            }
        }
    }

    mutating func primary() throws(JinjaError) -> JinjaExpression {
        guard let t = peek else { throw JinjaError(.syntax, "an expression is missing", line: line) }
        position += 1
        switch t {
        case let .string(s):
            var text = s
            // Adjacent literals join, as in Python.
            while case let .string(more)? = peek { text += more; position += 1 }
            return .literal(.string(JinjaString(text, fromTemplate: true)))
        case let .int(i): return .literal(.int(i))
        case let .double(d): return .literal(.double(d))
        case let .name(n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            try nest()
            defer { depth -= 1 }
            if accept(")") { return .tuple([]) }
            let first = try expression()
            if accept(")") { return first }
            var items = [first]
            while accept(",") {
                if peek == .op(")") { break }
                items.append(try expression())
            }
            try expect(")")
            return .tuple(items)
        case .op("["):
            try nest()
            defer { depth -= 1 }
            var items: [JinjaExpression] = []
            while !accept("]") {
                items.append(try expression())
                if !accept(",") { try expect("]"); break }
            }
            return .list(items)
        case .op("{"):
            try nest()
            defer { depth -= 1 }
            var pairs: [(JinjaExpression, JinjaExpression)] = []
            while !accept("}") {
                let k = try expression()
                try expect(":")
                pairs.append((k, try expression()))
                if !accept(",") { try expect("}"); break }
            }
            return .dict(pairs)
        default:
            position -= 1
            throw JinjaError(.syntax, "unexpected token\(found)", line: line)
        }
    }
}
