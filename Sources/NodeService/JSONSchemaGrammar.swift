import Foundation
import Generation

/// Compiles a `response_format` JSON Schema to a `Grammar` whose sentences are JSON texts that
/// validate against the schema (llama.cpp's json-schema-to-grammar is the reference for coverage).
///
/// Supported: `type` (object, array, string, number, integer, boolean, null, or a list of them),
/// `properties` + `required`, `additionalProperties` (false, true or a schema: properties not named
/// in `properties` are never generated when `properties` is given, which still validates), `enum`,
/// `const`, `items`, `minItems`/`maxItems`, `minLength`/`maxLength`, `anyOf`, `oneOf` (as anyOf:
/// exclusivity is not enforced), `allOf` with one schema, `$ref` to `#`, `#/$defs/…` and
/// `#/definitions/…` (recursion included), and the annotations (`title`, `description`, `default`,
/// `examples`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`, `writeOnly`). Required
/// properties come first, in the order of `required`, then optional ones by name.
///
/// Refused, by name, with a 400: every other keyword (`pattern`, `format`, `minimum`, `maximum`,
/// `multipleOf`, `uniqueItems`, `prefixItems`, `patternProperties`, `not`, `if`, …), other `$ref`s,
/// and a schema beyond `Limits` (each named in the error). Compile time and memory are linear in the
/// grammar, which the limits bound.
public struct JSONSchemaGrammar {
    public struct Limits: Sendable, Equatable {
        /// Deepest nesting of subschemas (`properties`, `items`, `anyOf`, … and `$ref`s followed).
        public var depth = 16
        /// Values of one `enum`.
        public var enumValues = 256
        /// UTF-8 bytes of one `enum`/`const` value or property name, written as JSON.
        public var literalBytes = 1024
        /// Properties of one object.
        public var properties = 64
        /// Largest `minItems`, `maxItems`, `minLength` or `maxLength`.
        public var repetition = 256
        /// Rules and elements of the whole grammar.
        public var grammar = GrammarBuilder.Limits()
        public init() {}
    }

    /// Why a schema was refused: the reason (naming the keyword and where it is) and an error code.
    public struct Refusal: Error, Sendable {
        public let code: String
        public let reason: String
    }

    static let annotations: Set<String> = ["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
                                           "readOnly", "writeOnly", "$defs", "definitions"]
    static let keywords: Set<String> = ["type", "properties", "required", "additionalProperties", "enum", "const", "items", "minItems",
                                        "maxItems", "minLength", "maxLength", "anyOf", "oneOf", "allOf", "$ref"]
    static let types = ["object", "array", "string", "number", "integer", "boolean", "null"]

    let limits: Limits
    let root: JSONValue
    var builder: GrammarBuilder
    var json: JSONRules
    var references: [String: Int] = [:]

    /// The grammar of any JSON object (`response_format: {"type": "json_object"}`).
    public static func anyObject(limits: Limits = Limits()) throws(Refusal) -> Grammar {
        var b = GrammarBuilder(limits: limits.grammar)
        do {
            let json = try JSONRules(&b)
            return try b.build(root: json.object)
        } catch {
            throw Refusal(code: "schema_too_complex", reason: error.reason)
        }
    }

    /// The grammar of the JSON values that validate against `schema`, between `prefix` and
    /// `suffix` (literal text; a tool call's `<tool_call>` frame).
    public static func compile(_ schema: JSONValue, prefix: String = "", suffix: String = "", limits: Limits = Limits()) throws(Refusal) -> Grammar {
        var b = GrammarBuilder(limits: limits.grammar)
        let json: JSONRules
        do { json = try JSONRules(&b) } catch { throw Refusal(code: "schema_too_complex", reason: error.reason) }
        var compiler = JSONSchemaGrammar(limits: limits, root: schema, builder: b, json: json)
        var rule = try compiler.rule(schema, path: "#", depth: 0)
        if !prefix.isEmpty || !suffix.isEmpty {
            var framed: [Symbol] = []
            if !prefix.isEmpty { framed.append(.text(prefix)) }
            framed.append(.rule(rule))
            if !suffix.isEmpty { framed.append(.text(suffix)) }
            rule = try compiler.grammar { b throws(InferenceError) in try b.rule("framed", [framed]) }
        }
        do {
            return try compiler.builder.build(root: rule)
        } catch {
            throw Refusal(code: error.code == .grammarRefused && error.reason.contains("limit") ? "schema_too_complex" : "invalid_schema",
                          reason: error.reason)
        }
    }

