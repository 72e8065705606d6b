import Foundation

/// A parsed chat template (a subset of Jinja, as Hugging Face renders chat templates: jinja2 with
/// `trim_blocks`, `lstrip_blocks` and loop controls, in the immutable sandbox).
///
/// Supported: text, `{{ }}`, comments, whitespace control; `if`/`elif`/`else`, `for` (with `else`,
/// an `if` filter, unpacking, `loop.index`/`index0`/`revindex`/`revindex0`/`first`/`last`/`length`/
/// `previtem`/`nextitem`, `break`/`continue`), `set` (names, tuples, `ns.attr`, blocks), `macro`,
/// `filter` blocks; literals, lists, dicts, tuples, arithmetic, `~`, comparisons, `in`,
/// `and`/`or`/`not`, conditional expressions, subscripts and slices; the filters and tests in
/// `JinjaInterpreter+Builtins.swift`; string methods (`strip`, `split`, `startswith`, ...) and dict
/// methods (`items`, `keys`, `values`, `get`); globals `range`, `namespace`, `dict`,
/// `raise_exception` and `strftime_now`.
///
/// The template is data: `include`, `import`, `extends` and the like are refused, attribute access
/// reaches only keys of the values passed in or built by the template and the methods listed (no
/// `__class__`, no host objects), and each rendering is bounded by `JinjaLimits` (steps, output
/// bytes, depth), each with its own `JinjaError.Kind`.
public struct JinjaTemplate: Sendable {
    let nodes: [JinjaNode]
    public let limits: JinjaLimits

    public init(_ source: String, limits: JinjaLimits = JinjaLimits()) throws(JinjaError) {
        self.limits = limits
        nodes = try JinjaParser.parse(source, limits: limits)
    }

    /// Renders with `context` as the template's variables. The result keeps provenance: template
    /// text apart from data (`JinjaString`).
    public func render(_ context: [String: JinjaValue]) throws(JinjaError) -> JinjaString {
        let interpreter = JinjaInterpreter(limits: limits, context: context)
        _ = try interpreter.execute(nodes)
        return interpreter.output
    }
}

/// Walks the nodes of one rendering.
final class JinjaInterpreter {
    enum Flow { case normal, breakLoop, continueLoop }

    let limits: JinjaLimits
    var scopes: [[String: JinjaValue]]
    var output = JinjaString("", fromTemplate: true)
    var steps = 0
    var callDepth = 0
    var line = 1

    init(limits: JinjaLimits, context: [String: JinjaValue]) {
        self.limits = limits
        var globals: [String: JinjaValue] = [:]
        for name in ["range", "namespace", "dict", "raise_exception", "strftime_now"] { globals[name] = .function(name, receiver: nil) }
        scopes = [globals, context]
    }

    func error(_ kind: JinjaError.Kind, _ message: String) -> JinjaError { JinjaError(kind, message, line: line) }

    func step() throws(JinjaError) {
        steps += 1
        if steps > limits.steps {
            throw error(.stepLimit, "the template took more than \(limits.steps) steps (limit: steps)")
        }
    }

    /// Refuses a string or list larger than the output bound.
    func checkSize(_ bytes: Int) throws(JinjaError) {
        if bytes > limits.outputBytes {
            throw error(.outputLimit, "a value of \(bytes) bytes or elements is larger than \(limits.outputBytes) (limit: output bytes)")
        }
    }

    func emit(_ s: JinjaString) throws(JinjaError) {
        for p in s.pieces { output.append(p) }
        if output.string.utf8.count > limits.outputBytes {
            throw error(.outputLimit, "the output is larger than \(limits.outputBytes) bytes (limit: output bytes)")
        }
    }

