import Foundation
import Generation
import Inference

/// An API error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, Sendable {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    public var retryAfter: Int?

    public init(_ status: Int, _ message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil,
                retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retryAfter = retryAfter
    }

    public var json: [UInt8] {
        struct Envelope: Encodable { let error: Detail }
        struct Detail: Encodable { let message: String; let type: String; let param: String?; let code: String? }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(Envelope(error: Detail(message: message, type: type, param: param, code: code)))) ?? Data())
    }
}

/// What a completions request asks the scheduler for.
public struct ParsedCompletionRequest: Sendable {
    public var promptIDs: [Int]
    public var options: GenerationOptions
    public var stream: Bool
    public var includeUsage: Bool
    public var model: String
    /// Choices to generate (1...`limits.max_n`): choice i samples with seed + i.
    public var n = 1
    /// How the answer's tool calls are read (chat with `tools`, tool_choice other than "none").
    public var tools: ChatTools?
}

/// Parses and checks `/v1/chat/completions` and `/v1/completions` bodies against the node's
/// limits. Errors name the field and say what was expected.
public struct CompletionRequestParser: Sendable {
    /// Bounds on `stop`: OpenAI's count, and a length that keeps per-token matching cheap.
    public static let maxStopStrings = 4
    public static let maxStopStringBytes = 64
    public let settings: ServiceSettings
    public let tokenizer: Tokenizer
    public let chatTemplate: ChatTemplate?
    /// The vocabulary's token bytes as a trie, for `response_format` grammars (built once).
    public let tokenTrie: TokenTrie
    /// Bounds on a `response_format` schema (`JSONSchemaGrammar.Limits`).
    public var schemaLimits = JSONSchemaGrammar.Limits()

    public init(settings: ServiceSettings, tokenizer: Tokenizer, chatTemplate: ChatTemplate?) {
        self.settings = settings
        self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate
        tokenTrie = TokenTrie(tokenizer: tokenizer)
    }

    /// No valid request needs more JSON values than a few per prompt token (token ids, messages and
    /// their fields), so a body with more is refused by the linear pre-check, before decoding.
    var jsonLimits: JSONShape.Limits {
        JSONShape.Limits(depth: 32, values: min(200_000, 4 * settings.maxPromptTokens + 1024))
    }

