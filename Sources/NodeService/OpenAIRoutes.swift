import Attestation
import Crypto
import Foundation
import Hummingbird
import NIOCore
import Generation
import Inference
import Logging
import ModelSigning
import HTTPTypes
import NodeHTTP

/// Signs receipts with the node's per-boot key (whose digest the node measured into the TPM).
public struct ReceiptIssuer: Sendable {
    let key: P256.Signing.PrivateKey
    public let reference: Receipt.AttestationReference
    public let modelID: String
    public let manifestRoot: String
    public let profile: String
    /// SHA-256 (hex) of the operator's chat template file, as measured with the receipt key; nil:
    /// the model's own template.
    public let chatTemplateSHA256: String?

    public init(key: P256.Signing.PrivateKey, reference: Receipt.AttestationReference, modelID: String, manifestRoot: String, profile: String,
                chatTemplateSHA256: String? = nil) {
        self.key = key
        self.reference = reference
        self.modelID = modelID
        self.manifestRoot = manifestRoot
        self.profile = profile
        self.chatTemplateSHA256 = chatTemplateSHA256
    }

    /// A signed receipt; a key that cannot sign is a failure to answer (500), never an unsigned receipt.
    public func issue(id: String, created: Int, request: [UInt8], responseText: String) throws(ResponseFailure) -> Receipt {
        var receipt = Receipt(id: id, created: created, model: modelID, modelManifestRoot: manifestRoot, profile: profile,
                              requestSHA256: hexString(Array(SHA256.hash(data: request))),
                              responseSHA256: hexString(Array(SHA256.hash(data: Array(responseText.utf8)))),
                              attestation: reference, publicKey: key.publicKey.pemRepresentation,
                              chatTemplateSHA256: chatTemplateSHA256)
        do {
            try receipt.sign(with: key)
        } catch {
            throw ResponseFailure("cannot sign the receipt: \(error)")
        }
        return receipt
    }
}

/// The OpenAI-compatible endpoints: `GET /v1/models`, `POST /v1/chat/completions`,
/// `POST /v1/completions` (with `stream: true` as server-sent events ending in `data: [DONE]`),
/// `POST /tokenize`, `POST /detokenize`, and `GET /metrics`.
///
/// A completion's path: readiness (cheap) → body, bounded by `limits.max_body_bytes` (413) → the
/// request worker parses, renders and tokenizes it off the cooperative pool (400, 429) → the
/// scheduler admits it (429 when full or over the key's share, 503 while draining) → events become
/// one JSON body or an SSE stream, with the receipt at the end. A client that hangs up cancels its
/// request, streaming or not. Errors become OpenAI's error JSON in one place (`APIError(mapping:)`).
public struct OpenAIRoutes: Sendable {
    public let settings: ServiceSettings
    public let parser: CompletionRequestParser
    public let scheduler: InferenceScheduler
    public let worker: RequestWorker
    public let metrics: NodeMetrics
    public let receipts: ReceiptIssuer
    public let readiness: Readiness
    /// When the model was loaded (Unix seconds): `created` of the model object.
    public let loadedAt: Int
    /// `system_fingerprint`: the model manifest root and profile, shortened.
    public let fingerprint: String

    public init(settings: ServiceSettings, parser: CompletionRequestParser, scheduler: InferenceScheduler, worker: RequestWorker,
                metrics: NodeMetrics, receipts: ReceiptIssuer, readiness: Readiness) {
        self.settings = settings
        self.parser = parser
        self.scheduler = scheduler
        self.worker = worker
        self.metrics = metrics
        self.receipts = receipts
        self.readiness = readiness
        loadedAt = Int(Date().timeIntervalSince1970)
        fingerprint = "securenode-\(receipts.profile)-\(receipts.manifestRoot.prefix(12))"
    }

    public static let receiptHeader = HTTPField.Name("X-SecureNode-Receipt")!