    // MARK: Subschemas

    typealias Symbol = GrammarBuilder.Symbol

    func unsupported(_ path: String, _ what: String) -> Refusal {
        Refusal(code: "unsupported_schema", reason: "\(path): \(what) is not supported")
    }

    func invalid(_ path: String, _ what: String) -> Refusal {
        Refusal(code: "invalid_schema", reason: "\(path): \(what)")
    }

    /// Grammar-building errors are limits (or, from `build`, recursion): schema_too_complex.
    mutating func grammar<T>(_ body: (inout GrammarBuilder) throws(InferenceError) -> T) throws(Refusal) -> T {
        do {
            return try body(&builder)
        } catch {
            throw Refusal(code: "schema_too_complex", reason: error.reason)
        }
    }

    /// A rule matching exactly the JSON texts (without surrounding whitespace) valid against `schema`.
    mutating func rule(_ schema: JSONValue, path: String, depth: Int) throws(Refusal) -> Int {
        guard depth <= limits.depth else {
            throw Refusal(code: "schema_too_complex", reason: "\(path): the schema nests deeper than \(limits.depth) levels (limit: schema depth)")
        }
        let s: [String: JSONValue]
        switch schema {
        case .bool(true): return json.value
        case .bool(false): throw invalid(path, "the schema false admits no value")
        case let .object(o): s = o
        default: throw invalid(path, "a schema must be an object or a boolean, not \(schema.typeName)")
        }
        for key in s.keys.sorted() where !Self.keywords.contains(key) && !Self.annotations.contains(key) {
            throw unsupported(path, "the keyword '\(key)'")
        }
        // Keywords that replace the schema here: anything beside them (but annotations) would be
        // ignored, so the output could break it: refused instead.
        let constraints = s.keys.filter { !Self.annotations.contains($0) }.sorted()
        for key in ["$ref", "anyOf", "oneOf", "allOf", "enum", "const"] where s[key] != nil {
            let others = constraints.filter { $0 != key && !(["enum", "const"].contains(key) && $0 == "type") }
            if let other = others.first { throw unsupported(path, "'\(key)' beside '\(other)'") }
        }
        if let ref = s["$ref"] {
            guard case let .string(target) = ref else { throw invalid(path, "'$ref' must be a string") }
            return try reference(target, path: path, depth: depth)
        }
        if let value = s["const"] {
            guard try matchesType(value, s, path: path) else { throw invalid(path, "'const' does not have the schema's 'type'") }
            let bytes = try literal(value, path: path + "/const")
            return try grammar { b throws(InferenceError) in try b.rule("\(path)/const", [[.literal(bytes)]]) }
        }
        if let values = s["enum"] {
            guard case let .array(items) = values, !items.isEmpty else { throw invalid(path, "'enum' must be a non-empty array") }
            guard items.count <= limits.enumValues else {
                throw Refusal(code: "schema_too_complex",
                              reason: "\(path): 'enum' has \(items.count) values, more than \(limits.enumValues) (limit: enum values)")
            }
            var alternatives: [[Symbol]] = []
            for item in items where try matchesType(item, s, path: path) {
                alternatives.append([.literal(try literal(item, path: path + "/enum"))])
            }
            guard !alternatives.isEmpty else { throw invalid(path, "no 'enum' value has the schema's 'type'") }
            return try grammar { b throws(InferenceError) in try b.rule("\(path)/enum", alternatives) }
        }
        for key in ["anyOf", "oneOf"] {
            guard let list = s[key] else { continue }
            guard case let .array(items) = list, !items.isEmpty else { throw invalid(path, "'\(key)' must be a non-empty array") }
            var alternatives: [[Symbol]] = []
            for (i, item) in items.enumerated() {
                alternatives.append([.rule(try rule(item, path: "\(path)/\(key)/\(i)", depth: depth + 1))])
            }
            return try grammar { b throws(InferenceError) in try b.rule("\(path)/\(key)", alternatives) }
        }
        if let list = s["allOf"] {
            guard case let .array(items) = list, items.count == 1 else {
                throw unsupported(path, "'allOf' with other than one schema")
            }
            return try rule(items[0], path: path + "/allOf/0", depth: depth + 1)
        }
        var types: [String]
        switch s["type"] {
        case nil:
            if s["properties"] != nil || s["additionalProperties"] != nil { types = ["object"] }
            else if s["items"] != nil { types = ["array"] }
            else { return json.value }
        case let .string(t)?: types = [t]
        case let .array(items)?:
            types = []
            for item in items {
                guard case let .string(t) = item else { throw invalid(path, "'type' must be a string or an array of strings") }
                types.append(t)
            }
            guard !types.isEmpty else { throw invalid(path, "'type' must not be empty") }
        default: throw invalid(path, "'type' must be a string or an array of strings")
        }
        var alternatives: [[Symbol]] = []
        for t in types {
            guard Self.types.contains(t) else { throw invalid(path, "'type' \"\(t)\" is not a JSON Schema type (\(Self.types.joined(separator: ", ")))") }
            alternatives.append([.rule(try typed(t, s, path: path, depth: depth))])
        }
        if alternatives.count == 1, case let .rule(r) = alternatives[0][0] { return r }
        return try grammar { b throws(InferenceError) in try b.rule("\(path)/type", alternatives) }
    }

