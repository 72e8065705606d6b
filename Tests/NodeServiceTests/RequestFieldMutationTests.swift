import Foundation
import Generation
import JSONMutationSupport
import Testing
@testable import NodeService

/// Every field a client sends, replaced by hostile values: numbers past Int.max and Int.min, 1e300,
/// negative zero, fractions, huge and empty strings, deep and wide containers, wrong types. The
/// request parser (body checks, fields, chat template, tools, `response_format` schemas, tokenizing)
/// must answer each with a parsed request or a 400 (404 for an unknown model) naming what was
/// wrong: a trap would end the node and every client's request with it (the schema fuzzer found
/// one, `"maxItems": 7.7e43`, see fuzz/README.md). Runs on the real vocabulary, with Qwen2.5's chat
/// template so that tools render. Also `/tokenize` and `/detokenize`.
@Suite struct RequestFieldMutationTests {
    nonisolated(unsafe) static let hostile: [Any] = [
        7.7e43, -7.7e43, 1e300, -1e300, 9.3e18, -9.3e18, 9_223_372_036_854_775_807, -9_223_372_036_854_775_807, 4_294_967_296,
        -0.0, 0.5, -1, 0, 1, 2_147_483_648, true, NSNull(), "", String(repeating: "\u{1F600}", count: 3000), [Any](), [String: Any](),
        [[[[[[[[1]]]]]]]], Array(repeating: 1, count: 5000), ["type": "array", "maxItems": 7.7e43], ["$ref": "#"],
    ]

    nonisolated(unsafe) static let bodies: [(route: String, body: [String: Any])] = [
        ("chat", [
            "model": "m", "messages": [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi"]],
            "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 7, "n": 2, "stop": ["\n", "end"], "stream": true,
            "stream_options": ["include_usage": true], "logprobs": true, "top_logprobs": 3, "presence_penalty": 0.5,
            "frequency_penalty": 0.5, "user": "u",
            "response_format": ["type": "json_schema", "json_schema": ["name": "x", "strict": true, "schema": [
                "type": "object", "properties": ["a": ["type": "string", "maxLength": 8], "b": ["type": "array", "items": ["type": "integer"], "maxItems": 3],
                                                 "c": ["enum": ["x", 1, NSNull()]], "d": ["anyOf": [["type": "null"], ["$ref": "#/$defs/e"]]]],
                "required": ["a"], "additionalProperties": false, "$defs": ["e": ["type": "boolean"]]]]],
        ]),
        ("chat", [
            "model": "m", "max_tokens": 8,
            "messages": [["role": "user", "content": [["type": "text", "text": "Weather?"]]],
                         ["role": "assistant", "content": NSNull(), "tool_calls": [["id": "c1", "type": "function",
                                                                                  "function": ["name": "get_weather", "arguments": "{\"city\": \"Paris\"}"]]]],
                         ["role": "tool", "tool_call_id": "c1", "content": "20 C"]],
            "tools": [["type": "function", "function": ["name": "get_weather", "description": "d", "parameters": [
                "type": "object", "properties": ["city": ["type": "string", "maxLength": 40], "n": ["type": "integer"]], "required": ["city"]]]]],
            "tool_choice": ["type": "function", "function": ["name": "get_weather"]],
        ]),
        ("completion", [
            "model": "m", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0, "logprobs": 2, "echo": false,
            "n": 1, "seed": 1, "stop": "x", "suffix": NSNull(),
        ]),
        ("completion", ["model": "m", "prompt": [1, 2, 3, 4], "max_tokens": 4]),
        ("tokenize", ["content": "Hello <|im_start|> world", "add_special": true, "parse_special": true, "with_pieces": true]),
        ("detokenize", ["tokens": [1, 2, 3, 4]]),
    ]

    static func parse(_ parser: CompletionRequestParser, _ route: String, _ bytes: Data) throws(APIError) {
        switch route {
        case "chat": _ = try parser.chat(Array(bytes))
        case "completion": _ = try parser.completion(Array(bytes))
        case "tokenize": _ = try parser.tokenize(Array(bytes))
        default: _ = try parser.detokenize(Array(bytes))
        }
    }

    @Test(.enabled(if: ServiceRouteTests.runModelTests)) func survivesHostileValueInEveryField() throws {
        let (_, _, tokenizer) = try #require(ServiceRouteTests.loaded, "model not found: set SECURENODE_TEST_MODEL").get()
        let qwen: String = try #require(ServiceRouteTests.qwenTemplate, "Qwen2.5's chat template fixture is missing")
        let template = try ChatTemplate.forModel(source: qwen, tokenizer: tokenizer)
        var settings = ServiceSettings(modelID: "m")
        settings.contextLength = 2048
        let parser = CompletionRequestParser(settings: settings, tokenizer: tokenizer, chatTemplate: template)
        var parsed = 0, refused = 0
        for (route, body) in Self.bodies {
            // Each base body parses as it is: the mutations start from requests the node accepts.
            let original = try JSONSerialization.data(withJSONObject: body)
            #expect(throws: Never.self, "\(route): \(String(decoding: original, as: UTF8.self))") {
                try Self.parse(parser, route, original)
            }
            for path in JSONMutation.paths(body) {
                for value in Self.hostile {
                    let mutated = JSONMutation.replacing(body, at: path[...], with: value)
                    let bytes = try JSONSerialization.data(withJSONObject: mutated)
                    do {
                        try Self.parse(parser, route, bytes)
                        parsed += 1
                    } catch {
                        #expect([400, 404].contains(error.status) && !error.message.isEmpty, "\(path) = \(value): \(error.status) \(error.message)")
                        refused += 1
                    }
                }
            }
        }
        // The mutations reached past the first check: some parse, most are refused.
        #expect(parsed > 100 && refused > 1000, "parsed \(parsed), refused \(refused)")
    }
}