    func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() {
            if let v = scope[name] { return v }
        }
        return .undefined(name)
    }

    func assign(_ name: String, _ value: JinjaValue) {
        scopes[scopes.count - 1][name] = value
    }

    // MARK: Statements

    func execute(_ nodes: [JinjaNode]) throws(JinjaError) -> Flow {
        for node in nodes {
            try step()
            switch node {
            case let .text(t):
                try emit(JinjaString(t, fromTemplate: true))
            case let .output(e, l):
                line = l
                try emit(stringValue(try evaluate(e)))
            case let .ifBlock(branches, otherwise, l):
                line = l
                var taken = false
                for (condition, body) in branches {
                    guard try evaluate(condition).truthy else { continue }
                    taken = true
                    let flow = try execute(body)
                    if flow != .normal { return flow }
                    break
                }
                if !taken {
                    let flow = try execute(otherwise)
                    if flow != .normal { return flow }
                }
            case let .forBlock(targets, iterable, condition, body, otherwise, l):
                line = l
                try loop(targets: targets, iterable: iterable, condition: condition, body: body, otherwise: otherwise)
            case let .set(targets, attribute, e, l):
                line = l
                let value = try evaluate(e)
                if let attribute {
                    guard case let .namespace(ns) = lookup(targets[0]) else {
                        throw error(.type, "'\(targets[0])' is not a namespace: 'set \(targets[0]).\(attribute)' needs one")
                    }
                    ns.object[attribute] = value
                } else if targets.count == 1 {
                    assign(targets[0], value)
                } else {
                    let items = try iterate(value)
                    guard items.count == targets.count else {
                        throw error(.type, "cannot unpack \(items.count) values into \(targets.count) names")
                    }
                    for (t, v) in zip(targets, items) { assign(t, v) }
                }
            case let .setBlock(name, body, l):
                line = l
                assign(name, .string(try capture(body)))
            case let .macro(m):
                assign(m.name, .macro(m))
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            case let .filterBlock(name, body, l):
                line = l
                let text = try capture(body)
                try emit(stringValue(try filter(name, .string(text), [], [:])))
            }
        }
        return .normal
    }

    /// The output of `body`, rendered apart.
    func capture(_ body: [JinjaNode]) throws(JinjaError) -> JinjaString {
        let saved = output
        output = JinjaString("", fromTemplate: true)
        defer { output = saved }
        _ = try execute(body)
        return output
    }

    func loop(targets: [String], iterable: JinjaExpression, condition: JinjaExpression?, body: [JinjaNode], otherwise: [JinjaNode]) throws(JinjaError) {
        var items = try iterate(try evaluate(iterable))
        if let condition {
            var kept: [JinjaValue] = []
            scopes.append([:])
            for item in items {
                try bind(targets, item)
                if try evaluate(condition).truthy { kept.append(item) }
            }
            scopes.removeLast()
            items = kept
        }
        if items.isEmpty {
            _ = try execute(otherwise)
            return
        }
        let n = items.count
        for (i, item) in items.enumerated() {
            var info = JinjaObject()
            info["index"] = .int(i + 1)
            info["index0"] = .int(i)
            info["revindex"] = .int(n - i)
            info["revindex0"] = .int(n - i - 1)
            info["first"] = .bool(i == 0)
            info["last"] = .bool(i == n - 1)
            info["length"] = .int(n)
            info["previtem"] = i > 0 ? items[i - 1] : .undefined("loop.previtem")
            info["nextitem"] = i < n - 1 ? items[i + 1] : .undefined("loop.nextitem")
            info["depth"] = .int(1)
            info["depth0"] = .int(0)
            scopes.append(["loop": .object(info)])
            try bind(targets, item)
            let flow = try execute(body)
            scopes.removeLast()
            if flow == .breakLoop { break }
        }
    }

    func bind(_ targets: [String], _ item: JinjaValue) throws(JinjaError) {
        if targets.count == 1 {
            assign(targets[0], item)
            return
        }
        let parts = try iterate(item)
        guard parts.count == targets.count else { throw error(.type, "cannot unpack \(parts.count) values into \(targets.count) loop variables") }
        for (t, v) in zip(targets, parts) { assign(t, v) }
    }

    /// The items a `for` visits: list elements, dict keys, string characters; nothing for undefined.
    func iterate(_ v: JinjaValue) throws(JinjaError) -> [JinjaValue] {
        switch v {
        case let .array(a): return a
        case let .object(o): return o.keys.map { .text($0) }
        case let .namespace(ns): return ns.object.keys.map { .text($0) }
        case let .string(s): return s.string.map { .string(JinjaString(String($0), fromTemplate: s.isTemplate)) }
        case .undefined: return []
        default: throw error(.type, "a \(v.typeName) cannot be iterated")
        }
    }

    /// The value as output text: strings keep their provenance, anything else is printed as data.
    func stringValue(_ v: JinjaValue) -> JinjaString {
        switch v {
        case let .string(s): s
        case .undefined: JinjaString("", fromTemplate: true)
        default: .data(v.printed)
        }
    }

    // MARK: Expressions

    func evaluate(_ e: JinjaExpression) throws(JinjaError) -> JinjaValue {
        try step()
        switch e {
        case let .literal(v):
            return v
        case let .name(n):
            return lookup(n)
        case let .list(items), let .tuple(items):
            var out: [JinjaValue] = []
            for item in items { out.append(try evaluate(item)) }
            return .array(out)
        case let .dict(pairs):
            var o = JinjaObject()
            for (k, v) in pairs {
                guard case let .string(key) = try evaluate(k) else { throw error(.type, "dict keys must be strings") }
                o[key.string] = try evaluate(v)
            }
            return .object(o)
        case let .attribute(base, name):
            return try attribute(try evaluate(base), name, describing: base)
        case let .subscript(base, key):
            return try item(try evaluate(base), try evaluate(key), describing: base)
        case let .slice(base, a, b, c):
            return try slice(try evaluate(base), try a.map { e throws(JinjaError) in try evaluate(e) },
                             try b.map { e throws(JinjaError) in try evaluate(e) }, try c.map { e throws(JinjaError) in try evaluate(e) })
        case let .call(f, args, kwargs):
            let callee = try evaluate(f)
            var values: [JinjaValue] = []
            for a in args { values.append(try evaluate(a)) }
            var named: [String: JinjaValue] = [:]
            for (k, v) in kwargs { named[k] = try evaluate(v) }
            return try call(callee, values, named, describing: f)
        case let .filter(base, name, args, kwargs):
            let value = try evaluate(base)
            var values: [JinjaValue] = []
            for a in args { values.append(try evaluate(a)) }
            var named: [String: JinjaValue] = [:]
            for (k, v) in kwargs { named[k] = try evaluate(v) }
            return try filter(name, value, values, named)
        case let .test(base, name, args, negated):
            let value = try evaluate(base)
            var values: [JinjaValue] = []
            for a in args { values.append(try evaluate(a)) }
            return .bool(try test(name, value, values) != negated)
        case let .unary(op, operand):
            let v = try evaluate(operand)
            switch op {
            case "not": return .bool(!v.truthy)
            case "-":
                switch v {
                case let .int(i): return .int(0 &- i)
                case let .double(d): return .double(-d)
                case let .bool(b): return .int(b ? -1 : 0)
                default: throw error(.type, "cannot negate a \(v.typeName)")
                }
            default:
                guard v.number != nil else { throw error(.type, "unary '+' needs a number, not a \(v.typeName)") }
                return v
            }
        case let .binary(op, l, r):
            let left = try evaluate(l)
            switch op {
            case "and": return left.truthy ? try evaluate(r) : left
            case "or": return left.truthy ? left : try evaluate(r)
            default: return try binary(op, left, try evaluate(r))
            }
        case let .conditional(condition, then, otherwise):
            if try evaluate(condition).truthy { return try evaluate(then) }
            return try otherwise.map { e throws(JinjaError) in try evaluate(e) } ?? .undefined("the else branch")
        }
    }

    func name(of e: JinjaExpression) -> String {
        switch e {
        case let .name(n): n
        case let .attribute(b, n): name(of: b) + "." + n
        case .subscript(let b, .literal(let k)): name(of: b) + "[" + k.repr + "]"
        default: "a value"
        }
    }

    static let stringMethods: Set<String> = ["strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper", "lower", "title",
                                             "capitalize", "replace", "find", "count", "join", "splitlines", "isdigit", "isalpha", "isspace"]
    static let dictMethods: Set<String> = ["items", "keys", "values", "get"]

    func attribute(_ v: JinjaValue, _ name: String, describing base: JinjaExpression) throws(JinjaError) -> JinjaValue {
        if name.hasPrefix("_") {
            throw error(.unsupported, "the attribute '\(name)' is refused: templates reach only data keys and the listed methods")
        }
        switch v {
        case let .undefined(n):
            throw error(.type, "'\(n)' is undefined (reading .\(name))")
        case let .object(o):
            if Self.dictMethods.contains(name) { return .function(name, receiver: v) }
            return o[name] ?? .undefined(self.name(of: base) + "." + name)
        case let .namespace(ns):
            return ns.object[name] ?? .undefined(self.name(of: base) + "." + name)
        case .string:
            if Self.stringMethods.contains(name) { return .function(name, receiver: v) }
            return .undefined(self.name(of: base) + "." + name)
        default:
            return .undefined(self.name(of: base) + "." + name)
        }
    }

    func item(_ v: JinjaValue, _ key: JinjaValue, describing base: JinjaExpression) throws(JinjaError) -> JinjaValue {
        switch (v, key) {
        case let (.undefined(n), _):
            throw error(.type, "'\(n)' is undefined (reading [\(key.repr)])")
        case let (.object(o), .string(k)):
            if let value = o[k.string] { return value }
            if Self.dictMethods.contains(k.string) { return .function(k.string, receiver: v) }
            return .undefined(name(of: base) + "[" + key.repr + "]")
        case let (.namespace(ns), .string(k)):
            return ns.object[k.string] ?? .undefined(name(of: base) + "[" + key.repr + "]")
        case let (.array(a), _):
            guard case let .int(i) = key else {
                if case let .bool(b) = key { return a.indices.contains(b ? 1 : 0) ? a[b ? 1 : 0] : .undefined("index") }
                throw error(.type, "list indices must be integers, not \(key.typeName)")
            }
            let j = i < 0 ? a.count + i : i
            return a.indices.contains(j) ? a[j] : .undefined(name(of: base) + "[\(i)]")
        case let (.string(s), .int(i)):
            let chars = Array(s.string)
            let j = i < 0 ? chars.count + i : i
            return chars.indices.contains(j) ? .string(JinjaString(String(chars[j]), fromTemplate: s.isTemplate)) : .undefined("index")
        case (.string(let s), .string(let k)) where Self.stringMethods.contains(k.string):
            return .function(k.string, receiver: .string(s))
        default:
            return .undefined(name(of: base) + "[" + key.repr + "]")
        }
    }

    /// Python's slice indices for a sequence of `count`.
    func sliceIndices(_ count: Int, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?) throws(JinjaError) -> [Int] {
        func int(_ v: JinjaValue?) throws(JinjaError) -> Int? {
            switch v {
            case nil, .none?: return nil
            case let .int(i)?: return i
            case let other?: throw error(.type, "slice indices must be integers, not \(other.typeName)")
            }
        }
        let step = try int(c) ?? 1
        guard step != 0 else { throw error(.type, "a slice step cannot be zero") }
        func clamp(_ i: Int?, _ defaultValue: Int) -> Int {
            guard var i else { return defaultValue }
            if i < 0 { i += count }
            if step > 0 { return min(max(i, 0), count) }
            return min(max(i, -1), count - 1)
        }
        let start = clamp(try int(a), step > 0 ? 0 : count - 1)
        let stop = clamp(try int(b), step > 0 ? count : -1)
        var out: [Int] = []
        var i = start
        while step > 0 ? i < stop : i > stop {
            out.append(i)
            i += step
        }
        return out
    }

    func slice(_ v: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?) throws(JinjaError) -> JinjaValue {
        switch v {
        case let .array(items):
            return .array(try sliceIndices(items.count, a, b, c).map { items[$0] })
        case let .string(s):
            let chars = Array(s.string)
            let picked = try sliceIndices(chars.count, a, b, c).map { chars[$0] }
            return .string(JinjaString(String(picked), fromTemplate: s.isTemplate))
        case let .undefined(n):
            throw error(.type, "'\(n)' is undefined (slicing it)")
        default:
            throw error(.type, "a \(v.typeName) cannot be sliced")
        }
    }

    func call(_ callee: JinjaValue, _ args: [JinjaValue], _ kwargs: [String: JinjaValue], describing f: JinjaExpression) throws(JinjaError) -> JinjaValue {
        switch callee {
        case let .function(name, receiver):
            if let receiver { return try method(name, receiver, args, kwargs) }
            return try global(name, args, kwargs)
        case let .macro(m):
            return try callMacro(m, args, kwargs)
        case let .undefined(n):
            throw error(.type, "'\(n)' is undefined and cannot be called")
        default:
            throw error(.type, "'\(name(of: f))' (a \(callee.typeName)) cannot be called")
        }
    }

    func callMacro(_ m: JinjaMacro, _ args: [JinjaValue], _ kwargs: [String: JinjaValue]) throws(JinjaError) -> JinjaValue {
        callDepth += 1
        defer { callDepth -= 1 }
        guard callDepth <= limits.depth else {
            throw error(.depthLimit, "macro calls nest deeper than \(limits.depth) levels (limit: depth)")
        }
        guard args.count <= m.parameters.count else {
            throw error(.type, "macro '\(m.name)' takes \(m.parameters.count) arguments, not \(args.count)")
        }
        var frame: [String: JinjaValue] = [:]
        for (i, (p, defaultValue)) in m.parameters.enumerated() {
            if i < args.count {
                frame[p] = args[i]
            } else if let v = kwargs[p] {
                frame[p] = v
            } else if let defaultValue {
                frame[p] = try evaluate(defaultValue)
            } else {
                frame[p] = .undefined(p)
            }
        }
        frame[m.name] = .macro(m)
        // A macro sees the globals and the template's top level, not its caller's locals.
        let saved = scopes
        scopes = Array(scopes.prefix(2)) + [frame]
        defer { scopes = saved }
        return .string(try capture(m.body))
    }
}
