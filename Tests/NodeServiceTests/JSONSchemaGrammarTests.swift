import Foundation
import Generation
import Testing
@testable import NodeService

/// The schema compiler: what each supported keyword accepts and refuses, the refusals by name, and
/// the hostile schemas (each test named after its attack) refused within the limits.
struct JSONSchemaGrammarTests {
    static func schema(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    static func compile(_ text: String) throws -> Grammar {
        try JSONSchemaGrammar.compile(schema(text))
    }

    /// Whether the grammar accepts `text` whole.
    static func matches(_ grammar: Grammar, _ text: String) -> Bool {
        var m = GrammarMatcher(grammar)
        return m.accept(Array(text.utf8)) && m.isAccepting
    }

    static func refusal(_ text: String) throws -> JSONSchemaGrammar.Refusal {
        do {
            _ = try compile(text)
        } catch let refusal as JSONSchemaGrammar.Refusal {
            return refusal
        }
        Issue.record("the schema was accepted: \(text)")
        throw CancellationError()
    }

    @Test func objectWithRequiredAndOptionalProperties() throws {
        let g = try Self.compile(##"{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["name"], "additionalProperties": false}"##)
        for ok in [##"{"name": "Ann"}"##, ##"{"name":"Ann","age":3}"##, ##"{ "name": "Ann", "tags": ["a", "b"] }"##,
                   "{\n  \"name\": \"Ann\",\n  \"age\": -12,\n  \"tags\": []\n}", ##"{"name": "Ann", "age": 3, "tags": ["x"]}"##] {
            #expect(Self.matches(g, ok), "\(ok)")
        }
        for bad in [##"{}"##, ##"{"age": 3}"##, ##"{"name": 3}"##, ##"{"name": "Ann", "extra": 1}"##, ##"{"name": "Ann", "age": 1.5}"##,
                    ##"{"name": "Ann",}"##, ##"{"name": "Ann"} "#, ##"["name"]"##, ##"{"name": "Ann", "tags": [1]}"##] {
            #expect(!Self.matches(g, bad), "\(bad)")
        }
    }

    @Test func enumConstAnyOfAndTypeLists() throws {
        let g = try Self.compile(##"{"type": "object", "properties": {"c": {"enum": ["red", "green", 3, null, {"b": [1], "a": true}]}, "k": {"const": "x\"y"}, "v": {"anyOf": [{"type": "boolean"}, {"type": ["number", "null"]}]}}, "required": ["c", "k", "v"]}"##)
        #expect(Self.matches(g, ##"{"c": "red", "k": "x\"y", "v": true}"##))
        #expect(Self.matches(g, ##"{"c": 3, "k": "x\"y", "v": 2.5e-3}"##))
        #expect(Self.matches(g, ##"{"c": {"a":true,"b":[1]}, "k": "x\"y", "v": null}"##))
        #expect(!Self.matches(g, ##"{"c": "blue", "k": "x\"y", "v": true}"##))
        #expect(!Self.matches(g, ##"{"c": "red", "k": "xy", "v": true}"##))
        #expect(!Self.matches(g, ##"{"c": "red", "k": "x\"y", "v": "s"}"##))
    }

    @Test func lengthsAndItemCounts() throws {
        let g = try Self.compile(##"{"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 3}, "minItems": 1, "maxItems": 2}"##)
        #expect(Self.matches(g, ##"["ab"]"##))
        #expect(Self.matches(g, ##"["abc", "é\n"]"##))
        #expect(!Self.matches(g, ##"[]"##))
        #expect(!Self.matches(g, ##"["a"]"##))
        #expect(!Self.matches(g, ##"["abcd"]"##))
        #expect(!Self.matches(g, ##"["ab", "ab", "ab"]"##))
        // A surrogate pair escape is one code point: not generated where lengths are counted.
        #expect(!Self.matches(g, ##"["\ud83d\ude00"]"##))
    }

    @Test func recursionThroughDefsAndRoot() throws {
        let tree = try Self.compile(##"{"$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["value"], "additionalProperties": false}}, "$ref": "#/$defs/node"}"##)
        #expect(Self.matches(tree, ##"{"value": 1, "children": [{"value": 2}, {"value": 3, "children": [{"value": 4, "children": []}]}]}"##))
        #expect(!Self.matches(tree, ##"{"value": 1, "children": [{"children": []}]}"##))
        let list = try Self.compile(##"{"type": "object", "properties": {"next": {"$ref": "#"}}, "additionalProperties": false}"##)
        #expect(Self.matches(list, ##"{"next": {"next": {}}}"##))
    }

    @Test func jsonObjectModeAcceptsAnyObjectOnly() throws {
        let g = try JSONSchemaGrammar.anyObject()
        #expect(Self.matches(g, ##"{"a": [1, 2.5e10, "x\u00e9😀", true, false, null, {}], "b": {"c": []}}"##))
        // Surrogate escapes (a lone one breaks strict parsers) and exponents that overflow a double are not generated.
        #expect(!Self.matches(g, ##"{"a": "\ud83d"}"##))
        #expect(!Self.matches(g, ##"{"a": 1e400}"##))
        #expect(Self.matches(g, "{\"é\": \"日本\"}"))
        for bad in ["[1]", "\"s\"", "{\"a\" 1}", "{'a': 1}", "{\"a\": 01}", "{\"a\": \"\u{1}\"}", "{\"a\": 1,}", "{\"a\": tru}"] {
            #expect(!Self.matches(g, bad), "\(bad)")
        }
    }

    @Test func refusesUnsupportedKeywordsByName() throws {
        for (schema, name) in [(##"{"type": "string", "pattern": "^a$"}"##, "'pattern'"), (##"{"type": "string", "format": "date"}"##, "'format'"),
                               (##"{"type": "integer", "minimum": 0}"##, "'minimum'"), (##"{"type": "array", "prefixItems": []}"##, "'prefixItems'"),
                               (##"{"allOf": [{"type": "string"}, {"type": "string"}]}"##, "'allOf'"), (##"{"not": {}}"##, "'not'"),
                               (##"{"$ref": "https://example.com/s.json"}"##, "'$ref'"), (##"{"type": "array", "uniqueItems": true}"##, "'uniqueItems'")] {
            let r = try Self.refusal(schema)
            #expect(r.code == "unsupported_schema" && r.reason.contains(name), "\(r.reason)")
        }
        // A keyword beside one that replaces the schema would be ignored: refused instead.
        for (schema, name) in [(##"{"$ref": "#/$defs/a", "minLength": 3, "$defs": {"a": {"type": "string"}}}"##, "'$ref' beside 'minLength'"),
                               (##"{"type": "object", "anyOf": [{"type": "null"}]}"##, "'anyOf' beside 'type'")] {
            let r = try Self.refusal(schema)
            #expect(r.code == "unsupported_schema" && r.reason.contains(name), "\(r.reason)")
        }
        // enum values of another type than the schema's are not generated.
        let typed = try Self.compile(##"{"type": "string", "enum": ["a", 1, null]}"##)
        #expect(Self.matches(typed, ##""a""##) && !Self.matches(typed, "1") && !Self.matches(typed, "null"))
        let r = try Self.refusal(##"{"type": "object", "properties": {"a": {"type": "strin"}}}"##)
        #expect(r.code == "invalid_schema" && r.reason.contains("#/properties/a") && r.reason.contains("strin"), "\(r.reason)")
    }

    @Test func refusesDeeplyNestedSchema() throws {
        var schema = ##"{"type": "string"}"##
        for _ in 0 ..< 20 { schema = ##"{"type": "array", "items": "## + schema + "}" }
        let r = try Self.refusal(schema)
        #expect(r.code == "schema_too_complex" && r.reason.contains("schema depth"), "\(r.reason)")
    }

    @Test func refusesSchemaExpansionBomb() throws {
        // Each bounded repetition costs rules; 64 properties of 256 optional items each would be 16,384.
        let properties = (0 ..< 64).map { #""p\#($0)": {"type": "array", "items": {"type": "integer"}, "maxItems": 256}"# }.joined(separator: ", ")
        let r = try Self.refusal(##"{"type": "object", "properties": {"## + properties + "}}")
        #expect(r.code == "schema_too_complex" && r.reason.contains("grammar rules"), "\(r.reason)")
        let huge = try Self.refusal(##"{"type": "string", "maxLength": 100000}"##)
        #expect(huge.code == "schema_too_complex" && huge.reason.contains("repetition"), "\(huge.reason)")
        let values = (0 ..< 300).map { "\($0)" }.joined(separator: ", ")
        let many = try Self.refusal(##"{"enum": ["## + values + "]}")
        #expect(many.code == "schema_too_complex" && many.reason.contains("enum values"), "\(many.reason)")
        let long = try Self.refusal(##"{"const": ""## + String(repeating: "x", count: 2000) + "\"}")
        #expect(long.code == "schema_too_complex" && long.reason.contains("literal bytes"), "\(long.reason)")
    }

    /// Counts past Int.max (the schema fuzzer's first crash: `"maxItems": 7.7e43` trapped while the
    /// refusal was being worded, taking the whole node down) are refused like any count over the limit.
    @Test func refusesRepetitionCountPastIntMax() throws {
        for (key, value) in [("maxItems", "77777777777777777777777777777777777777777744"), ("minItems", "1e300"), ("maxLength", "9.3e18"),
                             ("minLength", "18446744073709551616")] {
            let type = key.hasSuffix("Items") ? "array" : "string"
            let r = try Self.refusal(#"{"type": "\#(type)", "\#(key)": \#(value)}"#)
            #expect(r.code == "schema_too_complex" && r.reason.contains("'\(key)'") && r.reason.contains("limit: repetition"), "\(r.reason)")
        }
    }

    @Test func survivesHostileSchemaRecursion() throws {
        // A reference to itself that consumes nothing: expanding it would never end.
        for schema in [##"{"$ref": "#"}"##, ##"{"anyOf": [{"$ref": "#"}, {"type": "null"}]}"##,
                       ##"{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}"##] {
            let r = try Self.refusal(schema)
            #expect(r.reason.contains("without consuming input"), "\(r.reason)")
        }
        // Recursion that must go on forever: no finite JSON validates, so no generation could end.
        let r = try Self.refusal(##"{"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]}"##)
        #expect(r.reason.contains("no finite value"), "\(r.reason)")
        // An endless branch beside a finite one: the endless one is dropped, the finite one kept.
        let g = try Self.compile(##"{"$defs": {"loop": {"type": "array", "items": {"$ref": "#/$defs/loop"}, "minItems": 1}}, "anyOf": [{"$ref": "#/$defs/loop"}, {"type": "null"}]}"##)
        #expect(Self.matches(g, "null"))
        #expect(!Self.matches(g, "[[]]"))
        // Deep but finite recursion compiles; the matcher bounds the depth it follows.
        let deep = try Self.compile(##"{"type": "array", "items": {"$ref": "#"}}"##)
        let nested = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(Self.matches(deep, nested))
        let tooDeep = String(repeating: "[", count: 2000) + String(repeating: "]", count: 2000)
        #expect(!Self.matches(deep, tooDeep))
    }
}
