import Attestation
import Foundation
import Generation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import NodeService

/// `tools` / `tool_choice` through the routes on the real model served with Qwen2.5's chat template
/// (which renders tools): required and named calls are valid calls of the declared tools, the
/// receipt covers them, a stream sends the same calls, and bad tool requests are refused by name.
extension ServiceRouteTests {
    static let qwenTemplate: String? = try? String(
        contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("GenerationTests/Fixtures/ChatTemplates/Qwen-Qwen2.5-7B-Instruct.jinja"), encoding: .utf8)

    static let weather = ##"{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}}"##
    static let search = ##"{"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {"query": {"type": "string", "maxLength": 30}}, "required": ["query"]}}}"##

    @Test(.enabled(if: runModelTests)) func toolChoiceRequiredGivesValidCallsCoveredByTheReceipt() async throws {
        let node = try await Node(chatTemplate: try #require(Self.qwenTemplate))
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            for choice in [#""required""#, #"{"type": "function", "function": {"name": "search"}}"#] {
                let body = ##"{"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 80, "temperature": 0.9, "seed": 4, "tools": ["## + Self.weather + ", " + Self.search + ##"], "tool_choice": "## + choice + "}"
                let response = try await Self.post(client, "/v1/chat/completions", body)
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let object = try Self.json(response.body)
                let c = try #require(Self.choices(object).first)
                #expect(c["finish_reason"] as? String == "tool_calls")
                let message = try #require(c["message"] as? [String: Any])
                let calls = try #require(message["tool_calls"] as? [[String: Any]])
                #expect(calls.count == 1)
                let function = try #require(calls[0]["function"] as? [String: Any])
                let name = try #require(function["name"] as? String)
                let arguments = try #require(JSONSerialization.jsonObject(with: Data((function["arguments"] as! String).utf8)) as? [String: Any])
                if choice.contains("search") { #expect(name == "search") }
                if name == "search" {
                    #expect(arguments["query"] is String)
                } else {
                    #expect(name == "get_weather" && arguments["city"] is String && ["celsius", "fahrenheit"].contains(arguments["unit"] as? String))
                }
                // The receipt: the v2 transcript with the call.
                let transcript = ResponseTranscript.text([.init(index: 0, text: (message["content"] as? String) ?? "", finishReason: "tool_calls", logprobs: nil,
                                                                toolCalls: [(calls[0]["id"] as! String, name, function["arguments"] as! String)])])
                #expect(try Self.receipt(object).responseSHA256 == Self.sha(transcript))
                #expect(ResponseTranscript.text(ofResponse: Array(response.body.readableBytesView)) == transcript)
                // Streamed: the same call in a delta, the same transcript.
                let streamed = try await Self.post(client, "/v1/chat/completions", String(body.dropLast()) + #", "stream": true}"#)
                let events = String(buffer: streamed.body)
                #expect(events.contains(#""tool_calls":[{"#) && events.contains(#""finish_reason":"tool_calls""#))
                let again = ResponseTranscript.text(ofResponse: Array(streamed.body.readableBytesView))
                #expect(again.contains("tool_call ") && again.contains(Self.hex(name)))
            }
        }
    }

    static func hex(_ s: String) -> String { s.utf8.map { String(format: "%02x", $0) }.joined() }

    @Test(.enabled(if: runModelTests)) func refusesBadToolRequestsByName() async throws {
        let node = try await Node(chatTemplate: try #require(Self.qwenTemplate))
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            let user = #"[{"role": "user", "content": "hi"}]"#
            let cases: [(String, String)] = [
                (##"{"model": "m", "messages": "## + user + ##", "tools": ["## + Self.weather + ##"], "tool_choice": {"type": "function", "function": {"name": "nope"}}}"##, "'nope'"),
                (##"{"model": "m", "messages": "## + user + ##", "tool_choice": "required"}"##, "needs 'tools'"),
                (##"{"model": "m", "messages": "## + user + ##", "tools": [{"type": "function", "function": {"name": "bad name!"}}]}"##, "a-z, A-Z"),
                (##"{"model": "m", "messages": "## + user + ##", "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "string", "pattern": "a+"}}}}}], "tool_choice": "required"}"##, "'pattern'"),
                (##"{"model": "m", "messages": "## + user + ##", "tools": ["## + Self.weather + ##"], "tool_choice": "required", "response_format": {"type": "json_object"}}"##, "cannot both"),
                (##"{"model": "m", "messages": [{"role": "tool", "content": "x"}]}"##, "tool_call_id"),
                (##"{"model": "m", "prompt": "x", "tools": ["## + Self.weather + ##"]}"##, "chat parameter"),
            ]
            for (body, says) in cases {
                let uri = body.contains("messages") ? "/v1/chat/completions" : "/v1/completions"
                let response = try await Self.post(client, uri, body)
                #expect(response.status == .badRequest, "\(body)")
                #expect(String(buffer: response.body).contains(says), "\(String(buffer: response.body))")
            }
            // A history with an assistant call and its tool answer renders (Qwen's <tool_response> turn).
            let history = ##"{"model": "m", "max_tokens": 4, "tools": ["## + Self.weather + ##"], "messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]}, {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}]}"##
            let response = try await Self.post(client, "/v1/chat/completions", history)
            #expect(response.status == .ok, "\(String(buffer: response.body))")
        }
    }
}