    public func register(on router: Router<NodeRequestContext>) {
        router.get("/v1/models") { _, _ in try Self.json(List(data: [ModelObject(id: settings.modelID, created: loadedAt)])) }
        router.get("/v1/models/:id") { _, context in
            guard context.parameters.get("id") == settings.modelID else {
                throw APIError(404, "the model '\(context.parameters.get("id") ?? "")' does not exist on this node", code: "model_not_found")
            }
            return try Self.json(ModelObject(id: settings.modelID, created: loadedAt))
        }
        router.post("/v1/chat/completions") { request, context in
            try await complete(request, context: context, chat: true)
        }
        router.post("/v1/completions") { request, context in
            try await complete(request, context: context, chat: false)
        }
        router.post("/tokenize") { request, _ in try await tokens(request, detokenize: false) }
        router.post("/detokenize") { request, _ in try await tokens(request, detokenize: true) }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition())))
        }
    }

    struct ModelObject: Encodable {
        let id: String
        var object = "model"
        let created: Int
        var owned_by = "securenode"
    }

    struct List: Encodable {
        var object = "list"
        let data: [ModelObject]
    }

    /// `POST /tokenize` and `/detokenize` (see `CompletionRequestParser.tokenize`), on the request worker.
    func tokens(_ request: Request, detokenize: Bool) async throws -> Response {
        let body = try await readBody(request)
        let parser = self.parser
        let answer = try await worker.run { () throws(APIError) -> [UInt8] in
            detokenize ? try parser.detokenize(body) : try parser.tokenize(body)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: answer)))
    }

    /// The request body, bounded by `limits.max_body_bytes` (413), once the node is ready (503).
    func readBody(_ request: Request) async throws -> [UInt8] {
        let state = await readiness.state
        guard state.ready else {
            throw APIError(503, "the node is not ready: \(state.reason)", type: "service_unavailable", code: "not_ready")
        }
        do {
            return Array(try await request.body.collect(upTo: settings.maxBodyBytes).readableBytesView)
        } catch {
            throw APIError(413, "the request body is larger than \(settings.maxBodyBytes) bytes", code: "request_too_large")
        }
    }

    /// Queues one job per choice (choice i with seed + i; choices 1... copy choice 0's evaluated
    /// prompt); if one is refused, the others are cancelled.
    func submitChoices(_ parsed: ParsedCompletionRequest, key: String?) throws -> [InferenceScheduler.Submission] {
        var submissions: [InferenceScheduler.Submission] = []
        do {
            for i in 0 ..< parsed.n {
                var options = parsed.options
                options.sampling.seed = parsed.options.sampling.seed &+ UInt64(i)
                submissions.append(try scheduler.submit(.init(promptIDs: parsed.promptIDs, options: options, key: key, sharesPrompt: parsed.n > 1 && i == 0,
                                                              streams: parsed.stream),
                                                        sharingPromptOf: i == 0 ? nil : submissions.first))
            }
        } catch {
            for s in submissions { s.cancel() }
            throw error
        }
        return submissions
    }

    func complete(_ request: Request, context: NodeRequestContext, chat: Bool) async throws -> Response {
        let body = try await readBody(request)
        let parser = self.parser
        let parsed = try await worker.run { () throws(APIError) -> ParsedCompletionRequest in
            chat ? try parser.chat(body) : try parser.completion(body)
        }
        // Watch the connection before queueing, so that a client that already left is not served.
        let watcher = parsed.stream ? nil : await context.disconnectWatcher()
        let submissions = try submitChoices(parsed, key: context.apiKey)
        let id = (chat ? "chatcmpl-" : "cmpl-") + Self.randomID()
        let created = Int(Date().timeIntervalSince1970)
        context.logger.info("completion accepted", metadata: ["id": .string(id), "prompt_tokens": .stringConvertible(parsed.promptIDs.count),
                                                              "max_tokens": .stringConvertible(parsed.options.maxTokens),
                                                              "n": .stringConvertible(parsed.n), "stream": .stringConvertible(parsed.stream)])
        let answer = Answer(id: id, created: created, chat: chat, parsed: parsed, body: body, fingerprint: fingerprint, receipts: receipts,
                            tokenizer: scheduler.tokenizer)
        if parsed.stream {
            return stream(submissions, answer: answer, on: context.channel.eventLoop, logger: context.logger)
        }
        let token = watcher?.onDisconnect { [logger = context.logger] in
            logger.info("client disconnected; generation cancelled", metadata: ["id": .string(id)])
            for s in submissions { s.cancel() }
        }
        defer { watcher?.forget(token) }
        var results: [InferenceScheduler.Completion] = []
        for submission in submissions {
            var result: InferenceScheduler.Completion?
            // Not streamed (`Request.streams` false): only the end comes.
            events: for await event in submission.events {
                switch event {
                case .text, .logprobs:
                    continue
                case let .failed(reason):
                    for s in submissions { s.cancel() }
                    throw APIError(503, "generation failed: \(reason)", type: "service_unavailable")
                case let .finished(done):
                    result = done
                    break events
                }
            }
            guard let result else {
                for s in submissions { s.cancel() }
                throw APIError(499, "the client closed the connection; generation cancelled", type: "client_closed_request", code: "cancelled")
            }
            results.append(result)
        }
        let receipt = try answer.receipt(for: results)
        context.logger.info("completion finished", metadata: ["id": .string(id), "completion_tokens": .stringConvertible(answer.usage(results).completion_tokens),
                                                              "finish_reason": .string(Self.finishReason(results[0].stopReason)),
                                                              "decode_seconds": .string(Self.seconds(results[0].decodeTime))])
        var response = try Self.json(answer.body(results, receipt: receipt))
        response.headers[Self.receiptHeader] = receipt.jsonData().base64EncodedString()
        return response
    }

    /// One answer's identity and its receipt.
    struct Answer: Sendable {
        let id: String
        let created: Int
        let chat: Bool
        let parsed: ParsedCompletionRequest
        let body: [UInt8]
        let fingerprint: String
        let receipts: ReceiptIssuer
        let tokenizer: Tokenizer

        var object: String { chat ? "chat.completion" : "text_completion" }
        var chunkObject: String { chat ? "chat.completion.chunk" : "text_completion" }
        var wantsLogprobs: Bool { parsed.options.logprobs != nil }

        func logprobs(_ entries: [TokenLogprob], firstOffset: Int = 0) -> ChoiceLogprobs {
            ChoiceLogprobs(chat: chat, entries, tokenizer: tokenizer, firstOffset: firstOffset)
        }

        /// A chat answer as content and tool calls (`ChatTools.parse`; all content without tools).
        func split(_ done: InferenceScheduler.Completion, index: Int) -> (content: String?, calls: [ChatTools.Call]) {
            guard chat, let tools = parsed.tools else { return (done.text, []) }
            return tools.parse(done.text, idSeed: "\(id)/\(index)")
        }

        /// `tool_calls` when the answer called tools, else the stop reason's.
        func finishReason(_ done: InferenceScheduler.Completion, calls: [ChatTools.Call]) -> String {
            calls.isEmpty ? OpenAIRoutes.finishReason(done.stopReason) : "tool_calls"
        }

        /// The receipt over the request body and `ResponseTranscript` of the choices.
        func receipt(for results: [InferenceScheduler.Completion]) throws(ResponseFailure) -> Receipt {
            let choices = results.enumerated().map { i, done in
                let (content, calls) = split(done, index: i)
                return ResponseTranscript.Choice(index: i, text: calls.isEmpty ? done.text : (content ?? ""), finishReason: finishReason(done, calls: calls),
                                                 logprobs: wantsLogprobs ? logprobs(done.logprobs).entries.map {
                                                     ResponseTranscript.Token(token: $0.token, logprob: $0.logprob, top: $0.top.map { ($0.token, $0.logprob) })
                                                 } : nil,
                                                 toolCalls: calls.map { ($0.id, $0.name, $0.arguments) })
            }
            return try receipts.issue(id: id, created: created, request: body, responseText: ResponseTranscript.text(choices))
        }

        /// `completion_tokens` sums every choice's tokens; the prompt counts once.
        func usage(_ results: [InferenceScheduler.Completion]) -> Usage {
            let prompt = results.first?.promptTokens ?? parsed.promptIDs.count
            let completion = results.reduce(0) { $0 + $1.completionTokens }
            return Usage(prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion)
        }

        /// The non-streaming body.
        func body(_ results: [InferenceScheduler.Completion], receipt: Receipt) -> CompletionBody {
            let choices = results.enumerated().map { i, done in
                let (content, calls) = split(done, index: i)
                return Choice(chat ? .message(content, calls) : .text(done.text), index: i, finish: finishReason(done, calls: calls),
                              logprobs: wantsLogprobs ? logprobs(done.logprobs) : nil)
            }
            return CompletionBody(id: id, object: object, created: created, model: parsed.model, system_fingerprint: fingerprint,
                                  choices: choices, usage: usage(results), receipt: receipt)
        }

        /// A streamed chunk with `choices`.
        func chunk(_ choices: [Choice], usage: Usage? = nil, receipt: Receipt? = nil) -> CompletionBody {
            CompletionBody(id: id, object: chunkObject, created: created, model: parsed.model, system_fingerprint: fingerprint,
                           choices: choices, usage: usage, receipt: receipt)
        }

        /// One choice of a chunk: a chat delta, or completion text.
        func piece(_ text: String?, index: Int = 0, role: String? = nil, finish: String? = nil, logprobs: ChoiceLogprobs? = nil,
                   calls: [ChatTools.Call] = []) -> Choice {
            Choice(chat ? .delta(role: role, content: text, calls: calls) : .text(text ?? ""), index: index, finish: finish, logprobs: logprobs)
        }
    }

    /// The event stream. With n > 1 the choices generate together, and their chunks are sent one
    /// choice after the other (choice 0's to its end, then choice 1's, which waited in its buffer),
    /// each ending with its `finish_reason`; the last choice's final chunk carries the receipt
    /// (over every choice) and the usage. With logprobs, a chunk carries the entries of the tokens
    /// generated since the previous chunk, and every choice's final chunk a (possibly empty) list.
    ///
    /// A choice's text is written from the connection's event loop (`loop`, `EventLoopExecutor`): each
    /// token wakes one thread, which encodes and writes it, instead of a cooperative-pool thread that
    /// then hands the write to the event loop. What follows a choice's end (tool calls parsed from the
    /// whole answer, the receipt's hashing and signing, the log) runs back on the cooperative pool.
    func stream(_ submissions: [InferenceScheduler.Submission], answer: Answer, on loop: any EventLoop, logger: Logger) -> Response {
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        let onLoop = EventLoopExecutor(loop)
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            func send<T: Encodable>(_ value: T) async throws {
                var buffer = ByteBuffer(string: "data: ")
                buffer.writeBytes(try encoder.encode(value))
                buffer.writeString("\n\n")
                try await writer.write(buffer)
            }
            do {
                var results: [InferenceScheduler.Completion] = []
                choices: for (index, submission) in submissions.enumerated() {
                    if answer.chat { try await send(answer.chunk([answer.piece("", index: index, role: "assistant")])) }
                    var pending: [TokenLogprob] = []
                    var offset = 0
                    func takeLogprobs() -> ChoiceLogprobs? {
                        guard answer.wantsLogprobs else { return nil }
                        let lp = answer.logprobs(pending, firstOffset: offset)
                        offset += lp.byteCount
                        pending = []
                        return lp
                    }
                    // Text chunks without logprobs: one encoding for the stream, not one per token.
                    let textChunks = answer.wantsLogprobs ? nil : TextChunkEncoder { text in
                        try encoder.encode(answer.chunk([answer.piece(text, index: index)]))
                    }
                    // The text as it comes, on the event loop; then how the choice ended (nil: cancelled).
                    var iterator = submission.events.makeAsyncIterator()
                    let end = try await withTaskExecutorPreference(onLoop) { () async throws -> InferenceScheduler.Event? in
                        while let event = await iterator.next() {
                            switch event {
                            case let .logprobs(entries):
                                pending += entries
                            case let .text(text):
                                // With tools the answer is parsed whole: its content or calls go in one delta at the end.
                                guard answer.parsed.tools == nil else { continue }
                                if let textChunks {
                                    try await writer.write(textChunks.event(text))
                                } else {
                                    try await send(answer.chunk([answer.piece(text, index: index, logprobs: takeLogprobs())]))
                                }
                            case .failed, .finished:
                                return event
                            }
                        }
                        return nil
                    }
                    switch end {
                    case nil, .text?, .logprobs?:
                        break choices
                    case let .failed(reason)?:
                        try await send(APIErrorEnvelope(error: .init(message: "generation failed: \(reason)", type: "service_unavailable")))
                        break choices
                    case let .finished(done)?:
                        results.append(done)
                        var finish = Self.finishReason(done.stopReason)
                        if answer.parsed.tools != nil {
                            let (content, calls) = answer.split(done, index: index)
                            finish = answer.finishReason(done, calls: calls)
                            try await send(answer.chunk([answer.piece(calls.isEmpty ? done.text : content, index: index, logprobs: takeLogprobs(), calls: calls)]))
                        }
                        guard results.count == submissions.count else {
                            try await send(answer.chunk([answer.piece(nil, index: index, finish: finish, logprobs: takeLogprobs())]))
                            continue choices
                        }
                        let receipt: Receipt
                        do {
                            receipt = try answer.receipt(for: results)
                        } catch {
                            try await send(APIErrorEnvelope(error: .init(message: (error as? ResponseFailure)?.reason ?? "\(error)", type: "server_error")))
                            break choices
                        }
                        let usage = answer.usage(results)
                        // The last choice chunk carries finish_reason and the receipt (and usage, unless the
                        // client asked for OpenAI's separate usage chunk with no choices).
                        try await send(answer.chunk([answer.piece(nil, index: index, finish: finish, logprobs: takeLogprobs())],
                                                    usage: answer.parsed.includeUsage ? nil : usage, receipt: receipt))
                        if answer.parsed.includeUsage { try await send(answer.chunk([], usage: usage)) }
                        logger.info("completion finished", metadata: ["id": .string(answer.id), "completion_tokens": .stringConvertible(usage.completion_tokens),
                                                                      "finish_reason": .string(finish), "decode_seconds": .string(Self.seconds(results[0].decodeTime))])
                    }
                }
                for s in submissions { s.cancel() }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                // The client went away: stop generating for it.
                logger.info("client disconnected; generation cancelled", metadata: ["id": .string(answer.id)])
                for s in submissions { s.cancel() }
                throw error
            }
        })
    }

    /// A duration in seconds with microsecond resolution, for the log (`decode_seconds`: choice 0's generation loop).
    static func seconds(_ d: Duration) -> String {
        String(format: "%.6f", Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
    }

    static func finishReason(_ reason: GenerationResult.StopReason) -> String {
        reason == .length ? "length" : "stop"
    }

    static func randomID() -> String {
        (0 ..< 12).map { _ in String(format: "%02x", UInt8.random(in: 0 ... 255)) }.joined()
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws(ResponseFailure) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let data: Data
        do {
            data = try encoder.encode(value)
        } catch {
            throw ResponseFailure("cannot encode the response: \(error)")
        }
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    public static func error(_ error: APIError) -> Response { error.response }
}

// MARK: - Response bodies (OpenAI's shapes, plus `receipt`)

struct Usage: Encodable {
    let prompt_tokens: Int
    let completion_tokens: Int
    let total_tokens: Int
}

/// One choice of any of the four response shapes: `index`, the payload under its key (`message`,
/// `delta` or `text`), `logprobs` (null unless asked for: `ChoiceLogprobs`), and `finish_reason` (null until the last chunk).
struct Choice: Encodable {
    enum Payload {
        case message(String?, [ChatTools.Call])
        case delta(role: String?, content: String?, calls: [ChatTools.Call])
        case text(String)
    }
    let payload: Payload
    let index: Int
    let finish: String?
    let logprobs: ChoiceLogprobs?

    init(_ payload: Payload, index: Int = 0, finish: String?, logprobs: ChoiceLogprobs? = nil) {
        self.payload = payload
        self.index = index
        self.finish = finish
        self.logprobs = logprobs
    }

    enum CodingKeys: String, CodingKey { case index, message, delta, text, logprobs, finish_reason }
    enum MessageKeys: String, CodingKey { case role, content, tool_calls }

    /// OpenAI's `tool_calls` entry (`index` in stream deltas).
    struct ToolCall: Encodable {
        struct Function: Encodable { let name: String; let arguments: String }
        let index: Int?
        let id: String
        let type = "function"
        let function: Function
        init(_ call: ChatTools.Call, index: Int?) {
            self.index = index
            id = call.id
            function = Function(name: call.name, arguments: call.arguments)
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        switch payload {
        case let .message(content, calls):
            var m = c.nestedContainer(keyedBy: MessageKeys.self, forKey: .message)
            try m.encode("assistant", forKey: .role)
            if let content { try m.encode(content, forKey: .content) } else { try m.encodeNil(forKey: .content) }
            if !calls.isEmpty { try m.encode(calls.map { ToolCall($0, index: nil) }, forKey: .tool_calls) }
        case let .delta(role, content, calls):
            var m = c.nestedContainer(keyedBy: MessageKeys.self, forKey: .delta)
            try m.encodeIfPresent(role, forKey: .role)
            try m.encodeIfPresent(content, forKey: .content)
            if !calls.isEmpty { try m.encode(calls.enumerated().map { ToolCall($1, index: $0) }, forKey: .tool_calls) }
        case let .text(text):
            try c.encode(text, forKey: .text)
        }
        if let logprobs { try c.encode(logprobs, forKey: .logprobs) } else { try c.encodeNil(forKey: .logprobs) }
        if let finish { try c.encode(finish, forKey: .finish_reason) } else { try c.encodeNil(forKey: .finish_reason) }
    }
}

/// A completion or a streamed chunk: `chat.completion`, `chat.completion.chunk` or `text_completion`,
/// plus our `receipt`.
struct CompletionBody: Encodable {
    let id: String
    let object: String
    let created: Int
    let model: String
    let system_fingerprint: String
    let choices: [Choice]
    var usage: Usage? = nil
    var receipt: Receipt? = nil
}

struct APIErrorEnvelope: Encodable {
    struct Detail: Encodable {
        let message: String
        let type: String
    }
    let error: Detail
}
