// libFuzzer entry point for the `response_format` path: the JSON Schema compiler
// (Sources/NodeService/JSONSchemaGrammar.swift) and the grammar matcher it feeds
// (Sources/Generation/Grammar). Compiled together with those sources into one module by
// fuzz/run-fuzzer.sh schema, so there is no import.
//
// An input is a JSON Schema, optionally followed by a NUL byte and choice bytes. Any client can send
// a schema, so whatever the input, the compiler must either refuse it with a code and a reason or
// return a grammar, in bounded time and memory (libFuzzer's -timeout and -rss_limit_mb). A grammar
// must then keep the product's promise that constrained output parses as JSON and validates against
// the schema: the harness walks the grammar with the choice bytes (each picks one of the bytes the
// matcher allows next, or ends the walk where the text so far is complete) and also feeds the choice
// bytes to a fresh matcher as text; every complete text must parse as JSON and satisfy the schema's
// top-level `type`, `const`, `enum` and `required` (checked here independently of the compiler).

import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func schemaFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    guard let schema = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes[..<split])) else { return 0 }
    let choices = split < bytes.count ? Array(bytes[(split + 1)...]) : []
    let grammar: Grammar
    do {
        grammar = try JSONSchemaGrammar.compile(schema)
    } catch {
        if error.code.isEmpty || error.reason.isEmpty { fatalError("refusal without a code or reason: \(error)") }
        return 0
    }

    // A walk: each choice byte picks the next byte among those the grammar allows.
    var walker = GrammarMatcher(grammar)
    var text: [UInt8] = []
    for c in choices.prefix(1024) {
        if walker.isAccepting && c >= 0xF0 { break }
        let next = walker.nextBytes()
        let allowed = (0 ... 255).map { UInt8($0) }.filter { next.contains($0) }
        if allowed.isEmpty { break }
        let b = allowed[Int(c) % allowed.count]
        guard walker.allows([b]), walker.accept([b]) else { fatalError("the matcher refused a byte it offered: \(b)") }
        text.append(b)
    }
    if walker.isAccepting { check(text, schema) }

    // The choice bytes as text: whatever prefix the matcher takes must stay checkable.
    var reader = GrammarMatcher(grammar)
    var taken: [UInt8] = []
    for b in choices.prefix(1024) {
        guard reader.accept([b]) else { break }
        taken.append(b)
    }
    if reader.isAccepting { check(taken, schema) }
    return 0
}

/// Aborts unless `text` is JSON that meets `schema`'s top-level `type`, `const`, `enum` and `required`.
func check(_ text: [UInt8], _ schema: JSONValue) {
    let shown = String(decoding: text.prefix(300), as: UTF8.self)
    var syntax = StrictJSON(text)
    guard syntax.isValid() else { fatalError("the grammar accepted text that does not parse as JSON: \(shown)") }
    // Foundation's JSONDecoder refuses some valid numbers (`-0.0e2`: a negative zero with a
    // fraction and an exponent), which JSONSerialization and Python read; such a text is checked
    // for syntax only.
    guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(text)) else { return }
    guard case let .object(keywords) = schema else { return }
    if case let .string(type)? = keywords["type"], !has(value, type: type) {
        fatalError("the grammar accepted \(shown) for type \(type)")
    }
    if case let .array(types)? = keywords["type"], !types.contains(where: { if case let .string(t) = $0 { has(value, type: t) } else { false } }) {
        fatalError("the grammar accepted \(shown) for types \(types)")
    }
    if let constant = keywords["const"], !same(constant, value) {
        fatalError("the grammar accepted \(shown) for const \(constant)")
    }
    if case let .array(values)? = keywords["enum"], !values.contains(where: { same($0, value) }) {
        fatalError("the grammar accepted \(shown) for an enum of \(values.count) values")
    }
    if case let .array(required)? = keywords["required"], case let .object(fields) = value {
        for case let .string(name) in required where fields[name] == nil {
            fatalError("the grammar accepted \(shown) without the required property \(name)")
        }
    }
}

