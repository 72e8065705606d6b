import Foundation

/// A function call an assistant made (OpenAI's `tool_calls[i]`).
public struct ChatToolCall: Sendable, Equatable {
    public var id: String
    public var name: String
    /// The arguments as JSON text.
    public var arguments: String

    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    /// `system`, `user`, `assistant` or `tool`.
    public var role: String
    /// nil for an assistant message that only calls tools.
    public var content: String?
    /// The calls of an assistant message.
    public var toolCalls: [ChatToolCall]
    /// For a `tool` message: the call it answers.
    public var toolCallID: String?
    /// For a `tool` message: the function's name, when given.
    public var name: String?

    public init(role: String, content: String?, toolCalls: [ChatToolCall] = [], toolCallID: String? = nil, name: String? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.name = name
    }
}

/// A piece of a rendered conversation. Only text the template itself wrote (`.template`) is
/// searched for the tokenizer's special tokens; message contents and tools are `.text` and never
/// become control tokens, so a user who writes `<|im_start|>` gets those characters.
public enum ChatSegment: Sendable, Equatable {
    /// A special token, by its text (e.g. `<|im_start|>`).
    case special(String)
    /// Data (message contents, tools): never parsed for control tokens.
    case text(String)
    /// Text of the template: its special tokens become their tokens, the rest is text.
    case template(String)
}

/// A model's chat format: the GGUF's own `tokenizer.chat_template` (or a file given in its place),
/// rendered by `JinjaTemplate` with Hugging Face's variables: `messages` (each `role`, `content`,
/// and `tool_calls` / `tool_call_id` / `name` when present), `tools` (the request's tools, or
/// none), `add_generation_prompt`, `bos_token`, `eos_token`.
///
/// Provenance: the template's own text may hold control tokens; message contents, tool
/// definitions and tool-call arguments are data (`ChatSegment.text`). Roles are checked against
/// system/user/assistant/tool by the caller and count as template text (templates build
/// `'<|' + role + '|>'` markers from them).
public struct ChatTemplate: Sendable, Equatable {
    /// The family a template belongs to, recognised by its markers; it decides how tool calls in
    /// the output are read (`ToolCallFormat`), never how the conversation is rendered.
    public enum Family: String, Sendable {
        case chatML, llama3, llama2, zephyr, mistral, gemma
    }

    /// How a model of this template writes tool calls.
    public enum ToolCallFormat: String, Sendable {
        /// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` (Hermes, Qwen 2.5/3).
        case hermes
        /// `{"name": ..., "parameters": {...}}` as the whole message (Llama 3.1/3.2).
        case llama3JSON
        /// `[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}]` (Mistral).
        case mistral
    }

    public let source: String
    let template: JinjaTemplate
    public let family: Family?
    /// The system text a ChatML template adds when the conversation has none (informational).
    public let defaultSystemMessage: String?
    public let bosToken: String
    public let eosToken: String
    /// Non-nil when rendering with tools puts them in the prompt (checked by rendering a probe tool).
    public private(set) var toolCallFormat: ToolCallFormat?
    /// Variables beside the conversation (the built-in families' settings).
    var extraContext: [String: JinjaValue] = [:]

    /// Roles the caller may give; they count as template text.
    public static let roles: Set<String> = ["system", "user", "assistant", "tool"]

    /// Parses `source` (a Jinja chat template). Throws the parse error (naming the line).
    public init(source: String, bosToken: String = "", eosToken: String = "", limits: JinjaLimits = JinjaLimits()) throws(JinjaError) {
        self.source = source
        template = try JinjaTemplate(source, limits: limits)
        self.bosToken = bosToken
        self.eosToken = eosToken
        defaultSystemMessage = Self.defaultSystem(in: source)
        family = Self.family(of: source)
        toolCallFormat = probeTools()
    }

    /// `init(source:)` without the error: nil when the template does not parse.
    public init?(template: String, bosToken: String = "", eosToken: String = "") {
        guard let parsed = try? ChatTemplate(source: template, bosToken: bosToken, eosToken: eosToken) else { return nil }
        self = parsed
    }

