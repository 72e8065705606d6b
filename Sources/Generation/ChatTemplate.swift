import Foundation

/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    /// `system`, `user` or `assistant`.
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// A piece of a rendered conversation: template structure, or text. Special tokens appear only as
/// `.special`, placed there by the template; message contents are always `.text`, so that a user
/// who writes `<|im_start|>` gets those characters, not the control token.
public enum ChatSegment: Sendable, Equatable {
    /// A special token, by its text (e.g. `<|im_start|>`).
    case special(String)
    /// Ordinary text (template text and message contents); never parsed for control tokens.
    case text(String)
}

/// The chat format of a model, recognised from its GGUF `tokenizer.chat_template` (no Jinja
/// engine: the families below are detected by markers in the template text, as llama.cpp's
/// `llm_chat_detect_template` does, and rendered by hand as llama.cpp's built-in templates do):
///
/// - **ChatML** (`<|im_start|>`; SmolLM2, Qwen, ...): `<|im_start|>{role}\n{content}<|im_end|>\n`,
///   generation prompt `<|im_start|>assistant\n`. When the template adds a default system
///   message if the first message is not a system one (SmolLM2 does), that text is taken from
///   the template and added the same way.
/// - **Llama 3** (`<|start_header_id|>`): `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`,
///   generation prompt `<|start_header_id|>assistant<|end_header_id|>\n\n` (BOS comes from the tokenizer).
/// - **Llama 2 / Mistral v1** (`[INST]`): `[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]{assistant}</s>`
///   (system only if the template mentions `<<SYS>>`, otherwise prepended to the first user message).
/// - **Zephyr** (`<|user|>`): `<|{role}|>\n{content}{end}\n`, generation prompt `<|assistant|>\n`,
///   where `{end}` is `<|end|>` when the template uses it (Phi-3), else `</s>`.
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: String, Sendable {
        case chatML, llama3, llama2, zephyr
    }

    public let family: Family
    /// The system message the template adds when the conversation has none (ChatML only).
    public let defaultSystemMessage: String?
    /// For Llama 2: whether system messages get `<<SYS>>` markers.
    let llama2SystemMarkers: Bool
    /// For Zephyr: the end-of-message marker.
    let zephyrEnd: String

    /// Recognises `template` (the GGUF's `tokenizer.chat_template`); nil when it is none of the
    /// families above.
    public init?(template: String) {
        defaultSystemMessage = Self.defaultSystem(in: template)
        llama2SystemMarkers = template.contains("<<SYS>>")
        zephyrEnd = template.contains("<|end|>") ? "<|end|>" : "</s>"
        if template.contains("<|im_start|>") {
            family = .chatML
        } else if template.contains("<|start_header_id|>") {
            family = .llama3
        } else if template.contains("[INST]") {
            family = .llama2
        } else if template.contains("<|user|>") {
            family = .zephyr
        } else {
            return nil
        }
    }

    /// A family directly (for tests and models without a template).
    public init(family: Family, defaultSystemMessage: String? = nil) {
        self.family = family
        self.defaultSystemMessage = defaultSystemMessage
        llama2SystemMarkers = true
        zephyrEnd = "</s>"
    }

    /// The ChatML default system text: `'<|im_start|>system\n…<|im_end|>` inside a branch taken
    /// when `messages[0]['role'] != 'system'`.
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

    /// The conversation as segments, ending with the assistant's generation prompt when
    /// `addGenerationPrompt`. Refuses a role other than system, user and assistant.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws(InferenceError) -> [ChatSegment] {
        for message in messages where !["system", "user", "assistant"].contains(message.role) {
            throw InferenceError(.unsupportedTemplate, "unsupported chat role \"\(message.role)\" (system, user, assistant)")
        }
        var out: [ChatSegment] = []
        switch family {
        case .chatML:
            var messages = messages
            if let system = defaultSystemMessage, messages.first?.role != "system" {
                messages.insert(ChatMessage(role: "system", content: system), at: 0)
            }
            for m in messages {
                out += [.special("<|im_start|>"), .text(m.role + "\n"), .text(m.content), .special("<|im_end|>"), .text("\n")]
            }
            if addGenerationPrompt { out += [.special("<|im_start|>"), .text("assistant\n")] }
        case .llama3:
            for m in messages {
                out += [.special("<|start_header_id|>"), .text(m.role), .special("<|end_header_id|>"), .text("\n\n"),
                        .text(m.content), .special("<|eot_id|>")]
            }
            if addGenerationPrompt { out += [.special("<|start_header_id|>"), .text("assistant"), .special("<|end_header_id|>"), .text("\n\n")] }
        case .llama2:
            var insideTurn = true
            out.append(.text("[INST] "))
            for m in messages {
                if !insideTurn {
                    insideTurn = true
                    out.append(.text("[INST] "))
                }
                switch m.role {
                case "system":
                    out += llama2SystemMarkers ? [.text("<<SYS>>\n"), .text(m.content), .text("\n<</SYS>>\n\n")]
                                               : [.text(m.content), .text("\n")]
                case "user":
                    out += [.text(m.content), .text(" [/INST]")]
                default:
                    out += [.text(m.content), .special("</s>")]
                    insideTurn = false
                }
            }
        case .zephyr:
            for m in messages {
                out += [.special("<|\(m.role)|>"), .text("\n"), .text(m.content), .special(zephyrEnd), .text("\n")]
            }
            if addGenerationPrompt { out += [.special("<|assistant|>"), .text("\n")] }
        }
        return out
    }

    /// The rendered conversation as one string (for display; tokenize the segments instead).
    public func renderText(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws(InferenceError) -> String {
        try render(messages, addGenerationPrompt: addGenerationPrompt).map {
            switch $0 {
            case let .special(text), let .text(text): text
            }
        }.joined()
    }
}
