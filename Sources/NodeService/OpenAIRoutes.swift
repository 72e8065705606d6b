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

    public func issue(id: String, created: Int, request: [UInt8], responseText: String) -> Receipt {
        var receipt = Receipt(id: id, created: created, model: modelID, modelManifestRoot: manifestRoot, profile: profile,
                              requestSHA256: hexString(Array(SHA256.hash(data: request))),
                              responseSHA256: hexString(Array(SHA256.hash(data: Array(responseText.utf8)))),
                              attestation: reference, publicKey: key.publicKey.pemRepresentation)
        try? receipt.sign(with: key)
        return receipt
    }
}

/// The OpenAI-compatible endpoints: `GET /v1/models`, `POST /v1/chat/completions`,
/// `POST /v1/completions` (with `stream: true` as server-sent events ending in `data: [DONE]`),
/// and `GET /metrics`.
public struct OpenAIRoutes: Sendable {
    public let settings: ServiceSettings
    public let parser: CompletionRequestParser
    public let scheduler: InferenceScheduler
    public let metrics: NodeMetrics
    public let receipts: ReceiptIssuer
    public let readiness: Readiness
    /// When the model was loaded (Unix seconds): `created` of the model object.
    public let loadedAt: Int
    /// `system_fingerprint`: the model manifest root and profile, shortened.
    public let fingerprint: String

    public init(settings: ServiceSettings, parser: CompletionRequestParser, scheduler: InferenceScheduler, metrics: NodeMetrics,
                receipts: ReceiptIssuer, readiness: Readiness) {
        self.settings = settings
        self.parser = parser
        self.scheduler = scheduler
        self.metrics = metrics
        self.receipts = receipts
        self.readiness = readiness
        loadedAt = Int(Date().timeIntervalSince1970)
        fingerprint = "securenode-\(receipts.profile)-\(receipts.manifestRoot.prefix(12))"
    }

    public static let receiptHeader = HTTPField.Name("X-SecureNode-Receipt")!

