/// The rules of JSON text (RFC 8259) in a `GrammarBuilder`, as llama.cpp's json.gbnf and
/// json-schema-to-grammar write them, with their bounds: whitespace between tokens is at most one
/// space, or one newline and up to 20 spaces or tabs (a model cannot pad forever); a number has at
/// most 16 integer digits, 16 fraction digits and an exponent of at most 2 digits (a double, never
/// infinity); strings are any valid UTF-8 (no control characters; escapes `\" \\ \/ \b \f \n \r \t
/// \uXXXX` except surrogates `\uD800`-`\uDFFF`). Every value inside
/// an object or array may be followed by whitespace; the root value is not (the output ends with it).
public struct JSONRules: Sendable {
    public let ws: Int
    /// One character (one code point) inside a string: ASCII, a whole UTF-8 sequence, or an escape.
    public let stringChar: Int
    public let string: Int
    public let integer: Int
    public let number: Int
    public let boolean: Int
    public let null: Int
    /// Any JSON value, object, array.
    public let value: Int
    public let object: Int
    public let array: Int

    public init(_ b: inout GrammarBuilder) throws(InferenceError) {
        typealias S = GrammarBuilder.Symbol
        // Whitespace: "" | " " | "\n" then up to 20 spaces or tabs.
        var indent = try b.rule("indent-0", [[]])
        for k in 1 ... 20 { indent = try b.rule("indent-\(k)", [[], [.bytes(ByteSet(0x20 ... 0x20, 0x09 ... 0x09)), .rule(indent)]]) }
        ws = try b.rule("ws", [[], [.text(" ")], [.text("\n"), .rule(indent)]])

        let cont = S.bytes(ByteSet(0x80 ... 0xBF))
        let utf8 = try b.rule("utf8-multibyte", [
            [.bytes(ByteSet(0xC2 ... 0xDF)), cont],
            [.literal([0xE0]), .bytes(ByteSet(0xA0 ... 0xBF)), cont],
            [.bytes(ByteSet(0xE1 ... 0xEC)), cont, cont],
            [.literal([0xED]), .bytes(ByteSet(0x80 ... 0x9F)), cont],
            [.bytes(ByteSet(0xEE ... 0xEF)), cont, cont],
            [.literal([0xF0]), .bytes(ByteSet(0x90 ... 0xBF)), cont, cont],
            [.bytes(ByteSet(0xF1 ... 0xF3)), cont, cont, cont],
            [.literal([0xF4]), .bytes(ByteSet(0x80 ... 0x8F)), cont, cont],
        ])
        let hex = S.bytes(ByteSet(0x30 ... 0x39, 0x41 ... 0x46, 0x61 ... 0x66))
        // No `\uD800`-`\uDFFF` escape: a lone surrogate is refused by strict parsers, and without
        // them one character of the grammar is one code point (what minLength/maxLength count).
        // Characters outside the BMP are written as UTF-8.
        let hexNoD = S.bytes(ByteSet(0x30 ... 0x39, 0x41 ... 0x43, 0x45 ... 0x46, 0x61 ... 0x63, 0x65 ... 0x66))
        let escape = try b.rule("escape", [
            [.bytes(ByteSet(0x22 ... 0x22, 0x5C ... 0x5C, 0x2F ... 0x2F, 0x62 ... 0x62, 0x66 ... 0x66, 0x6E ... 0x6E, 0x72 ... 0x72, 0x74 ... 0x74))],
            [.text("u"), hexNoD, hex, hex, hex],
            [.text("u"), .bytes(ByteSet(0x44 ... 0x44, 0x64 ... 0x64)), .bytes(ByteSet(0x30 ... 0x37)), hex, hex],
        ])
        stringChar = try b.rule("string-char", [
            [.bytes(ByteSet(0x20 ... 0x21, 0x23 ... 0x5B, 0x5D ... 0x7F))],
            [.rule(utf8)],
            [.text("\\"), .rule(escape)],
        ])
        let chars = try b.declare("string-chars")
        try b.define(chars, [[], [.rule(stringChar), .rule(chars)]])
        string = try b.rule("string", [[.text("\""), .rule(chars), .text("\"")]])

        let digit = S.bytes(ByteSet(0x30 ... 0x39))
        var digits15 = try b.rule("digits-0", [[]])
        for k in 1 ... 15 { digits15 = try b.rule("digits-\(k)", [[], [digit, .rule(digits15)]]) }
        let integral = try b.rule("integral", [[.text("0")], [.bytes(ByteSet(0x31 ... 0x39)), .rule(digits15)]])
        integer = try b.rule("integer", [[.rule(integral)], [.text("-"), .rule(integral)]])
        let fraction = try b.rule("fraction", [[], [.text("."), digit, .rule(digits15)]])
        let sign = try b.rule("sign", [[], [.text("-")], [.text("+")]])
        let exponent = try b.rule("exponent", [[], [.bytes(ByteSet(0x45 ... 0x45, 0x65 ... 0x65)), .rule(sign), digit], [.bytes(ByteSet(0x45 ... 0x45, 0x65 ... 0x65)), .rule(sign), digit, digit]])
        number = try b.rule("number", [[.rule(integer), .rule(fraction), .rule(exponent)]])
        boolean = try b.rule("boolean", [[.text("true")], [.text("false")]])
        null = try b.rule("null", [[.text("null")]])

        value = try b.declare("value")
        object = try b.declare("object")
        array = try b.declare("array")
        try b.define(value, [[.rule(object)], [.rule(array)], [.rule(string)], [.rule(number)], [.rule(boolean)], [.rule(null)]])
        let member = try b.rule("member", [[.rule(string), .rule(ws), .text(":"), .rule(ws), .rule(value), .rule(ws)]])
        let members = try b.declare("members")
        try b.define(members, [[.text("}")], [.text(","), .rule(ws), .rule(member), .rule(members)]])
        try b.define(object, [[.text("{"), .rule(ws), .text("}")], [.text("{"), .rule(ws), .rule(member), .rule(members)]])
        let items = try b.declare("items")
        try b.define(items, [[.text("]")], [.text(","), .rule(ws), .rule(value), .rule(ws), .rule(items)]])
        try b.define(array, [[.text("["), .rule(ws), .text("]")], [.text("["), .rule(ws), .rule(value), .rule(ws), .rule(items)]])
    }
}

extension GrammarBuilder {
    /// A rule for `item` repeated `min` to `max` times (nil: no upper bound), `separator` between
    /// repetitions. Costs one rule per optional repetition: the caller bounds `max - min`.
    public mutating func repetition(_ name: String, item: [Symbol], separator: [Symbol], min: Int, max: Int?) throws(InferenceError) -> Int {
        precondition(min >= 0 && (max ?? min) >= min)
        // tail: what may follow the last required item.
        var tail: Int
        if let max {
            tail = try rule("\(name)-0", [[]])
            if max > min {
                for k in 1 ..< (max - min + (min == 0 ? 0 : 1)) {
                    tail = try rule("\(name)-\(k)", [[], separator + item + [.rule(tail)]])
                }
            }
        } else {
            tail = try declare("\(name)-more")
            try define(tail, [[], separator + item + [.rule(tail)]])
        }
        if min == 0 {
            if max == 0 { return try rule(name, [[]]) }
            return try rule(name, [[], item + [.rule(tail)]])
        }
        var sequence = item
        for _ in 1 ..< min { sequence += separator + item }
        return try rule(name, [sequence + [.rule(tail)]])
    }
}