    /// A built-in template of `family` (for tests and models without a template): ChatML (with
    /// `defaultSystemMessage` when the conversation has no system message), Llama 3, Llama 2
    /// (`[INST] <<SYS>>…`), Zephyr (`<|role|>\n…</s>\n`).
    public init(family: Family, defaultSystemMessage: String? = nil) {
        let source: String
        let check = "{%- if message.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unsupported chat role \"' ~ message.role ~ '\" (system, user, assistant)') }}{% endif %}"
        switch family {
        case .llama3:
            source = "{% for message in messages %}\(check)<|start_header_id|>{{ message.role }}<|end_header_id|>\n\n{{ message.content }}<|eot_id|>{% endfor %}"
                + "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
        case .llama2, .mistral:
            source = "{% set ns = namespace(open=true) %}[INST] {% for message in messages %}\(check){% if not ns.open %}[INST] {% set ns.open = true %}{% endif %}"
                + "{% if message.role == 'system' %}<<SYS>>\n{{ message.content }}\n<</SYS>>\n\n{% elif message.role == 'user' %}{{ message.content }} [/INST]"
                + "{% else %}{{ message.content }}</s>{% set ns.open = false %}{% endif %}{% endfor %}"
        case .zephyr:
            source = "{% for message in messages %}\(check)<|{{ message.role }}|>\n{{ message.content }}</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
        case .chatML, .gemma:
            source = "{% if default_system_message is string and messages[0].role != 'system' %}<|im_start|>system\n{{ default_system_message }}<|im_end|>\n{% endif %}"
                + "{% for message in messages %}\(check)<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
                + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        }
        // The built-in sources are constants that parse.
        self = try! ChatTemplate(source: source, eosToken: "</s>")
        self.defaultSystemMessageOverride(defaultSystemMessage)
    }

    private mutating func defaultSystemMessageOverride(_ text: String?) {
        if let text { extraContext["default_system_message"] = .text(text) }
    }

    public static func == (a: ChatTemplate, b: ChatTemplate) -> Bool {
        a.source == b.source && a.bosToken == b.bosToken && a.eosToken == b.eosToken && a.extraContext == b.extraContext
    }

    /// The family by the template's markers.
    static func family(of source: String) -> Family? {
        if source.contains("<|im_start|>") { return .chatML }
        if source.contains("<|start_header_id|>") { return .llama3 }
        if source.contains("[TOOL_CALLS]") || source.contains("[AVAILABLE_TOOLS]") { return .mistral }
        if source.contains("[INST]") { return .llama2 }
        if source.contains("<start_of_turn>") { return .gemma }
        if source.contains("<|user|>") { return .zephyr }
        return nil
    }

    /// The ChatML default system text: `'<|im_start|>system\n…<|im_end|>` inside a branch taken
    /// when `messages[0]['role'] != 'system'` (informational only: rendering runs the template).
    static func defaultSystem(in template: String) -> String? {
        guard template.contains("messages[0]['role'] != 'system'") || template.contains("messages[0][\"role\"] != \"system\"") else {
            return nil
        }
        let marker = "<|im_start|>system\\n"
        guard let start = template.range(of: marker), let end = template.range(of: "<|im_end|>", range: start.upperBound ..< template.endIndex) else {
            return nil
        }
        let text = String(template[start.upperBound ..< end.lowerBound])
        return text.contains("{") || text.contains("'") ? nil : text
    }

    /// Renders a conversation with a probe tool: a template that supports tools writes its name.
    func probeTools() -> ToolCallFormat? {
        let name = "securenode_probe_function"
        var function = JinjaObject()
        function["name"] = .text(name)
        function["description"] = .text("probe")
        function["parameters"] = .object(JinjaObject(["type": .text("object"), "properties": .object(JinjaObject())]))
        let tool = JinjaValue.object(JinjaObject(["type": .text("function"), "function": .object(function)]))
        guard let text = try? renderText([ChatMessage(role: "user", content: "hi")], tools: [tool]), text.contains(name) else { return nil }
        if source.contains("<tool_call>") { return .hermes }
        if source.contains("[TOOL_CALLS]") { return .mistral }
        if source.contains("<|start_header_id|>") { return .llama3JSON }
        return .hermes
    }

