import Foundation

/// A string with provenance: pieces of the template's own text (which may name control tokens) and
/// pieces of data (messages, tools, anything the caller passed in), which never become control
/// tokens. Operations that mix the two keep them apart when they can (concatenation, `~`) and
/// otherwise mark the result as data, so data is never promoted to template text.
public struct JinjaString: Sendable, Equatable {
    public struct Piece: Sendable, Equatable {
        public var text: String
        /// True for text written in the template (literals and text between tags).
        public var fromTemplate: Bool
    }

    public private(set) var pieces: [Piece]
    public private(set) var string: String

    public init(_ text: String, fromTemplate: Bool) {
        pieces = text.isEmpty ? [] : [Piece(text: text, fromTemplate: fromTemplate)]
        string = text
    }

    init(pieces: [Piece]) {
        self.pieces = []
        string = ""
        for p in pieces { append(p) }
    }

    /// Data text (from the caller, not the template).
    public static func data(_ text: String) -> JinjaString { JinjaString(text, fromTemplate: false) }

    mutating func append(_ piece: Piece) {
        guard !piece.text.isEmpty else { return }
        string += piece.text
        if let last = pieces.last, last.fromTemplate == piece.fromTemplate {
            pieces[pieces.count - 1].text += piece.text
        } else {
            pieces.append(piece)
        }
    }

    static func + (a: JinjaString, b: JinjaString) -> JinjaString {
        var out = a
        for p in b.pieces { out.append(p) }
        return out
    }

    /// Whether every piece is template text (an empty string counts as template text).
    var isTemplate: Bool { pieces.allSatisfy(\.fromTemplate) }

    /// `transform` applied to the whole text; the result is template text only when all of this was.
    func mapped(_ transform: (String) -> String) -> JinjaString {
        JinjaString(transform(string), fromTemplate: isTemplate)
    }

    public static func == (a: JinjaString, b: JinjaString) -> Bool { a.string == b.string }
}

/// A dictionary that keeps its keys in insertion order (as Python's `dict`, so that `tojson` and
/// `items()` give what jinja2 gives).
public struct JinjaObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    public private(set) var values: [String: JinjaValue] = [:]

    public init() {}

    public init(_ pairs: KeyValuePairs<String, JinjaValue>) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> JinjaValue? {
        get { values[key] }
        set {
            if let newValue {
                if values.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }
    public var pairs: [(String, JinjaValue)] { keys.map { ($0, values[$0]!) } }

    public static func == (a: JinjaObject, b: JinjaObject) -> Bool { a.values == b.values }
}

/// A `namespace()`: the only mutable value a template can create (for `set ns.x = ...`).
public final class JinjaNamespace: @unchecked Sendable {
    // Only touched by the one interpreter that created it, on one thread.
    var object = JinjaObject()
    init() {}
}

/// A macro defined by the template.
public final class JinjaMacro: Sendable {
    let name: String
    let parameters: [(String, JinjaExpression?)]
    let body: [JinjaNode]
    init(name: String, parameters: [(String, JinjaExpression?)], body: [JinjaNode]) {
        self.name = name
        self.parameters = parameters
        self.body = body
    }
}

/// A value of the template language: what the caller passes in (JSON-like data), what the
/// template computes, and the few callables it may use. There is no host object: attribute access
/// reaches only keys of objects and the listed methods of strings, lists and objects.
public indirect enum JinjaValue: Sendable {
    /// A name or key that does not exist (jinja2's `Undefined`), with the name for errors.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(JinjaString)
    case array([JinjaValue])
    case object(JinjaObject)
    case namespace(JinjaNamespace)
    case macro(JinjaMacro)
    /// A built-in function (`range`, `namespace`, `raise_exception`, ...) or a method bound to its
    /// receiver (`'a b'.split`, `d.items`).
    case function(String, receiver: JinjaValue?)

    /// Data text (from the caller).
    public static func text(_ s: String) -> JinjaValue { .string(.data(s)) }

    var isUndefined: Bool { if case .undefined = self { true } else { false } }

    var truthy: Bool {
        switch self {
        case .undefined, .none: false
        case let .bool(b): b
        case let .int(i): i != 0
        case let .double(d): d != 0
        case let .string(s): !s.string.isEmpty
        case let .array(a): !a.isEmpty
        case let .object(o): o.count > 0
        case .namespace, .macro, .function: true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: "undefined"
        case .none: "none"
        case .bool: "boolean"
        case .int: "integer"
        case .double: "float"
        case .string: "string"
        case .array: "list"
        case .object: "dict"
        case .namespace: "namespace"
        case .macro: "macro"
        case .function: "function"
        }
    }

    /// Python's `str()` of the value, as jinja2 prints it.
    var printed: String {
        switch self {
        case .undefined: ""
        case let .string(s): s.string
        default: repr
        }
    }

    /// Python's `repr()` (used for lists and dicts printed whole).
    var repr: String {
        switch self {
        case .undefined: ""
        case .none: "None"
        case let .bool(b): b ? "True" : "False"
        case let .int(i): String(i)
        case let .double(d): Self.pythonFloat(d)
        case let .string(s): Self.pythonQuoted(s.string)
        case let .array(a): "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case let .object(o): "{" + o.pairs.map { Self.pythonQuoted($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace: "<Namespace>"
        case let .macro(m): "<Macro '\(m.name)'>"
        case let .function(name, _): "<function \(name)>"
        }
    }

    /// Python's float repr: shortest round-trip digits, `.0` for integral values, exponent outside
    /// 1e-4 ..< 1e16.
    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        let magnitude = abs(d)
        if magnitude != 0 && (magnitude < 1e-4 || magnitude >= 1e16) {
            // Swift writes e.g. 1e-05 and 1e+16 as Python does.
            var s = "\(d)"
            if !s.contains("e") { s = String(format: "%.17g", d) }
            return s
        }
        if d == d.rounded(), magnitude < 1e16 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    /// Python's repr of a string: single quotes unless it holds one and no double quote.
    static func pythonQuoted(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(c) == quote { out += "\\" + String(quote) } else if c.value < 0x20 || c.value == 0x7f {
                    out += String(format: "\\x%02x", c.value)
                } else { out.unicodeScalars.append(c) }
            }
        }
        return out + String(quote)
    }
}

extension JinjaValue: Equatable {
    /// Python's `==`: numbers across int, float and bool; strings by text; lists in order; dicts by
    /// their pairs; undefined equals undefined.
    public static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(x), .string(y)): return x.string == y.string
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)): return x == y
        case let (.namespace(x), .namespace(y)): return x === y
        case let (.macro(x), .macro(y)): return x === y
        case let (.function(x, r1), .function(y, r2)): return x == y && r1 == r2
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// The value as a number, for arithmetic and comparison (booleans are 0 and 1 as in Python).
    var number: Double? {
        switch self {
        case let .int(i): Double(i)
        case let .double(d): d
        case let .bool(b): b ? 1 : 0
        default: nil
        }
    }
}
