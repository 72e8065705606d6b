import Attestation
import Crypto
import Foundation
import Hummingbird
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

    public init(key: P256.Signing.PrivateKey, reference: Receipt.AttestationReference, modelID: String, manifestRoot: String, profile: String) {
        self.key = key
        self.reference = reference
        self.modelID = modelID
        self.manifestRoot = manifestRoot
        self.profile = profile
    }

    /// A signed receipt; a key that cannot sign is a failure to answer (500), never an unsigned receipt.
    public func issue(id: String, created: Int, request: [UInt8], responseText: String) throws(ResponseFailure) -> Receipt {
        var receipt = Receipt(id: id, created: created, model: modelID, modelManifestRoot: manifestRoot, profile: profile,
                              requestSHA256: hexString(Array(SHA256.hash(data: request))),
                              responseSHA256: hexString(Array(SHA256.hash(data: Array(responseText.utf8)))),
                              attestation: reference, publicKey: key.publicKey.pemRepresentation)
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
/// and `GET /metrics`.
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

    func complete(_ request: Request, context: NodeRequestContext, chat: Bool) async throws -> Response {
        let state = await readiness.state
        guard state.ready else {
            throw APIError(503, "the node is not ready: \(state.reason)", type: "service_unavailable", code: "not_ready")
        }
        let body: [UInt8]
        do {
            body = Array(try await request.body.collect(upTo: settings.maxBodyBytes).readableBytesView)
        } catch {
            throw APIError(413, "the request body is larger than \(settings.maxBodyBytes) bytes", code: "request_too_large")
        }
        let parser = self.parser
        let parsed = try await worker.run { () throws(APIError) -> ParsedCompletionRequest in
            chat ? try parser.chat(body) : try parser.completion(body)
        }
        // Watch the connection before queueing, so that a client that already left is not served.
        let watcher = parsed.stream ? nil : await context.disconnectWatcher()
        let submission = try scheduler.submit(.init(promptIDs: parsed.promptIDs, options: parsed.options, key: context.apiKey))
        let id = (chat ? "chatcmpl-" : "cmpl-") + Self.randomID()
        let created = Int(Date().timeIntervalSince1970)
        context.logger.info("completion accepted", metadata: ["id": .string(id), "prompt_tokens": .stringConvertible(parsed.promptIDs.count),
                                                              "max_tokens": .stringConvertible(parsed.options.maxTokens),
                                                              "stream": .stringConvertible(parsed.stream)])
        let answer = Answer(id: id, created: created, chat: chat, parsed: parsed, body: body, fingerprint: fingerprint, receipts: receipts)
        if parsed.stream {
            return stream(submission, answer: answer, logger: context.logger)
        }
        let token = watcher?.onDisconnect { [logger = context.logger] in
            logger.info("client disconnected; generation cancelled", metadata: ["id": .string(id)])
            submission.cancel()
        }
        defer { watcher?.forget(token) }
        for await event in submission.events {
            switch event {
            case .text:
                continue
            case let .failed(reason):
                throw APIError(503, "generation failed: \(reason)", type: "service_unavailable")
            case let .finished(done):
                let receipt = try answer.receipt(for: done)
                context.logger.info("completion finished", metadata: ["id": .string(id), "completion_tokens": .stringConvertible(done.completionTokens),
                                                                      "finish_reason": .string(Self.finishReason(done.stopReason))])
                var response = try Self.json(answer.body(done, receipt: receipt))
                response.headers[Self.receiptHeader] = receipt.jsonData().base64EncodedString()
                return response
            }
        }
        throw APIError(499, "the client closed the connection; generation cancelled", type: "client_closed_request", code: "cancelled")
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

        var object: String { chat ? "chat.completion" : "text_completion" }
        var chunkObject: String { chat ? "chat.completion.chunk" : "text_completion" }

        func receipt(for done: InferenceScheduler.Completion) throws(ResponseFailure) -> Receipt {
            try receipts.issue(id: id, created: created, request: body, responseText: done.text)
        }

        func usage(_ done: InferenceScheduler.Completion) -> Usage {
            Usage(prompt_tokens: done.promptTokens, completion_tokens: done.completionTokens, total_tokens: done.promptTokens + done.completionTokens)
        }

        /// The non-streaming body.
        func body(_ done: InferenceScheduler.Completion, receipt: Receipt) -> CompletionBody {
            CompletionBody(id: id, object: object, created: created, model: parsed.model, system_fingerprint: fingerprint,
                           choices: [Choice(chat ? .message(done.text) : .text(done.text), finish: OpenAIRoutes.finishReason(done.stopReason))],
                           usage: usage(done), receipt: receipt)
        }

        /// A streamed chunk with `choices`.
        func chunk(_ choices: [Choice], usage: Usage? = nil, receipt: Receipt? = nil) -> CompletionBody {
            CompletionBody(id: id, object: chunkObject, created: created, model: parsed.model, system_fingerprint: fingerprint,
                           choices: choices, usage: usage, receipt: receipt)
        }

        /// One choice of a chunk: a chat delta, or completion text.
        func piece(_ text: String?, role: String? = nil, finish: String? = nil) -> Choice {
            Choice(chat ? .delta(role: role, content: text) : .text(text ?? ""), finish: finish)
        }
    }

    func stream(_ submission: InferenceScheduler.Submission, answer: Answer, logger: Logger) -> Response {
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            func send<T: Encodable>(_ value: T) async throws {
                var buffer = ByteBuffer(string: "data: ")
                buffer.writeBytes(try encoder.encode(value))
                buffer.writeString("\n\n")
                try await writer.write(buffer)
            }
            var iterator = submission.events.makeAsyncIterator()
            do {
                if answer.chat { try await send(answer.chunk([answer.piece("", role: "assistant")])) }
                loop: while let event = await iterator.next() {
                    switch event {
                    case let .text(text):
                        try await send(answer.chunk([answer.piece(text)]))
                    case let .failed(reason):
                        try await send(APIErrorEnvelope(error: .init(message: "generation failed: \(reason)", type: "service_unavailable")))
                        break loop
                    case let .finished(done):
                        let receipt: Receipt
                        do {
                            receipt = try answer.receipt(for: done)
                        } catch {
                            try await send(APIErrorEnvelope(error: .init(message: (error as? ResponseFailure)?.reason ?? "\(error)", type: "server_error")))
                            break loop
                        }
                        let usage = answer.usage(done)
                        let finish = Self.finishReason(done.stopReason)
                        // The last choice chunk carries finish_reason and the receipt (and usage, unless the
                        // client asked for OpenAI's separate usage chunk with no choices).
                        try await send(answer.chunk([answer.piece(nil, finish: finish)], usage: answer.parsed.includeUsage ? nil : usage,
                                                    receipt: receipt))
                        if answer.parsed.includeUsage { try await send(answer.chunk([], usage: usage)) }
                        logger.info("completion finished", metadata: ["id": .string(answer.id), "completion_tokens": .stringConvertible(done.completionTokens),
                                                                      "finish_reason": .string(finish)])
                        break loop
                    }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                // The client went away: stop generating for it.
                logger.info("client disconnected; generation cancelled", metadata: ["id": .string(answer.id)])
                submission.cancel()
                throw error
            }
        })
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
/// `delta` or `text`), `logprobs: null`, and `finish_reason` (null until the last chunk).
struct Choice: Encodable {
    enum Payload {
        case message(String)
        case delta(role: String?, content: String?)
        case text(String)
    }
    let payload: Payload
    let finish: String?

    init(_ payload: Payload, finish: String?) {
        self.payload = payload
        self.finish = finish
    }

    enum CodingKeys: String, CodingKey { case index, message, delta, text, logprobs, finish_reason }
    enum MessageKeys: String, CodingKey { case role, content }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(0, forKey: .index)
        switch payload {
        case let .message(content):
            var m = c.nestedContainer(keyedBy: MessageKeys.self, forKey: .message)
            try m.encode("assistant", forKey: .role)
            try m.encode(content, forKey: .content)
        case let .delta(role, content):
            var m = c.nestedContainer(keyedBy: MessageKeys.self, forKey: .delta)
            try m.encodeIfPresent(role, forKey: .role)
            try m.encodeIfPresent(content, forKey: .content)
        case let .text(text):
            try c.encode(text, forKey: .text)
        }
        try c.encodeNil(forKey: .logprobs)
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
