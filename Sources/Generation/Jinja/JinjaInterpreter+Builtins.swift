import Foundation

/// Operators, filters, tests, methods and globals, with Python's semantics where the templates
/// depend on them.
///
/// Filters: `trim`/`strip`, `tojson` (Hugging Face's: `json.dumps` with `ensure_ascii=False`,
/// `indent`, `separators`, `sort_keys`), `length`/`count`, `items`, `dictsort`, `upper`, `lower`,
/// `capitalize`, `title`, `default`/`d`, `join`, `first`, `last`, `list`, `string`, `int`, `float`,
/// `abs`, `round`, `reverse`, `sort`, `unique`, `replace`, `indent`, `safe`, `select`, `reject`,
/// `selectattr`, `rejectattr`, `map`, `sum`, `min`, `max`.
/// Tests: `defined`, `undefined`, `none`, `string`, `number`, `integer`, `float`, `boolean`, `true`,
/// `false`, `mapping`, `iterable`, `sequence`, `callable`, `equalto`/`eq`/`==`/`sameas`, `ne`/`!=`,
/// `lt`/`<`, `le`/`<=`, `gt`/`>`, `ge`/`>=`, `in`, `odd`, `even`, `divisibleby`, `lower`, `upper`.
extension JinjaInterpreter {
    // MARK: Operators

    func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws(JinjaError) -> JinjaValue {
        switch op {
        case "==": return .bool(a == b)
        case "!=": return .bool(a != b)
        case "<", ">", "<=", ">=":
            let order: Int
            if let x = a.number, let y = b.number {
                order = x < y ? -1 : (x > y ? 1 : 0)
            } else if case let .string(x) = a, case let .string(y) = b {
                let xs = Array(x.string.unicodeScalars.map(\.value)), ys = Array(y.string.unicodeScalars.map(\.value))
                order = xs.lexicographicallyPrecedes(ys) ? -1 : (xs == ys ? 0 : 1)
            } else {
                throw error(.type, "'\(op)' is not supported between a \(a.typeName) and a \(b.typeName)")
            }
            switch op {
            case "<": return .bool(order < 0)
            case ">": return .bool(order > 0)
            case "<=": return .bool(order <= 0)
            default: return .bool(order >= 0)
            }
        case "in", "not in":
            let found: Bool
            switch b {
            case let .string(s):
                guard case let .string(needle) = a else { throw error(.type, "'in <string>' needs a string on the left, not a \(a.typeName)") }
                found = needle.string.isEmpty || s.string.contains(needle.string)
            case let .array(items): found = items.contains(a)
            case let .object(o):
                if case let .string(k) = a { found = o[k.string] != nil } else { found = false }
            case let .namespace(ns):
                if case let .string(k) = a { found = ns.object[k.string] != nil } else { found = false }
            case let .undefined(n): throw error(.type, "'\(n)' is undefined (the right side of 'in')")
            default: throw error(.type, "'in' needs a string, list or dict on the right, not a \(b.typeName)")
            }
            return .bool(op == "in" ? found : !found)
        case "~":
            let s = stringValue(a) + stringValue(b)
            try checkSize(s.string.utf8.count)
            return .string(s)
        case "+":
            switch (a, b) {
            case let (.string(x), .string(y)):
                try checkSize(x.string.utf8.count + y.string.utf8.count)
                return .string(x + y)
            case let (.array(x), .array(y)):
                try checkSize(x.count + y.count)
                return .array(x + y)
            default: break
            }
        case "*":
            switch (a, b) {
            // Sizes multiplied without overflow ("ab" * 2**62 is over the limit, not a trap).
            case let (.string(s), .int(n)), let (.int(n), .string(s)):
                let (size, overflow) = s.string.utf8.count.multipliedReportingOverflow(by: max(n, 0))
                try checkSize(overflow ? .max : size)
                return .string(s.mapped { String(repeating: $0, count: max(n, 0)) })
            case let (.array(x), .int(n)), let (.int(n), .array(x)):
                let (size, overflow) = x.count.multipliedReportingOverflow(by: max(n, 0))
                try checkSize(overflow ? .max : size)
                return .array(Array(repeating: x, count: max(n, 0)).flatMap { $0 })
            default: break
            }
        default: break
        }
        return try arithmetic(op, a, b)
    }