    public func register(on router: Router<BasicRequestContext>) {
        router.get("/v1/models") { _, _ in models() }
        router.get("/v1/models/:id") { _, context in
            guard context.parameters.get("id") == settings.modelID else {
                return Self.error(APIError(404, "the model '\(context.parameters.get("id") ?? "")' does not exist on this node", code: "model_not_found"))
            }
            return Self.json(ModelObject(id: settings.modelID, created: loadedAt))
        }
        router.post("/v1/chat/completions") { request, context in
            await complete(request, context: context, chat: true)
        }
        router.post("/v1/completions") { request, context in
            await complete(request, context: context, chat: false)
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

    func models() -> Response {
        struct List: Encodable { var object = "list"; let data: [ModelObject] }
        return Self.json(List(data: [ModelObject(id: settings.modelID, created: loadedAt)]))
    }

    func complete(_ request: Request, context: BasicRequestContext, chat: Bool) async -> Response {
        let body: [UInt8]
        do {
            let buffer = try await request.body.collect(upTo: settings.maxBodyBytes)
            body = Array(buffer.readableBytesView)
        } catch {
            return Self.error(APIError(413, "the request body is larger than \(settings.maxBodyBytes) bytes", code: "request_too_large"))
        }
        let parsed: ParsedCompletionRequest
        do {
            parsed = chat ? try parser.chat(body) : try parser.completion(body)
        } catch {
            return Self.error(error)
        }
        let state = await readiness.state
        guard state.ready else {
            return Self.error(APIError(503, "the node is not ready: \(state.reason)", type: "service_unavailable"))
        }
        let submission: InferenceScheduler.Submission
        do {
            submission = try scheduler.submit(.init(promptIDs: parsed.promptIDs, options: parsed.options))
        } catch .queueFull {
            var response = Self.error(APIError(429, "the node is at capacity (\(settings.parallel) running, \(settings.queueDepth) queued); retry shortly",
                                               type: "rate_limit_exceeded", code: "queue_full"))
            response.headers[.retryAfter] = "1"
            return response
        } catch {
            return Self.error(APIError(503, "the node is shutting down", type: "service_unavailable"))
        }
        let id = (chat ? "chatcmpl-" : "cmpl-") + Self.randomID()
        let created = Int(Date().timeIntervalSince1970)
        context.logger.info("completion accepted", metadata: ["id": .string(id), "prompt_tokens": .stringConvertible(parsed.promptIDs.count),
                                                              "max_tokens": .stringConvertible(parsed.options.maxTokens),
                                                              "stream": .stringConvertible(parsed.stream)])
        let events = submission.events
        if parsed.stream {
            return stream(submission, id: id, created: created, chat: chat, parsed: parsed, body: body, logger: context.logger)
        }
        var text = ""
        for await event in events {
            switch event {
            case let .text(piece):
                text += piece
            case let .failed(reason):
                return Self.error(APIError(503, "generation failed: \(reason)", type: "service_unavailable"))
            case let .finished(done):
                let receipt = receipts.issue(id: id, created: created, request: body, responseText: done.text)
                let usage = Usage(prompt_tokens: done.promptTokens, completion_tokens: done.completionTokens,
                                  total_tokens: done.promptTokens + done.completionTokens)
                let finish = Self.finishReason(done.stopReason)
                context.logger.info("completion finished", metadata: ["id": .string(id), "completion_tokens": .stringConvertible(done.completionTokens),
                                                                      "finish_reason": .string(finish)])
                var response = Self.json(CompletionBody(id: id, object: chat ? "chat.completion" : "text_completion", created: created,
                                                        model: parsed.model, system_fingerprint: fingerprint,
                                                        choices: [Choice(chat ? .message(done.text) : .text(done.text), finish: finish)],
                                                        usage: usage, receipt: receipt))
                response.headers[Self.receiptHeader] = receipt.jsonData().base64EncodedString()
                return response
            }
        }
        return Self.error(APIError(503, "generation ended without a result", type: "service_unavailable"))
    }

    func stream(_ submission: InferenceScheduler.Submission, id: String, created: Int, chat: Bool,
                parsed: ParsedCompletionRequest, body: [UInt8], logger: Logger) -> Response {
        let model = parsed.model, fingerprint = self.fingerprint, receipts = self.receipts
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        let object = chat ? "chat.completion.chunk" : "text_completion"
        /// A chunk with `choices`; `piece` is the one choice of a chunk that carries text (a chat delta, or completion text).
        @Sendable func chunk(_ choices: [Choice], usage: Usage? = nil, receipt: Receipt? = nil) -> CompletionBody {
            CompletionBody(id: id, object: object, created: created, model: model, system_fingerprint: fingerprint,
                           choices: choices, usage: usage, receipt: receipt)
        }
        @Sendable func piece(_ text: String?, role: String? = nil, finish: String? = nil) -> Choice {
            Choice(chat ? .delta(role: role, content: text) : .text(text ?? ""), finish: finish)
        }
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
                if chat { try await send(chunk([piece("", role: "assistant")])) }
                loop: while let event = await iterator.next() {
                    switch event {
                    case let .text(text):
                        try await send(chunk([piece(text)]))
                    case let .failed(reason):
                        try await send(APIErrorEnvelope(error: .init(message: "generation failed: \(reason)", type: "service_unavailable")))
                        break loop
                    case let .finished(done):
                        let receipt = receipts.issue(id: id, created: created, request: body, responseText: done.text)
                        let usage = Usage(prompt_tokens: done.promptTokens, completion_tokens: done.completionTokens,
                                          total_tokens: done.promptTokens + done.completionTokens)
                        let finish = Self.finishReason(done.stopReason)
                        // The last choice chunk carries finish_reason and the receipt (and usage, unless the
                        // client asked for OpenAI's separate usage chunk with no choices).
                        try await send(chunk([piece(nil, finish: finish)], usage: parsed.includeUsage ? nil : usage, receipt: receipt))
                        if parsed.includeUsage { try await send(chunk([], usage: usage)) }
                        logger.info("completion finished", metadata: ["id": .string(id), "completion_tokens": .stringConvertible(done.completionTokens),
                                                                      "finish_reason": .string(finish)])
                        break loop
                    }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                // The client went away: stop generating for it.
                logger.info("client disconnected; generation cancelled", metadata: ["id": .string(id)])
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

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    public static func error(_ error: APIError) -> Response {
        Response(status: HTTPResponse.Status(code: error.status), headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: error.json)))
    }
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