    /// Whether `value` has one of the types `s["type"]` names (true without `type`).
    func matchesType(_ value: JSONValue, _ s: [String: JSONValue], path: String) throws(Refusal) -> Bool {
        let types: [String]
        switch s["type"] {
        case nil: return true
        case let .string(t)?: types = [t]
        case let .array(items)?: types = items.compactMap { if case let .string(t) = $0 { t } else { nil } }
        default: throw invalid(path, "'type' must be a string or an array of strings")
        }
        return types.contains { t in
            switch (t, value) {
            case ("null", .null), ("boolean", .bool), ("number", .number), ("string", .string), ("array", .array), ("object", .object): true
            case let ("integer", .number(n)): n == n.rounded() && abs(n) < 1e15
            default: false
            }
        }
    }

    /// `$ref`: `#`, `#/$defs/NAME` or `#/definitions/NAME`, compiled once (so recursion is a rule
    /// that refers to itself).
    mutating func reference(_ target: String, path: String, depth: Int) throws(Refusal) -> Int {
        if let rule = references[target] { return rule }
        let schema: JSONValue
        if target == "#" {
            schema = root
        } else {
            let parts = target.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3, parts[0] == "#", ["$defs", "definitions"].contains(parts[1]) else {
                throw unsupported(path, "'$ref' \"\(target)\" (only \"#\", \"#/$defs/NAME\" and \"#/definitions/NAME\")")
            }
            let name = parts[2].replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            guard case let .object(r) = root, case let .object(defs)? = r[parts[1]], let found = defs[name] else {
                throw invalid(path, "'$ref' \"\(target)\" names no definition")
            }
            schema = found
        }
        let rule = try grammar { b throws(InferenceError) in try b.declare(target) }
        references[target] = rule
        let body = try self.rule(schema, path: target, depth: depth + 1)
        try grammar { b throws(InferenceError) in try b.define(rule, [[.rule(body)]]) }
        return rule
    }

