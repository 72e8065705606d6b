import Foundation

/// JSON in and out of template values, as Python's `json` does it: `parse` keeps the order of
/// object keys and tells integers from floats (so that `tojson` of a request's tools gives what
/// jinja2 gives for the same JSON); `dumps` is `json.dumps(value, ensure_ascii=False, indent=...,
/// separators=..., sort_keys=...)`, the `tojson` filter Hugging Face installs for chat templates.
public enum JinjaJSON {
    /// Parses JSON text into template values (strings are data). `maxDepth` bounds nesting.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 64) throws(JinjaError) -> JinjaValue {
        var p = Parser(b: bytes, maxDepth: maxDepth)
        p.skip()
        let v = try p.value(depth: 0)
        p.skip()
        guard p.i == bytes.count else { throw JinjaError(.syntax, "trailing characters after the JSON value") }
        return v
    }

    struct Parser {
        let b: [UInt8]
        let maxDepth: Int
        var i = 0

        init(b: [UInt8], maxDepth: Int) {
            self.b = b
            self.maxDepth = maxDepth
        }

        func fail(_ what: String) -> JinjaError { JinjaError(.syntax, "invalid JSON at byte \(i): \(what)") }

        mutating func skip() {
            while i < b.count, [32, 9, 10, 13].contains(b[i]) { i += 1 }
        }

        mutating func literal(_ word: String, _ v: JinjaValue) throws(JinjaError) -> JinjaValue {
            let w = Array(word.utf8)
            guard i + w.count <= b.count, b[i ..< i + w.count].elementsEqual(w) else { throw fail("expected \(word)") }
            i += w.count
            return v
        }

        mutating func value(depth: Int) throws(JinjaError) -> JinjaValue {
            guard depth <= maxDepth else { throw JinjaError(.depthLimit, "JSON nests deeper than \(maxDepth) levels") }
            guard i < b.count else { throw fail("unexpected end") }
            switch b[i] {
            case UInt8(ascii: "n"): return try literal("null", .none)
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "\""): return .text(try string())
            case UInt8(ascii: "["):
                i += 1
                var items: [JinjaValue] = []
                skip()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    skip()
                    items.append(try value(depth: depth + 1))
                    skip()
                    guard i < b.count else { throw fail("unexpected end in an array") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    guard b[i] == UInt8(ascii: "]") else { throw fail("expected ',' or ']'") }
                    i += 1
                    return .array(items)
                }
            case UInt8(ascii: "{"):
                i += 1
                var o = JinjaObject()
                skip()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                while true {
                    skip()
                    guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let k = try string()
                    skip()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1
                    skip()
                    o[k] = try value(depth: depth + 1)
                    skip()
                    guard i < b.count else { throw fail("unexpected end in an object") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    guard b[i] == UInt8(ascii: "}") else { throw fail("expected ',' or '}'") }
                    i += 1
                    return .object(o)
                }
            default:
                let s = i
                if b[i] == UInt8(ascii: "-") { i += 1 }
                var isFloat = false
                while i < b.count {
                    let c = b[i]
                    let digit = c >= 48 && c <= 57
                    let floatPart = c == 46 || c == 101 || c == 69 // . e E
                    let sign = (c == 43 || c == 45) && i > s // + - inside an exponent
                    if digit {
                        i += 1
                    } else if floatPart || sign {
                        isFloat = true
                        i += 1
                    } else {
                        break
                    }
                }
                let text = String(decoding: b[s ..< i], as: UTF8.self)
                if !isFloat, let n = Int(text) { return .int(n) }
                guard let d = Double(text), text != "-" else { throw fail("expected a value") }
                return .double(d)
            }
        }

        mutating func string() throws(JinjaError) -> String {
            i += 1
            var out: [UInt8] = []
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") { i += 1; return String(decoding: out, as: UTF8.self) }
                if c == UInt8(ascii: "\\") {
                    guard i + 1 < b.count else { break }
                    let e = b[i + 1]
                    i += 2
                    switch e {
                    case UInt8(ascii: "n"): out.append(10)
                    case UInt8(ascii: "t"): out.append(9)
                    case UInt8(ascii: "r"): out.append(13)
                    case UInt8(ascii: "b"): out.append(8)
                    case UInt8(ascii: "f"): out.append(12)
                    case UInt8(ascii: "u"):
                        var v = try hex4()
                        if v >= 0xD800 && v < 0xDC00, i + 1 < b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") {
                            i += 2
                            let low = try hex4()
                            v = low >= 0xDC00 && low < 0xE000 ? 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00) : 0xFFFD
                        }
                        out += Array(String(Character(Unicode.Scalar(v) ?? "\u{FFFD}")).utf8)
                    default: out.append(e)
                    }
                } else {
                    out.append(c)
                    i += 1
                }
            }
            throw fail("a string is never closed")
        }

        mutating func hex4() throws(JinjaError) -> UInt32 {
            guard i + 4 <= b.count, let v = UInt32(String(decoding: b[i ..< i + 4], as: UTF8.self), radix: 16) else { throw fail("bad \\u escape") }
            i += 4
            return v
        }
    }

    /// Python's `json.dumps(value, ensure_ascii=False, ...)`. Refuses values JSON cannot hold
    /// (undefined, namespaces, macros) and output larger than `limit` bytes.
    public static func dumps(_ v: JinjaValue, indent: Int? = nil, separators: (String, String)? = nil, sortKeys: Bool = false,
                             limit: Int = .max) throws(JinjaError) -> String {
        let (item, key) = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        var out = ""
        /// A newline and the indentation of `level` (Python: a negative indent is none; one past the
        /// limit is refused before it is made).
        func newline(_ level: Int) throws(JinjaError) {
            guard let indent else { return }
            let (width, overflow) = max(0, indent).multipliedReportingOverflow(by: level)
            guard !overflow, width < limit - out.utf8.count else {
                throw JinjaError(.outputLimit, "tojson output is larger than \(limit) bytes (limit: output bytes)")
            }
            out += "\n" + String(repeating: " ", count: width)
        }
        func write(_ v: JinjaValue, _ level: Int) throws(JinjaError) {
            guard out.utf8.count <= limit else { throw JinjaError(.outputLimit, "tojson output is larger than \(limit) bytes (limit: output bytes)") }
            switch v {
            case .none: out += "null"
            case let .bool(b): out += b ? "true" : "false"
            case let .int(i): out += String(i)
            case let .double(d): out += d.isNaN ? "NaN" : d.isInfinite ? (d < 0 ? "-Infinity" : "Infinity") : JinjaValue.pythonFloat(d)
            case let .string(s): quote(s.string, into: &out)
            case let .array(items):
                guard !items.isEmpty else { out += "[]"; return }
                out += "["
                for (n, x) in items.enumerated() {
                    if n > 0 { out += item }
                    try newline(level + 1)
                    try write(x, level + 1)
                }
                try newline(level)
                out += "]"
            case let .object(o):
                try writeObject(o, level)
            case let .namespace(ns):
                try writeObject(ns.object, level)
            case let .undefined(n):
                throw JinjaError(.type, "'\(n)' is undefined and cannot be written as JSON")
            default:
                throw JinjaError(.type, "a \(v.typeName) cannot be written as JSON")
            }
        }
        func writeObject(_ o: JinjaObject, _ level: Int) throws(JinjaError) {
            guard o.count > 0 else { out += "{}"; return }
            out += "{"
            let keys = sortKeys ? o.keys.sorted { Array($0.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.unicodeScalars.map(\.value)) } : o.keys
            for (n, k) in keys.enumerated() {
                if n > 0 { out += item }
                try newline(level + 1)
                quote(k, into: &out)
                out += key
                try write(o[k]!, level + 1)
            }
            try newline(level)
            out += "}"
        }
        try write(v, 0)
        guard out.utf8.count <= limit else { throw JinjaError(.outputLimit, "tojson output is larger than \(limit) bytes (limit: output bytes)") }
        return out
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if c.value < 0x20 { out += String(format: "\\u%04x", c.value) } else { out.unicodeScalars.append(c) }
            }
        }
        out += "\""
    }
}