    /// The template variables of a conversation.
    static func value(of messages: [ChatMessage]) -> JinjaValue {
        .array(messages.map { m in
            var o = JinjaObject()
            o["role"] = .string(JinjaString(m.role, fromTemplate: roles.contains(m.role)))
            o["content"] = m.content.map { JinjaValue.text($0) } ?? JinjaValue.none
            if !m.toolCalls.isEmpty {
                o["tool_calls"] = .array(m.toolCalls.map { call in
                    // Arguments as an object when they parse (as llama.cpp gives them to templates).
                    var arguments = JinjaValue.text(call.arguments)
                    if case let .object(o)? = try? JinjaJSON.parse(Array(call.arguments.utf8)) { arguments = .object(o) }
                    return JinjaValue.object(JinjaObject(["id": .text(call.id), "type": .text("function"),
                                                          "function": .object(JinjaObject(["name": .text(call.name), "arguments": arguments]))]))
                })
            }
            if let id = m.toolCallID { o["tool_call_id"] = .text(id) }
            if let name = m.name { o["name"] = .text(name) }
            return .object(o)
        })
    }

    /// The rendered conversation with provenance. `tools` are OpenAI tool objects (nil: none);
    /// `extra` adds variables (e.g. `date_string`). A template's `raise_exception` or a bound it
    /// passes is `.unsupportedTemplate` naming the cause.
    public func render(_ messages: [ChatMessage], tools: [JinjaValue]? = nil, addGenerationPrompt: Bool = true,
                       extra: [String: JinjaValue] = [:]) throws(InferenceError) -> [ChatSegment] {
        var context = extraContext
        for (k, v) in extra { context[k] = v }
        context["messages"] = Self.value(of: messages)
        context["tools"] = tools.map { JinjaValue.array($0) } ?? JinjaValue.none
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        context["bos_token"] = .string(JinjaString(bosToken, fromTemplate: true))
        context["eos_token"] = .string(JinjaString(eosToken, fromTemplate: true))
        let output: JinjaString
        do {
            output = try template.render(context)
        } catch {
            throw InferenceError(.unsupportedTemplate, error.description)
        }
        return output.pieces.map { $0.fromTemplate ? .template($0.text) : .text($0.text) }
    }

    /// The rendered conversation as one string (for display and tests; tokenize the segments).
    public func renderText(_ messages: [ChatMessage], tools: [JinjaValue]? = nil, addGenerationPrompt: Bool = true,
                           extra: [String: JinjaValue] = [:]) throws(InferenceError) -> String {
        try render(messages, tools: tools, addGenerationPrompt: addGenerationPrompt, extra: extra).map {
            switch $0 {
            case let .special(text), let .text(text), let .template(text): text
            }
        }.joined()
    }
}

extension ChatTemplate {
    /// The model's template: `overrideSource` (a `--chat-template-file`/`model.chat_template`)
    /// when given, else the GGUF's `tokenizer.chat_template`; nil when there is neither. BOS and EOS
    /// texts come from the tokenizer. A template that does not parse is an error naming its line.
    public static func forModel(source: String?, tokenizer: Tokenizer) throws(InferenceError) -> ChatTemplate? {
        guard let source else { return nil }
        let bos = tokenizer.bos.map { tokenizer.tokens[$0] } ?? ""
        let eos = tokenizer.eos.map { tokenizer.tokens[$0] } ?? ""
        do {
            return try ChatTemplate(source: source, bosToken: bos, eosToken: eos)
        } catch {
            throw InferenceError(.unsupportedTemplate, error.description)
        }
    }
}