    func count(_ s: [String: JSONValue], _ key: String, path: String) throws(Refusal) -> Int? {
        guard let v = s[key] else { return nil }
        guard case let .number(n) = v, n >= 0, n == n.rounded() else { throw invalid(path, "'\(key)' must be a non-negative integer") }
        guard n <= Double(limits.repetition) else {
            // Named as the client wrote it: a count past Int.max (7.7e43) has no Int to print.
            let shown = n < 1e15 ? String(Int(n)) : "\(n)"
            throw Refusal(code: "schema_too_complex", reason: "\(path): '\(key)' is \(shown), more than \(limits.repetition) (limit: repetition)")
        }
        return Int(n)
    }

    /// The rule of one `type`, with that type's keywords.
    mutating func typed(_ type: String, _ s: [String: JSONValue], path: String, depth: Int) throws(Refusal) -> Int {
        switch type {
        case "null": return json.null
        case "boolean": return json.boolean
        case "integer": return json.integer
        case "number": return json.number
        case "string":
            let min = try count(s, "minLength", path: path) ?? 0
            let max = try count(s, "maxLength", path: path)
            if min == 0 && max == nil { return json.string }
            guard min <= (max ?? min) else { throw invalid(path, "'minLength' is above 'maxLength'") }
            let codePoint = json.stringChar
            return try grammar { b throws(InferenceError) in
                let chars = try b.repetition("\(path)/chars", item: [.rule(codePoint)], separator: [], min: min, max: max)
                return try b.rule("\(path)/string", [[.text("\""), .rule(chars), .text("\"")]])
            }
        case "array":
            let min = try count(s, "minItems", path: path) ?? 0
            let max = try count(s, "maxItems", path: path)
            guard min <= (max ?? min) else { throw invalid(path, "'minItems' is above 'maxItems'") }
            let item = try s["items"].map { v throws(Refusal) in try rule(v, path: path + "/items", depth: depth + 1) } ?? json.value
            let ws = json.ws
            return try grammar { b throws(InferenceError) in
                let items = try b.repetition("\(path)/items", item: [.rule(item), .rule(ws)], separator: [.text(","), .rule(ws)], min: min, max: max)
                return try b.rule("\(path)/array", [[.text("["), .rule(ws), .rule(items), .text("]")]])
            }
        default:
            return try object(s, path: path, depth: depth)
        }
    }

