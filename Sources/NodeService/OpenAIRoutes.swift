import Attestation
import Crypto
import Foundation
import Hummingbird
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
                var response: Response
                if chat {
                    response = Self.json(ChatCompletion(id: id, created: created, model: parsed.model, system_fingerprint: fingerprint,
                                                        choices: [.init(message: .init(content: done.text), finish_reason: finish)],
                                                        usage: usage, receipt: receipt))
                } else {
                    response = Self.json(TextCompletion(id: id, created: created, model: parsed.model, system_fingerprint: fingerprint,
                                                        choices: [.init(text: done.text, finish_reason: finish)],
                                                        usage: usage, receipt: receipt))
                }
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
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            func send<T: Encodable>(_ value: T) async throws {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.withoutEscapingSlashes]
                var buffer = ByteBuffer(string: "data: ")
                buffer.writeBytes(try encoder.encode(value))
                buffer.writeString("\n\n")
                try await writer.write(buffer)
            }
            var iterator = submission.events.makeAsyncIterator()
            do {
                if chat {
                    try await send(ChatChunk(id: id, created: created, model: model, system_fingerprint: fingerprint,
                                             choices: [.init(delta: .init(role: "assistant", content: ""), finish_reason: nil)]))
                }
                loop: while let event = await iterator.next() {
                    switch event {
                    case let .text(piece):
                        if chat {
                            try await send(ChatChunk(id: id, created: created, model: model, system_fingerprint: fingerprint,
                                                     choices: [.init(delta: .init(role: nil, content: piece), finish_reason: nil)]))
                        } else {
                            try await send(TextChunk(id: id, created: created, model: model, system_fingerprint: fingerprint,
                                                     choices: [.init(text: piece, finish_reason: nil)]))
                        }
                    case let .failed(reason):
                        try await send(APIErrorEnvelope(error: .init(message: "generation failed: \(reason)", type: "service_unavailable")))
                        break loop
                    case let .finished(done):
                        let receipt = receipts.issue(id: id, created: created, request: body, responseText: done.text)
                        let usage = Usage(prompt_tokens: done.promptTokens, completion_tokens: done.completionTokens,
                                          total_tokens: done.promptTokens + done.completionTokens)
                        let finish = Self.finishReason(done.stopReason)
                        if chat {
                            try await send(ChatChunk(id: id, created: created, model: model, system_fingerprint: fingerprint,
                                                     choices: [.init(delta: .init(role: nil, content: nil), finish_reason: finish)],
                                                     usage: parsed.includeUsage ? nil : usage, receipt: receipt))
                            if parsed.includeUsage {
                                try await send(ChatChunk(id: id, created: created, model: model, system_fingerprint: fingerprint,
                                                         choices: [], usage: usage))
                            }
                        } else {
                            try await send(TextChunk(id: id, created: created, model: model, system_fingerprint: fingerprint,
                                                     choices: [.init(text: "", finish_reason: finish)],
                                                     usage: parsed.includeUsage ? nil : usage, receipt: receipt))
                            if parsed.includeUsage {
                                try await send(TextChunk(id: id, created: created, model: model, system_fingerprint: fingerprint,
                                                         choices: [], usage: usage))
                            }
                        }
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

struct ChatCompletion: Encodable {
    struct Choice: Encodable {
        struct Message: Encodable {
            var role = "assistant"
            let content: String
        }
        var index = 0
        let message: Message
        var logprobs: String? = nil
        let finish_reason: String
        enum CodingKeys: String, CodingKey { case index, message, logprobs, finish_reason }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(message, forKey: .message)
            try c.encodeNil(forKey: .logprobs)
            try c.encode(finish_reason, forKey: .finish_reason)
        }
    }
    let id: String
    var object = "chat.completion"
    let created: Int
    let model: String
    let system_fingerprint: String
    let choices: [Choice]
    let usage: Usage
    let receipt: Receipt
}

struct TextCompletion: Encodable {
    struct Choice: Encodable {
        var index = 0
        let text: String
        let finish_reason: String
        enum CodingKeys: String, CodingKey { case index, text, logprobs, finish_reason }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(text, forKey: .text)
            try c.encodeNil(forKey: .logprobs)
            try c.encode(finish_reason, forKey: .finish_reason)
        }
    }
    let id: String
    var object = "text_completion"
    let created: Int
    let model: String
    let system_fingerprint: String
    let choices: [Choice]
    let usage: Usage
    let receipt: Receipt
}

struct ChatChunk: Encodable {
    struct Choice: Encodable {
        struct Delta: Encodable {
            let role: String?
            let content: String?
        }
        var index = 0
        let delta: Delta
        let finish_reason: String?
        enum CodingKeys: String, CodingKey { case index, delta, logprobs, finish_reason }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(delta, forKey: .delta)
            try c.encodeNil(forKey: .logprobs)
            if let finish_reason { try c.encode(finish_reason, forKey: .finish_reason) } else { try c.encodeNil(forKey: .finish_reason) }
        }
    }
    let id: String
    var object = "chat.completion.chunk"
    let created: Int
    let model: String
    let system_fingerprint: String
    let choices: [Choice]
    var usage: Usage? = nil
    var receipt: Receipt? = nil
}

struct TextChunk: Encodable {
    struct Choice: Encodable {
        var index = 0
        let text: String
        let finish_reason: String?
        enum CodingKeys: String, CodingKey { case index, text, logprobs, finish_reason }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(text, forKey: .text)
            try c.encodeNil(forKey: .logprobs)
            if let finish_reason { try c.encode(finish_reason, forKey: .finish_reason) } else { try c.encodeNil(forKey: .finish_reason) }
        }
    }
    let id: String
    var object = "text_completion"
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