    func object(_ body: [UInt8]) throws(APIError) -> [String: JSONValue] {
        try JSONShape.check(body, limits: jsonLimits)
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(body)) else {
            throw APIError(400, "the request body is not valid JSON")
        }
        guard case let .object(fields) = value else { throw APIError(400, "the request body must be a JSON object, not \(value.typeName)") }
        return fields
    }

    public func chat(_ body: [UInt8]) throws(APIError) -> ParsedCompletionRequest {
        let f = try object(body)
        let model = try checkModel(f)
        guard let template = chatTemplate else {
            throw APIError(400, "model \(settings.modelID) has no chat template this node can render; use /v1/completions", param: "messages")
        }
        guard case let .array(items)? = f["messages"] else {
            throw APIError(400, f["messages"] == nil ? "'messages' is required" : "'messages' must be an array", param: "messages")
        }
        guard !items.isEmpty else { throw APIError(400, "'messages' must not be empty", param: "messages") }
        var messages: [ChatMessage] = []
        for (i, item) in items.enumerated() {
            messages.append(try message(item, at: i))
        }
        let tools = try toolRequest(f, body: body, template: template)
        let segments: [ChatSegment]
        do {
            segments = try template.render(messages, tools: tools.rendered)
        } catch {
            throw APIError(400, "cannot render the conversation: \(error.reason)", param: "messages")
        }
        let ids: [Int]
        do {
            ids = try tokenizer.encode(segments, maxWordBytes: settings.maxWordBytes)
        } catch {
            throw APIError(400, "messages: \(error.reason) (limits.max_word_bytes)", param: "messages", code: "word_too_long")
        }
        var maxTokens = try int(f, "max_completion_tokens")
        if maxTokens == nil { maxTokens = try int(f, "max_tokens") }
        return try finish(f, promptIDs: ids, maxTokens: maxTokens, model: model, chat: true, tools: tools)
    }

    /// One message of `messages`: system (or developer), user, assistant (its `tool_calls` too)
    /// or tool (with `tool_call_id`); content as a string or text parts.
    func message(_ item: JSONValue, at i: Int) throws(APIError) -> ChatMessage {
        guard case let .object(m) = item else { throw APIError(400, "messages[\(i)] must be an object", param: "messages") }
        guard case let .string(roleName)? = m["role"] else {
            throw APIError(400, "messages[\(i)].role must be a string", param: "messages")
        }
        let role = roleName == "developer" ? "system" : roleName
        guard ChatTemplate.roles.contains(role) else {
            throw APIError(400, "messages[\(i)].role \"\(roleName)\" is not supported (system, developer, user, assistant, tool)", param: "messages")
        }
        var calls: [ChatToolCall] = []
        if role == "assistant", case let .array(given)? = m["tool_calls"] {
            for (j, c) in given.enumerated() {
                guard case let .object(call) = c, case let .string(id)? = call["id"], case let .object(fn)? = call["function"],
                      case let .string(name)? = fn["name"], case let .string(arguments)? = fn["arguments"] else {
                    throw APIError(400, "messages[\(i)].tool_calls[\(j)] must be {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\": \"<JSON text>\"}}", param: "messages")
                }
                calls.append(ChatToolCall(id: id, name: name, arguments: arguments))
            }
        }
        let content: String
        switch m["content"] {
        case let .string(text)?:
            content = text
        case let .array(parts)?:
            var text = ""
            for (j, part) in parts.enumerated() {
                guard case let .object(p) = part, case .string("text")? = p["type"], case let .string(t)? = p["text"] else {
                    throw APIError(400, "messages[\(i)].content[\(j)] must be {\"type\": \"text\", \"text\": ...}: only text is supported", param: "messages")
                }
                text += t
            }
            content = text
        case nil where !calls.isEmpty, .null? where !calls.isEmpty:
            // An assistant message that only calls tools renders with empty content.
            content = ""
        default:
            throw APIError(400, "messages[\(i)].content must be a string or an array of text parts", param: "messages")
        }
        var toolCallID: String?
        if role == "tool" {
            guard case let .string(id)? = m["tool_call_id"] else {
                throw APIError(400, "messages[\(i)] (role tool) needs 'tool_call_id', the id of the call it answers", param: "messages")
            }
            toolCallID = id
        }
        var name: String?
        if case let .string(n)? = m["name"] { name = n }
        return ChatMessage(role: role, content: content, toolCalls: calls, toolCallID: toolCallID, name: role == "tool" ? name : nil)
    }

    public func completion(_ body: [UInt8]) throws(APIError) -> ParsedCompletionRequest {
        let f = try object(body)
        let model = try checkModel(f)
        var ids: [Int]
        switch f["prompt"] {
        case let .string(text)?:
            ids = try encodePrompt(text)
        case let .array(items)? where items.count == 1:
            if case let .string(text) = items[0] {
                ids = try encodePrompt(text)
            } else {
                throw APIError(400, "'prompt' must be a string, an array of one string, or an array of token ids", param: "prompt")
            }
        case let .array(items)?:
            ids = []
            for item in items {
                guard case let .number(n) = item, n == n.rounded(), n >= 0, n < Double(tokenizer.count) else {
                    throw APIError(400, "'prompt' must be a string, an array of one string, or an array of token ids below \(tokenizer.count)", param: "prompt")
                }
                ids.append(Int(n))
            }
        case nil:
            throw APIError(400, "'prompt' is required", param: "prompt")
        default:
            throw APIError(400, "'prompt' must be a string or an array", param: "prompt")
        }
        if case .bool(true)? = f["echo"] { throw APIError(400, "'echo' is not supported", param: "echo") }
        if let suffix = f["suffix"], suffix != .null { throw APIError(400, "'suffix' is not supported", param: "suffix") }
        return try finish(f, promptIDs: ids, maxTokens: try int(f, "max_tokens"), model: model, chat: false)
    }

    /// A completion prompt's ids, as llama.cpp tokenizes completions; a word over the limit is a 400.
    func encodePrompt(_ text: String) throws(APIError) -> [Int] {
        do {
            return try tokenizer.encode(text, addSpecial: true, parseSpecial: true, maxWordBytes: settings.maxWordBytes)
        } catch {
            throw APIError(400, "prompt: \(error.reason) (limits.max_word_bytes)", param: "prompt", code: "word_too_long")
        }
    }

    func checkModel(_ f: [String: JSONValue]) throws(APIError) -> String {
        guard case let .string(model)? = f["model"] else {
            throw APIError(400, f["model"] == nil ? "'model' is required" : "'model' must be a string", param: "model")
        }
        guard model == settings.modelID else {
            throw APIError(404, "the model '\(model)' does not exist on this node (it serves '\(settings.modelID)')", param: "model", code: "model_not_found")
        }
        return model
    }

    func finish(_ f: [String: JSONValue], promptIDs: [Int], maxTokens requested: Int?, model: String, chat: Bool,
                tools: ToolRequest = ToolRequest()) throws(APIError) -> ParsedCompletionRequest {
        guard !promptIDs.isEmpty else { throw APIError(400, "the prompt is empty") }
        guard promptIDs.count <= settings.maxPromptTokens else {
            throw APIError(400, "the prompt has \(promptIDs.count) tokens; this node accepts at most \(settings.maxPromptTokens)",
                           code: "context_length_exceeded")
        }
        let room = settings.contextLength - promptIDs.count
        guard room >= 1 else {
            throw APIError(400, "the prompt has \(promptIDs.count) tokens and leaves no room in the \(settings.contextLength)-token context",
                           code: "context_length_exceeded")
        }
        if let requested {
            guard requested >= 1 else { throw APIError(400, "'max_tokens' must be at least 1", param: "max_tokens") }
            guard requested <= settings.maxTokens else {
                throw APIError(400, "'max_tokens' is \(requested); this node allows at most \(settings.maxTokens)", param: "max_tokens")
            }
            guard requested <= room else {
                throw APIError(400, "the prompt (\(promptIDs.count) tokens) plus max_tokens (\(requested)) exceeds the \(settings.contextLength)-token context",
                               param: "max_tokens", code: "context_length_exceeded")
            }
        }
        let maxTokens = requested ?? min(settings.maxTokens, room)
        let temperature = try number(f, "temperature") ?? 1
        guard (0 ... 2).contains(temperature) else { throw APIError(400, "'temperature' must be between 0 and 2", param: "temperature") }
        let topP = try number(f, "top_p") ?? 1
        guard topP > 0, topP <= 1 else { throw APIError(400, "'top_p' must be in (0, 1]", param: "top_p") }
        let seed = try int(f, "seed").map { UInt64(bitPattern: Int64($0)) } ?? UInt64.random(in: .min ... .max)
        let n = try int(f, "n") ?? 1
        guard n >= 1 else { throw APIError(400, "'n' must be at least 1", param: "n") }
        guard n <= settings.maxN else {
            throw APIError(400, "'n' is \(n); this node generates at most \(settings.maxN) choices per request (limits.max_n)", param: "n")
        }
        // Each choice is a sequence of its own: n that can never be admitted whole is a 400, not a 429 forever.
        let capacity = min(settings.parallel + settings.queueDepth, settings.perKeyConcurrency ?? .max)
        guard n <= capacity else {
            throw APIError(400, "'n' is \(n); this node holds at most \(capacity) sequences for one request (limits.parallel + limits.queue_depth, limits.per_key_concurrency)",
                           param: "n")
        }
        var penalties: [Float] = []
        for name in ["presence_penalty", "frequency_penalty"] {
            let v = try number(f, name) ?? 0
            guard (-2 ... 2).contains(v) else { throw APIError(400, "'\(name)' must be between -2 and 2", param: name) }
            penalties.append(Float(v))
        }
        let logprobs = try logprobCount(f, chat: chat)
        if !chat, let given = f["tools"], given != .null {
            throw APIError(400, "'tools' is a chat parameter: use /v1/chat/completions", param: "tools", code: "tools_unsupported")
        }
        var grammar = try responseGrammar(f)
        if let toolGrammar = tools.grammar {
            guard grammar == nil else {
                throw APIError(400, "'response_format' and a required tool call ('tool_choice') cannot both hold the answer", param: "tool_choice")
            }
            grammar = toolGrammar
        }
        var stops: [String] = []
        switch f["stop"] {
        case nil, .null?: break
        case let .string(s)?: stops = [s]
        case let .array(items)?:
            for item in items {
                guard case let .string(s) = item else { throw APIError(400, "'stop' must be a string or an array of strings", param: "stop") }
                stops.append(s)
            }
        default: throw APIError(400, "'stop' must be a string or an array of strings", param: "stop")
        }
        guard stops.count <= Self.maxStopStrings else {
            throw APIError(400, "'stop' takes at most \(Self.maxStopStrings) strings, not \(stops.count)", param: "stop")
        }
        for (i, stop) in stops.enumerated() where stop.utf8.count > Self.maxStopStringBytes {
            throw APIError(400, "'stop'[\(i)] is \(stop.utf8.count) bytes long; at most \(Self.maxStopStringBytes) are allowed", param: "stop")
        }
        let stream = try bool(f, "stream") ?? false
        var includeUsage = false
        if case let .object(o)? = f["stream_options"], case let .bool(b)? = o["include_usage"] { includeUsage = b }
        let sampling = SamplingParameters(temperature: Float(temperature), topK: 0, topP: Float(topP), minP: 0,
                                          repetitionPenalty: 1, seed: seed, presencePenalty: penalties[0], frequencyPenalty: penalties[1])
        var options = GenerationOptions(maxTokens: maxTokens, sampling: sampling, stopStrings: stops)
        options.logprobs = logprobs
        options.grammar = grammar.map { GrammarConstraint(grammar: $0, trie: tokenTrie) }
        return ParsedCompletionRequest(promptIDs: promptIDs, options: options, stream: stream, includeUsage: includeUsage, model: model, n: n,
                                       tools: tools.parsing)
    }

    /// How many alternatives to report per token, or nil for no log-probabilities. Chat:
    /// `logprobs: true` with `top_logprobs: 0...20` (which needs `logprobs: true`); completions:
    /// `logprobs: 0...20`.
    func logprobCount(_ f: [String: JSONValue], chat: Bool) throws(APIError) -> Int? {
        let most = TokenLogprob.maxTop
        if chat {
            let wanted = try bool(f, "logprobs") ?? false
            let top = try int(f, "top_logprobs")
            if let top {
                guard wanted else { throw APIError(400, "'top_logprobs' needs 'logprobs': true", param: "top_logprobs") }
                guard (0 ... most).contains(top) else { throw APIError(400, "'top_logprobs' must be between 0 and \(most), not \(top)", param: "top_logprobs") }
            }
            return wanted ? (top ?? 0) : nil
        }
        if case .bool(false)? = f["logprobs"] { return nil }
        if case .bool? = f["logprobs"] {
            throw APIError(400, "'logprobs' of a completion is a number of alternatives (0...\(most)), not a boolean", param: "logprobs")
        }
        guard let k = try int(f, "logprobs") else { return nil }
        guard (0 ... most).contains(k) else { throw APIError(400, "'logprobs' must be between 0 and \(most), not \(k)", param: "logprobs") }
        return k
    }

    func number(_ f: [String: JSONValue], _ key: String) throws(APIError) -> Double? {
        switch f[key] {
        case nil, .null?: return nil
        case let .number(n)?:
            guard n.isFinite else { throw APIError(400, "'\(key)' must be a finite number", param: key) }
            return n
        case let other?: throw APIError(400, "'\(key)' must be a number, not \(other.typeName)", param: key)
        }
    }

    func int(_ f: [String: JSONValue], _ key: String) throws(APIError) -> Int? {
        guard let n = try number(f, key) else { return nil }
        guard n == n.rounded(), abs(n) < 9.0e15 else { throw APIError(400, "'\(key)' must be an integer", param: key) }
        return Int(n)
    }

    func bool(_ f: [String: JSONValue], _ key: String) throws(APIError) -> Bool? {
        switch f[key] {
        case nil, .null?: return nil
        case let .bool(b)?: return b
        case let other?: throw APIError(400, "'\(key)' must be a boolean, not \(other.typeName)", param: key)
        }
    }
}