func has(_ value: JSONValue, type: String) -> Bool {
    switch (type, value) {
    case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null), ("number", .number): true
    case let ("integer", .number(n)): n.rounded() == n
    default: false
    }
}

/// JSON equality as a validator sees it (numbers by value, objects regardless of key order).
func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.null, .null): true
    case let (.bool(x), .bool(y)): x == y
    case let (.number(x), .number(y)): x == y
    case let (.string(x), .string(y)): x == y
    case let (.array(x), .array(y)): x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
    case let (.object(x), .object(y)): x.count == y.count && x.allSatisfy { k, v in y[k].map { same(v, $0) } ?? false }
    default: false
    }
}

/// RFC 8259's grammar, strictly (no trailing commas, no leading zeros, no bare control characters
/// in strings, valid UTF-8), as an independent check of what the grammar accepts.
struct StrictJSON {
    let b: [UInt8]
    var i = 0
    init(_ bytes: [UInt8]) { b = bytes }

    mutating func isValid() -> Bool {
        guard String(validating: b, as: UTF8.self) != nil else { return false }
        ws()
        guard value(depth: 0) else { return false }
        ws()
        return i == b.count
    }

    var peek: UInt8? { i < b.count ? b[i] : nil }
    mutating func ws() { while let c = peek, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } }
    mutating func eat(_ c: UInt8) -> Bool { if peek == c { i += 1; return true }; return false }
    mutating func word(_ w: String) -> Bool {
        let u = Array(w.utf8)
        guard b.count - i >= u.count, Array(b[i ..< i + u.count]) == u else { return false }
        i += u.count
        return true
    }
    mutating func digits() -> Int { let s = i; while let c = peek, c >= 0x30 && c <= 0x39 { i += 1 }; return i - s }

    mutating func value(depth: Int) -> Bool {
        guard depth < 512, let c = peek else { return false }
        switch c {
        case UInt8(ascii: "{"):
            i += 1; ws()
            if eat(UInt8(ascii: "}")) { return true }
            repeat {
                ws()
                guard string() else { return false }
                ws()
                guard eat(UInt8(ascii: ":")) else { return false }
                ws()
                guard value(depth: depth + 1) else { return false }
                ws()
            } while eat(UInt8(ascii: ","))
            return eat(UInt8(ascii: "}"))
        case UInt8(ascii: "["):
            i += 1; ws()
            if eat(UInt8(ascii: "]")) { return true }
            repeat {
                ws()
                guard value(depth: depth + 1) else { return false }
                ws()
            } while eat(UInt8(ascii: ","))
            return eat(UInt8(ascii: "]"))
        case UInt8(ascii: "\""): return string()
        case UInt8(ascii: "t"): return word("true")
        case UInt8(ascii: "f"): return word("false")
        case UInt8(ascii: "n"): return word("null")
        default: return number()
        }
    }

    mutating func string() -> Bool {
        guard eat(UInt8(ascii: "\"")) else { return false }
        while let c = peek {
            i += 1
            if c == UInt8(ascii: "\"") { return true }
            if c < 0x20 { return false }
            if c == UInt8(ascii: "\\") {
                guard let e = peek else { return false }
                i += 1
                if e == UInt8(ascii: "u") {
                    for _ in 0 ..< 4 {
                        guard let h = peek, (h >= 0x30 && h <= 0x39) || (h | 0x20 >= 0x61 && h | 0x20 <= 0x66) else { return false }
                        i += 1
                    }
                } else if !Array("\"\\/bfnrt".utf8).contains(e) {
                    return false
                }
            }
        }
        return false
    }

    mutating func number() -> Bool {
        _ = eat(UInt8(ascii: "-"))
        if eat(UInt8(ascii: "0")) {
        } else if let c = peek, c >= 0x31 && c <= 0x39 {
            _ = digits()
        } else {
            return false
        }
        if eat(UInt8(ascii: ".")) { guard digits() > 0 else { return false } }
        if eat(UInt8(ascii: "e")) || eat(UInt8(ascii: "E")) {
            if !eat(UInt8(ascii: "+")) { _ = eat(UInt8(ascii: "-")) }
            guard digits() > 0 else { return false }
        }
        return true
    }
}