    mutating func object(_ s: [String: JSONValue], path: String, depth: Int) throws(Refusal) -> Int {
        let ws = json.ws
        var properties: [String: JSONValue] = [:]
        switch s["properties"] {
        case nil: break
        case let .object(p)?: properties = p
        default: throw invalid(path, "'properties' must be an object")
        }
        guard properties.count <= limits.properties else {
            throw Refusal(code: "schema_too_complex",
                          reason: "\(path): the object has \(properties.count) properties, more than \(limits.properties) (limit: properties)")
        }
        var required: [String] = []
        switch s["required"] {
        case nil: break
        case let .array(items)?:
            for item in items {
                guard case let .string(name) = item else { throw invalid(path, "'required' must be an array of strings") }
                guard properties[name] != nil else { throw invalid(path, "required property \"\(name)\" is not in 'properties'") }
                if !required.contains(name) { required.append(name) }
            }
        default: throw invalid(path, "'required' must be an array of strings")
        }
        if properties.isEmpty {
            // No named properties: any object, or one whose values follow additionalProperties.
            switch s["additionalProperties"] {
            case nil, .bool(true)?: return json.object
            case .bool(false)?: return try grammar { b throws(InferenceError) in try b.rule("\(path)/empty-object", [[.text("{"), .rule(ws), .text("}")]]) }
            case let extra?:
                let value = try rule(extra, path: path + "/additionalProperties", depth: depth + 1)
                let string = json.string
                return try grammar { b throws(InferenceError) in
                    let member = try b.rule("\(path)/member", [[.rule(string), .rule(ws), .text(":"), .rule(ws), .rule(value), .rule(ws)]])
                    let members = try b.repetition("\(path)/members", item: [.rule(member)], separator: [.text(","), .rule(ws)], min: 0, max: nil)
                    return try b.rule("\(path)/object", [[.text("{"), .rule(ws), .rule(members), .text("}")]])
                }
            }
        }
        // Each property's `"name" ws ":" ws value ws`.
        var member: [String: Int] = [:]
        for name in properties.keys.sorted() {
            let key = try literal(.string(name), path: path + "/properties")
            let value = try rule(properties[name]!, path: "\(path)/properties/\(name)", depth: depth + 1)
            member[name] = try grammar { b throws(InferenceError) in
                try b.rule("\(path)/properties/\(name)/member", [[.literal(key), .rule(ws), .text(":"), .rule(ws), .rule(value), .rule(ws)]])
            }
        }
        let optional = properties.keys.filter { !required.contains($0) }.sorted()
        return try grammar { b throws(InferenceError) in
            // after[k]: what may follow optional property k (a comma and a later optional property, or nothing).
            var after = [Int](repeating: 0, count: optional.count)
            for k in optional.indices.reversed() {
                var alternatives: [[Symbol]] = [[]]
                for j in (k + 1) ..< optional.count { alternatives.append([.text(","), .rule(ws), .rule(member[optional[j]]!), .rule(after[j])]) }
                after[k] = try b.rule("\(path)/after-\(optional[k])", alternatives)
            }
            var sequence: [Symbol] = [.text("{"), .rule(ws)]
            for (i, name) in required.enumerated() {
                if i > 0 { sequence += [.text(","), .rule(ws)] }
                sequence.append(.rule(member[name]!))
            }
            var tail: [[Symbol]] = [[]]
            for (k, name) in optional.enumerated() {
                tail.append((required.isEmpty ? [] : [.text(","), .rule(ws)]) + [.rule(member[name]!), .rule(after[k])])
            }
            let optionalPart = try b.rule("\(path)/optional", tail)
            return try b.rule("\(path)/object", [sequence + [.rule(optionalPart), .text("}")]])
        }
    }

    /// `value` written as JSON (the bytes an `enum`/`const` value must be generated as): keys sorted,
    /// integers without a fraction; at most `limits.literalBytes`.
    func literal(_ value: JSONValue, path: String) throws(Refusal) -> [UInt8] {
        var out: [UInt8] = []
        func write(_ v: JSONValue) {
            switch v {
            case .null: out += Array("null".utf8)
            case let .bool(b): out += Array((b ? "true" : "false").utf8)
            case let .number(n):
                if n == n.rounded(), abs(n) < 1e15 { out += Array(String(Int64(n)).utf8) } else { out += Array("\(n)".utf8) }
            case let .string(s):
                out.append(0x22)
                for u in s.unicodeScalars {
                    switch u {
                    case "\"": out += Array("\\\"".utf8)
                    case "\\": out += Array("\\\\".utf8)
                    case "\n": out += Array("\\n".utf8)
                    case "\r": out += Array("\\r".utf8)
                    case "\t": out += Array("\\t".utf8)
                    default:
                        if u.value < 0x20 { out += Array(String(format: "\\u%04x", u.value).utf8) } else { out += Array(String(u).utf8) }
                    }
                }
                out.append(0x22)
            case let .array(items):
                out.append(UInt8(ascii: "["))
                for (i, item) in items.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    write(item)
                }
                out.append(UInt8(ascii: "]"))
            case let .object(fields):
                out.append(UInt8(ascii: "{"))
                for (i, key) in fields.keys.sorted().enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    write(.string(key))
                    out.append(UInt8(ascii: ":"))
                    write(fields[key]!)
                }
                out.append(UInt8(ascii: "}"))
            }
            if out.count > limits.literalBytes { return }
        }
        write(value)
        guard out.count <= limits.literalBytes else {
            throw Refusal(code: "schema_too_complex",
                          reason: "\(path): a value is longer than \(limits.literalBytes) bytes as JSON (limit: literal bytes)")
        }
        return out
    }
}