    func arithmetic(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws(JinjaError) -> JinjaValue {
        func intValue(_ v: JinjaValue) -> Int? {
            switch v {
            case let .int(i): i
            case let .bool(b): b ? 1 : 0
            default: nil
            }
        }
        guard let x = a.number, let y = b.number else {
            throw error(.type, "'\(op)' is not supported between a \(a.typeName) and a \(b.typeName)")
        }
        if let i = intValue(a), let j = intValue(b), op != "/" {
            switch op {
            case "+": let (r, o) = i.addingReportingOverflow(j); if !o { return .int(r) }
            case "-": let (r, o) = i.subtractingReportingOverflow(j); if !o { return .int(r) }
            case "*": let (r, o) = i.multipliedReportingOverflow(by: j); if !o { return .int(r) }
            case "//", "%":
                guard j != 0 else { throw error(.type, "integer division or modulo by zero") }
                guard !(i == .min && j == -1) else { throw error(.type, "integer overflow in '\(op)'") }
                var q = i / j
                if (i % j != 0) && ((i < 0) != (j < 0)) { q -= 1 }
                return .int(op == "//" ? q : i - q * j)
            case "**":
                guard j >= 0 else { return .double(pow(x, y)) }
                var r = 1
                for _ in 0 ..< min(j, 64) {
                    let (m, o) = r.multipliedReportingOverflow(by: i)
                    if o { throw error(.type, "an integer power overflows") }
                    r = m
                }
                if j > 64, abs(i) > 1 { throw error(.type, "an integer power overflows") }
                return .int(r)
            default: break
            }
            if ["+", "-", "*"].contains(op) { throw error(.type, "integer overflow in '\(op)'") }
        }
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/":
            guard y != 0 else { throw error(.type, "division by zero") }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw error(.type, "division by zero") }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw error(.type, "modulo by zero") }
            let r = x.truncatingRemainder(dividingBy: y)
            return .double(r != 0 && (r < 0) != (y < 0) ? r + y : r)
        case "**": return .double(pow(x, y))
        default: throw error(.type, "unknown operator '\(op)'")
        }
    }

    // MARK: Globals and methods

    func global(_ name: String, _ args: [JinjaValue], _ kwargs: [String: JinjaValue]) throws(JinjaError) -> JinjaValue {
        switch name {
        case "range":
            var ints: [Int] = []
            for a in args {
                guard case let .int(i) = a else { throw error(.type, "range() takes integers, not \(a.typeName)") }
                ints.append(i)
            }
            let (start, stop, stride) = switch ints.count {
            case 1: (0, ints[0], 1)
            case 2: (ints[0], ints[1], 1)
            case 3: (ints[0], ints[1], ints[2])
            default: throw error(.type, "range() takes 1 to 3 arguments")
            }
            guard stride != 0 else { throw error(.type, "range() step must not be zero") }
            let span = ((Double(stop) - Double(start)) / Double(stride)).rounded(.up)
            // Each element costs a step, so a huge range is refused before it is built.
            if span > Double(limits.steps - steps) {
                throw error(.stepLimit, "range() of \(span) elements exceeds the \(limits.steps) steps allowed (limit: steps)")
            }
            // The span is only an estimate in Double (range(0, 2**63 - 1, 2**63 // 3) rounds it up
            // past the last element, which would overflow): the elements are counted exactly, and a
            // step past Int's range ends them.
            var elements: [JinjaValue] = []
            var value = start
            while stride > 0 ? value < stop : value > stop {
                elements.append(.int(value))
                let (next, overflow) = value.addingReportingOverflow(stride)
                if overflow { break }
                value = next
            }
            steps += elements.count
            return .array(elements)
        case "namespace", "dict":
            var o = JinjaObject()
            for a in args {
                guard case let .object(d) = a else { throw error(.type, "\(name)() takes a dict or keyword arguments") }
                for (k, v) in d.pairs { o[k] = v }
            }
            for k in kwargs.keys.sorted() { o[k] = kwargs[k] }
            if name == "dict" { return .object(o) }
            let ns = JinjaNamespace()
            ns.object = o
            return .namespace(ns)
        case "raise_exception":
            throw error(.raised, args.first.map { stringValue($0).string } ?? "raise_exception() was called")
        case "strftime_now":
            guard case let .string(format)? = args.first else { throw error(.type, "strftime_now() takes a format string") }
            return .text(Self.strftime(format.string, Date()))
        default:
            throw error(.unsupported, "the function '\(name)' is not supported")
        }
    }

    /// Python's `strftime` for the common directives, in UTC.
    static func strftime(_ format: String, _ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
        let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        let month = months[(c.month ?? 1) - 1], day = days[(c.weekday ?? 1) - 1]
        var out = ""
        var it = format.makeIterator()
        while let ch = it.next() {
            guard ch == "%", let d = it.next() else { out.append(ch); continue }
            switch d {
            case "d": out += String(format: "%02d", c.day ?? 1)
            case "m": out += String(format: "%02d", c.month ?? 1)
            case "Y": out += String(c.year ?? 1970)
            case "y": out += String(format: "%02d", (c.year ?? 1970) % 100)
            case "H": out += String(format: "%02d", c.hour ?? 0)
            case "M": out += String(format: "%02d", c.minute ?? 0)
            case "S": out += String(format: "%02d", c.second ?? 0)
            case "b": out += String(month.prefix(3))
            case "B": out += month
            case "a": out += String(day.prefix(3))
            case "A": out += day
            case "%": out += "%"
            default: out += "%" + String(d)
            }
        }
        return out
    }

    func method(_ name: String, _ receiver: JinjaValue, _ args: [JinjaValue], _ kwargs: [String: JinjaValue]) throws(JinjaError) -> JinjaValue {
        if case let .object(o) = receiver {
            switch name {
            case "items": return .array(o.pairs.map { .array([.text($0.0), $0.1]) })
            case "keys": return .array(o.keys.map { .text($0) })
            case "values": return .array(o.pairs.map(\.1))
            default: // get
                guard case let .string(k)? = args.first else { throw error(.type, "get() takes a string key") }
                return o[k.string] ?? (args.count > 1 ? args[1] : .none)
            }
        }
        guard case let .string(s) = receiver else { throw error(.type, "no method '\(name)' on a \(receiver.typeName)") }
        func stringArg(_ i: Int) throws(JinjaError) -> String? {
            guard i < args.count else { return nil }
            switch args[i] {
            case let .string(a): return a.string
            case .none: return nil
            default: throw error(.type, "\(name)() takes string arguments, not \(args[i].typeName)")
            }
        }
        let text = s.string
        switch name {
        case "strip", "lstrip", "rstrip":
            let chars = try stringArg(0).map { Set($0.unicodeScalars) }
            return .string(s.mapped { Self.strip($0, chars: chars, leading: name != "rstrip", trailing: name != "lstrip") })
        case "upper": return .string(s.mapped { $0.uppercased() })
        case "lower": return .string(s.mapped { $0.lowercased() })
        case "title": return .string(s.mapped(Self.title))
        case "capitalize": return .string(s.mapped { $0.prefix(1).uppercased() + $0.dropFirst().lowercased() })
        case "startswith", "endswith":
            var candidates: [String] = []
            if case let .array(items)? = args.first {
                for case let .string(c) in items { candidates.append(c.string) }
            } else if let c = try stringArg(0) {
                candidates = [c]
            }
            return .bool(candidates.contains { name == "startswith" ? text.unicodeScalars.starts(with: $0.unicodeScalars)
                                                                       : text.unicodeScalars.reversed().starts(with: $0.unicodeScalars.reversed()) })
        case "split":
            let separator = try stringArg(0)
            var maxSplit = -1
            if args.count > 1, case let .int(m) = args[1] { maxSplit = m }
            return .array(Self.split(text, separator, maxSplit: maxSplit).map { .string(JinjaString($0, fromTemplate: s.isTemplate)) })
        case "splitlines":
            return .array(text.split(omittingEmptySubsequences: false) { $0 == "\n" }.map { .string(JinjaString(String($0), fromTemplate: s.isTemplate)) })
        case "replace":
            guard let old = try stringArg(0), let new = try stringArg(1) else { throw error(.type, "replace() takes two strings") }
            return .string(s.mapped { $0.replacingOccurrences(of: old, with: new) })
        case "find":
            guard let needle = try stringArg(0) else { throw error(.type, "find() takes a string") }
            guard let r = text.range(of: needle) else { return .int(-1) }
            return .int(text.unicodeScalars.distance(from: text.startIndex, to: r.lowerBound))
        case "count":
            guard let needle = try stringArg(0), !needle.isEmpty else { throw error(.type, "count() takes a non-empty string") }
            return .int(text.components(separatedBy: needle).count - 1)
        case "join":
            guard let items = args.first else { throw error(.type, "join() takes a list") }
            return try join(try iterate(items), separator: s)
        case "isdigit": return .bool(!text.isEmpty && text.allSatisfy(\.isNumber))
        case "isalpha": return .bool(!text.isEmpty && text.allSatisfy(\.isLetter))
        default: return .bool(!text.isEmpty && text.allSatisfy(\.isWhitespace)) // isspace
        }
    }

    static func strip(_ s: String, chars: Set<Unicode.Scalar>?, leading: Bool, trailing: Bool) -> String {
        let scalars = Array(s.unicodeScalars)
        func strippable(_ c: Unicode.Scalar) -> Bool { chars?.contains(c) ?? c.properties.isWhitespace }
        var start = 0, end = scalars.count
        if leading { while start < end, strippable(scalars[start]) { start += 1 } }
        if trailing { while end > start, strippable(scalars[end - 1]) { end -= 1 } }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[start ..< end])
        return String(out)
    }

    static func title(_ s: String) -> String {
        var out = "", previousLetter = false
        for c in s {
            out += previousLetter ? c.lowercased() : c.uppercased()
            previousLetter = c.isLetter
        }
        return out
    }

    /// Python's `str.split(sep, maxsplit)`; `sep` nil splits on runs of whitespace.
    static func split(_ s: String, _ sep: String?, maxSplit: Int) -> [String] {
        if let sep, !sep.isEmpty {
            var parts: [String] = []
            var rest = Substring(s)
            while maxSplit < 0 || parts.count < maxSplit, let r = rest.range(of: sep) {
                parts.append(String(rest[..<r.lowerBound]))
                rest = rest[r.upperBound...]
            }
            parts.append(String(rest))
            return parts
        }
        var parts: [String] = []
        var current = ""
        var it = Substring(s)
        while let c = it.first {
            it = it.dropFirst()
            if c.isWhitespace {
                if !current.isEmpty {
                    parts.append(current)
                    current = ""
                    if maxSplit >= 0, parts.count == maxSplit {
                        let rest = strip(String(it), chars: nil, leading: true, trailing: true)
                        if !rest.isEmpty { parts.append(rest) }
                        return parts
                    }
                }
            } else {
                current.append(c)
            }
        }
        if !current.isEmpty { parts.append(current) }
        return parts
    }

    func join(_ items: [JinjaValue], separator: JinjaString) throws(JinjaError) -> JinjaValue {
        var out = JinjaString("", fromTemplate: true)
        for (i, item) in items.enumerated() {
            if i > 0 { out = out + separator }
            out = out + stringValue(item)
            try checkSize(out.string.utf8.count)
        }
        return .string(out)
    }

    // MARK: Filters

    func filter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [String: JinjaValue]) throws(JinjaError) -> JinjaValue {
        func arg(_ i: Int, _ key: String) -> JinjaValue? { i < args.count ? args[i] : kwargs[key] }
        switch name {
        case "trim", "strip":
            guard case let .string(s) = v else {
                // jinja2 strips str(value): an undefined value is "".
                return .string(.data(Self.strip(v.printed, chars: nil, leading: true, trailing: true)))
            }
            let chars: Set<Unicode.Scalar>? = if case let .string(c)? = arg(0, "chars") { Set(c.string.unicodeScalars) } else { nil }
            return .string(s.mapped { Self.strip($0, chars: chars, leading: true, trailing: true) })
        case "tojson":
            var indent: Int?
            if case let .int(i)? = arg(0, "indent") { indent = i }
            var separators: (String, String)? = nil
            if case let .array(seps)? = kwargs["separators"], seps.count == 2, case let .string(a) = seps[0], case let .string(b) = seps[1] {
                separators = (a.string, b.string)
            }
            let sortKeys = kwargs["sort_keys"]?.truthy ?? false
            let text = try JinjaJSON.dumps(v, indent: indent, separators: separators, sortKeys: sortKeys, limit: limits.outputBytes)
            return .text(text)
        case "length", "count":
            switch v {
            case let .string(s): return .int(s.string.unicodeScalars.count)
            case let .array(a): return .int(a.count)
            case let .object(o): return .int(o.count)
            case let .namespace(ns): return .int(ns.object.count)
            case .undefined: return .int(0)
            default: throw error(.type, "a \(v.typeName) has no length")
            }
        case "items":
            switch v {
            case let .object(o): return .array(o.pairs.map { .array([.text($0.0), $0.1]) })
            case .undefined: return .array([])
            default: throw error(.type, "the filter items needs a dict, not a \(v.typeName)")
            }
        case "dictsort":
            guard case let .object(o) = v else { throw error(.type, "the filter dictsort needs a dict") }
            return .array(o.keys.sorted { Array($0.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.unicodeScalars.map(\.value)) }
                .map { .array([.text($0), o[$0]!]) })
        case "upper", "lower", "capitalize", "title":
            return try method(name, .string(stringValue(v)), [], [:])
        case "default", "d":
            let fallback = arg(0, "default_value") ?? .text("")
            let boolean = arg(1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return fallback }
            return v
        case "join":
            let separator: JinjaString = if case let .string(s)? = arg(0, "d") { s } else { JinjaString("", fromTemplate: true) }
            var items = try iterate(v)
            if case let .string(attr)? = arg(1, "attribute") {
                items = try items.map { (item) throws(JinjaError) in try self.attribute(item, attr.string, describing: .name("item")) }
            }
            return try join(items, separator: separator)
        case "first":
            return try iterate(v).first ?? .undefined("first")
        case "last":
            return try iterate(v).last ?? .undefined("last")
        case "list":
            return .array(try iterate(v))
        case "string":
            return .string(stringValue(v))
        case "int":
            switch v {
            case let .int(i): return .int(i)
            case let .double(d) where d.isFinite && abs(d) < 9e18: return .int(Int(d))
            case let .bool(b): return .int(b ? 1 : 0)
            case let .string(s):
                if let i = Int(s.string.trimmingCharacters(in: .whitespaces)) { return .int(i) }
                return arg(0, "default") ?? .int(0)
            default: return arg(0, "default") ?? .int(0)
            }
        case "float":
            if let n = v.number { return .double(n) }
            if case let .string(s) = v, let d = Double(s.string.trimmingCharacters(in: .whitespaces)) { return .double(d) }
            return arg(0, "default") ?? .double(0)
        case "abs":
            switch v {
            case let .int(i): return .int(i == .min ? i : abs(i))
            case let .double(d): return .double(abs(d))
            default: throw error(.type, "the filter abs needs a number")
            }
        case "round":
            guard let x = v.number else { throw error(.type, "the filter round needs a number") }
            var precision = 0
            if case let .int(p)? = arg(0, "precision") { precision = p }
            let scale = pow(10.0, Double(precision))
            return .double((x * scale).rounded(.toNearestOrEven) / scale)
        case "reverse":
            if case let .string(s) = v { return .string(s.mapped { String($0.reversed()) }) }
            return .array(try iterate(v).reversed())
        case "sort", "unique", "min", "max", "sum":
            var items = try iterate(v)
            if case let .string(attr)? = kwargs["attribute"] {
                let keyed = try items.map { (item) throws(JinjaError) in (item, try self.attribute(item, attr.string, describing: .name("item"))) }
                if name == "sort" || name == "min" || name == "max" {
                    let sorted = try sortPairs(keyed, reverse: kwargs["reverse"]?.truthy ?? false)
                    if name == "sort" { return .array(sorted.map(\.0)) }
                    return (name == "min" ? sorted.first : sorted.last)?.0 ?? .undefined(name)
                }
                items = keyed.map(\.1)
            }
            switch name {
            case "sort": return .array(try sortPairs(items.map { ($0, $0) }, reverse: kwargs["reverse"]?.truthy ?? arg(0, "reverse")?.truthy ?? false).map(\.0))
            case "min": return try sortPairs(items.map { ($0, $0) }, reverse: false).first?.0 ?? .undefined("min")
            case "max": return try sortPairs(items.map { ($0, $0) }, reverse: false).last?.0 ?? .undefined("max")
            case "sum":
                var total: JinjaValue = arg(1, "start") ?? .int(0)
                for item in items { total = try binary("+", total, item) }
                return total
            default:
                var seen: [JinjaValue] = []
                for item in items where !seen.contains(item) { seen.append(item) }
                return .array(seen)
            }
        case "replace":
            guard case let .string(old)? = arg(0, "old"), case let .string(new)? = arg(1, "new") else {
                throw error(.type, "the filter replace takes two strings")
            }
            return .string(stringValue(v).mapped { $0.replacingOccurrences(of: old.string, with: new.string) })
        case "indent":
            var width = 4
            if case let .int(w)? = arg(0, "width") { width = w }
            let first = arg(1, "first")?.truthy ?? false, blank = arg(2, "blank")?.truthy ?? false
            // The pad goes on every line it indents: the result's size is checked before any of it
            // is made. (A string width is the pad itself: Jinja's indent(width="> ").)
            let text = stringValue(v).string
            var indented = 0
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where (i > 0 || first) && (blank || !line.isEmpty) { indented += 1 }
            let padBytes = if case let .string(p)? = arg(0, "width") { p.string.utf8.count } else { max(0, width) }
            let (padded, overflow) = padBytes.multipliedReportingOverflow(by: indented)
            let (total, past) = padded.addingReportingOverflow(text.utf8.count)
            try checkSize(overflow || past ? .max : total)
            let pad: String = if case let .string(p)? = arg(0, "width") { p.string } else { String(repeating: " ", count: max(0, width)) }
            return .string(stringValue(v).mapped { text in
                var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                for i in lines.indices where (i > 0 || first) && (blank || !lines[i].isEmpty) { lines[i] = pad + lines[i] }
                return lines.joined(separator: "\n")
            })
        case "safe":
            return v
        case "select", "reject", "selectattr", "rejectattr":
            let byAttribute = name.hasSuffix("attr")
            var rest = args
            var attr: String?
            if byAttribute {
                guard case let .string(a)? = rest.first else { throw error(.type, "the filter \(name) needs an attribute name") }
                attr = a.string
                rest.removeFirst()
            }
            var testName: String?
            if case let .string(t)? = rest.first {
                testName = t.string
                rest.removeFirst()
            }
            let keep = name.hasPrefix("select")
            var out: [JinjaValue] = []
            for item in try iterate(v) {
                let subject = try attr.map { (a) throws(JinjaError) in try self.attribute(item, a, describing: .name("item")) } ?? item
                let passes = try testName.map { (t) throws(JinjaError) in try self.test(t, subject, rest) } ?? subject.truthy
                if passes == keep { out.append(item) }
            }
            return .array(out)
        case "map":
            var out: [JinjaValue] = []
            if case let .string(attr)? = kwargs["attribute"] {
                for item in try iterate(v) {
                    let value = try attribute(item, attr.string, describing: .name("item"))
                    out.append(value.isUndefined ? (kwargs["default"] ?? value) : value)
                }
            } else if case let .string(f)? = args.first {
                for item in try iterate(v) { out.append(try filter(f.string, item, Array(args.dropFirst()), [:])) }
            } else {
                throw error(.type, "the filter map needs a filter name or attribute=")
            }
            return .array(out)
        default:
            throw error(.unsupported, "the filter '\(name)' is not supported")
        }
    }

    func sortPairs(_ pairs: [(JinjaValue, JinjaValue)], reverse: Bool) throws(JinjaError) -> [(JinjaValue, JinjaValue)] {
        var failure: JinjaError?
        let sorted = pairs.sorted { a, b in
            do {
                if reverse { return try binary(">", a.1, b.1).truthy }
                return try binary("<", a.1, b.1).truthy
            } catch {
                failure = (error as? JinjaError) ?? JinjaError(.type, "\(error)")
                return false
            }
        }
        if let failure { throw failure }
        return sorted
    }

    // MARK: Tests

    func test(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws(JinjaError) -> Bool {
        func other() throws(JinjaError) -> JinjaValue {
            guard let a = args.first else { throw error(.type, "the test '\(name)' needs an argument") }
            return a
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true } else { return false }
        case "string": if case .string = v { return true } else { return false }
        case "number":
            switch v { case .int, .double, .bool: return true; default: return false }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "mapping":
            switch v { case .object: return true; default: return false }
        case "iterable":
            switch v { case .string, .array, .object, .namespace, .undefined: return true; default: return false }
        case "sequence":
            switch v { case .string, .array, .object: return true; default: return false }
        case "callable":
            switch v { case .function, .macro: return true; default: return false }
        case "equalto", "eq", "==", "sameas": return v == (try other())
        case "ne", "!=": return v != (try other())
        case "lt", "<": return try binary("<", v, try other()).truthy
        case "le", "<=": return try binary("<=", v, try other()).truthy
        case "gt", ">": return try binary(">", v, try other()).truthy
        case "ge", ">=": return try binary(">=", v, try other()).truthy
        case "in": return try binary("in", v, try other()).truthy
        case "odd", "even":
            guard case let .int(i) = v else { throw error(.type, "the test '\(name)' needs an integer") }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard case let .int(i) = v, case let .int(d) = try other(), d != 0 else { throw error(.type, "the test divisibleby needs integers") }
            return i % d == 0
        case "lower", "upper":
            guard case let .string(s) = v else { return false }
            return name == "lower" ? s.string == s.string.lowercased() : s.string == s.string.uppercased()
        default:
            throw error(.unsupported, "the test '\(name)' is not supported")
        }
    }
}
