import Foundation
import Testing
@testable import Generation

/// The real chat templates (llama.cpp's models/templates, SmolLM2's own, and three from model
/// cards) rendered by the Jinja interpreter equal Python jinja2's renderings exactly
/// (`scripts/chat-template-fixtures.py` wrote them to Fixtures/ChatTemplates/expected.json), and
/// throw where jinja2 raised.
@Suite struct ChatTemplateFixtureTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/ChatTemplates")

    struct Fixture {
        var tokens: [String: (String, String)] = [:]
        var conversations: [String: ([ChatMessage], [JinjaValue]?)] = [:]
        var cases: [(template: String, conversation: String, generationPrompt: Bool, expected: String?)] = []
    }

    static func string(_ v: JinjaValue?) -> String? { if case let .string(s)? = v { s.string } else { nil } }

    static func messages(_ v: JinjaValue) throws -> [ChatMessage] {
        guard case let .array(items) = v else { throw JinjaError(.type, "messages") }
        return items.map { item in
            guard case let .object(m) = item else { return ChatMessage(role: "?", content: nil) }
            var calls: [ChatToolCall] = []
            if case let .array(cs)? = m["tool_calls"] {
                for case let .object(c) in cs {
                    guard case let .object(f)? = c["function"] else { continue }
                    calls.append(ChatToolCall(id: string(c["id"]) ?? "", name: string(f["name"]) ?? "", arguments: string(f["arguments"]) ?? ""))
                }
            }
            return ChatMessage(role: string(m["role"]) ?? "?", content: string(m["content"]), toolCalls: calls, toolCallID: string(m["tool_call_id"]))
        }
    }

    static let fixture: Fixture = {
        var out = Fixture()
        guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent("expected.json").path),
              case let .object(root) = try? JinjaJSON.parse(Array(data)) else { return out }
        if case let .object(tokens)? = root["tokens"] {
            for (name, pair) in tokens.pairs {
                if case let .array(p) = pair { out.tokens[name] = (Self.string(p[0]) ?? "", Self.string(p[1]) ?? "") }
            }
        }
        if case let .object(conversations)? = root["conversations"] {
            for (name, c) in conversations.pairs {
                guard case let .object(o) = c, let list = try? Self.messages(o["messages"] ?? JinjaValue.none) else { continue }
                var tools: [JinjaValue]?
                if case let .array(t)? = o["tools"] { tools = t }
                out.conversations[name] = (list, tools)
            }
        }
        if case let .array(cases)? = root["cases"] {
            for case let .object(c) in cases {
                out.cases.append((Self.string(c["template"]) ?? "", Self.string(c["conversation"]) ?? "", c["add_generation_prompt"] == .bool(true),
                                  Self.string(c["expected"])))
            }
        }
        return out
    }()

    @Test func fixtureIsComplete() {
        #expect(Self.fixture.tokens.count == 14)
        #expect(Self.fixture.cases.count >= 14 * 9 * 2)
    }

    @Test(arguments: ["HuggingFaceTB-SmolLM2-135M-Instruct", "HuggingFaceTB-SmolLM3-3B", "Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B",
                      "NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct",
                      "meta-llama-Llama-3.3-70B-Instruct", "meta-llama-Llama-2-7b-chat", "mistralai-Mistral-7B-Instruct-v0.2",
                      "mistralai-Mistral-Nemo-Instruct-2407", "TinyLlama-1.1B-Chat-v1.0", "microsoft-Phi-3.5-mini-instruct", "google-gemma-2-2b-it"])
    func rendersLikeJinja2(_ name: String) throws {
        let source = try String(contentsOf: Self.directory.appendingPathComponent(name + ".jinja"), encoding: .utf8)
        let (bos, eos) = try #require(Self.fixture.tokens[name])
        let template = try ChatTemplate(source: source, bosToken: bos, eosToken: eos)
        let cases = Self.fixture.cases.filter { $0.template == name }
        #expect(!cases.isEmpty)
        for c in cases {
            let (messages, tools) = try #require(Self.fixture.conversations[c.conversation])
            let label = "\(name) / \(c.conversation) / add_generation_prompt=\(c.generationPrompt)"
            if let expected = c.expected {
                let text = try template.renderText(messages, tools: tools, addGenerationPrompt: c.generationPrompt,
                                                   extra: ["date_string": .text("26 Jul 2024")])
                #expect(text == expected, "\(label)")
            } else {
                #expect(throws: InferenceError.self, "\(label)") {
                    try template.renderText(messages, tools: tools, addGenerationPrompt: c.generationPrompt, extra: ["date_string": .text("26 Jul 2024")])
                }
            }
        }
    }

    /// Templates that render tools are recognised, with the format their models answer in.
    @Test func detectsToolSupport() throws {
        func format(_ name: String) throws -> ChatTemplate.ToolCallFormat? {
            try ChatTemplate(source: String(contentsOf: Self.directory.appendingPathComponent(name + ".jinja"), encoding: .utf8)).toolCallFormat
        }
        #expect(try format("Qwen-Qwen2.5-7B-Instruct") == .hermes)
        #expect(try format("Qwen-Qwen3-0.6B") == .hermes)
        #expect(try format("NousResearch-Hermes-3-Llama-3.1-8B-tool_use") == .hermes)
        #expect(try format("meta-llama-Llama-3.1-8B-Instruct") == .llama3JSON)
        #expect(try format("meta-llama-Llama-3.2-3B-Instruct") == .llama3JSON)
        #expect(try format("mistralai-Mistral-Nemo-Instruct-2407") == .mistral)
        #expect(try format("HuggingFaceTB-SmolLM2-135M-Instruct") == nil)
        #expect(try format("google-gemma-2-2b-it") == nil)
    }
}
