import Attestation
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ModelSigning
import NIOCore
import NIOHTTP1
import NodeHTTP
import NodeService

/// `securenode proxy`'s OpenAI-compatible endpoint: each request is forwarded to the node only over
/// a connection ``AttestedNode`` attested, and each completion's receipt is verified before the
/// client sees it (``ReceiptCheck``). The node's own errors pass through unchanged; a refused
/// channel answers 503 in OpenAI's error shape naming the check that failed. Logs name the check,
/// never request or response text.
public struct ProxyRoutes: Sendable {
    public let node: AttestedNode
    public let metrics: ProxyMetrics
    /// The API key sent to the node (`--api-key-file`); without one, the client's Authorization is passed on.
    public let apiKey: String?
    public let maxBodyBytes: Int
    /// Bound on a non-streamed response (and on a stream's transcript) from the node.
    public let maxResponseBytes: Int
    public let receipts: ReceiptCheck
    public let logger: Logger

    public init(node: AttestedNode, metrics: ProxyMetrics, apiKey: String?, maxBodyBytes: Int, maxResponseBytes: Int = 64 << 20,
                receipts: ReceiptCheck, logger: Logger) {
        self.node = node
        self.metrics = metrics
        self.apiKey = apiKey
        self.maxBodyBytes = maxBodyBytes
        self.maxResponseBytes = maxResponseBytes
        self.receipts = receipts
        self.logger = logger
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        router.get("/healthz") { _, _ in Self.json(#"{"status":"alive"}"#) }
        router.get("/readyz") { _, _ in await readiness() }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition())))
        }
        router.post("/v1/chat/completions") { request, _ in await timed("/v1/chat/completions") { await forward(request, receipted: true) } }
        router.post("/v1/completions") { request, _ in await timed("/v1/completions") { await forward(request, receipted: true) } }
        router.get("/v1/models") { request, _ in await timed("/v1/models") { await forward(request, receipted: false) } }
        router.get("/v1/models/{id}") { request, _ in await timed("/v1/models/{id}") { await forward(request, receipted: false) } }
    }

    func timed(_ route: String, _ body: () async -> Response) async -> Response {
        let start = ContinuousClock.now
        let response = await body()
        metrics.request(route: route, status: response.status.code, duration: ContinuousClock.now - start)
        return response
    }

    /// 200 with the attested process while the last attestation passed; 503 with the failed check otherwise.
    func readiness() async -> Response {
        if let a = await node.current {
            struct Ready: Encodable { let status: String; let model: String?; let receiptKeySHA256: String; let tlsKeySHA256: String? }
            let body = Ready(status: "attested", model: a.appraisal.model?.manifestRoot, receiptKeySHA256: a.receiptKeySHA256, tlsKeySHA256: a.tlsKeySHA256)
            return Self.json(String(decoding: (try? JSONEncoder().encode(body)) ?? Data(), as: UTF8.self))
        }
        let reason = await node.lastFailure?.description ?? "not attested yet"
        return APIError(503, "the node is not attested: \(reason)", type: "service_unavailable", code: "node_not_attested").response
    }

    func refused(_ failure: ChannelFailure) -> Response {
        logger.warning("request refused", metadata: ["check": .string(failure.check), "reason": .string(failure.reason)])
        return APIError(503, "the node is not attested: \(failure)", type: "service_unavailable", code: "node_not_attested").response
    }

    func forward(_ request: Request, receipted: Bool) async -> Response {
        let body: [UInt8]
        do {
            body = Array(try await request.body.collect(upTo: maxBodyBytes).readableBytesView)
        } catch {
            return APIError(413, "the request body is larger than \(maxBodyBytes) bytes", code: "request_too_large").response
        }
        var headers: [(String, String)] = [("Accept", request.headers[.accept] ?? "application/json")]
        if let type = request.headers[.contentType] { headers.append(("Content-Type", type)) }
        if let key = apiKey { headers.append(("Authorization", "Bearer \(key)")) } else if let auth = request.headers[.authorization] {
            headers.append(("Authorization", auth))
        }
        let path = request.uri.path + (request.uri.query.map { "?\($0)" } ?? "")
        // A kept-alive connection the node closed in the meantime fails before any answer: once, on a new
        // (attested) connection instead.
        var attempt = 0
        var opened: (connection: NodeConnection, attested: AttestedNode.Attested, parts: ResponseParts, head: HTTPResponseHead)?
        while opened == nil {
            attempt += 1
            let channel: (NodeConnection, AttestedNode.Attested)
            do {
                channel = try await node.connection()
            } catch {
                return refused(error)
            }
            let parts = ResponseParts(channel.0.send(.init(method: receipted ? .POST : .GET, path: path, headers: headers, body: receipted ? body : nil)))
            do {
                guard case .head(let h) = try await parts.next() else { throw NodeConnection.Refused("no response head") }
                opened = (channel.0, channel.1, parts, h)
            } catch {
                channel.0.close()
                if attempt >= 2 { return APIError(502, "the node did not answer: \(error)", type: "server_error", code: "bad_gateway").response }
            }
        }
        guard let opened else { return APIError(502, "the node did not answer", type: "server_error").response }
        let (connection, attested, parts, head) = opened
        var responseHeaders: HTTPFields = [:]
        for name in ["Content-Type", "Retry-After", "WWW-Authenticate", "X-SecureNode-Receipt", "Cache-Control"] {
            if let value = head.headers.first(name: name), let field = HTTPField.Name(name) { responseHeaders[field] = value }
        }
        let status = HTTPResponse.Status(code: Int(head.status.code))
        let streaming = head.headers.first(name: "Content-Type")?.hasPrefix("text/event-stream") == true
        if head.status == .ok && receipted && streaming {
            return Response(status: status, headers: responseHeaders, body: ResponseBody { writer in
                var stream = ReceiptedStream(request: body, attested: attested, check: receipts, limit: maxResponseBytes)
                var finished = false
                do {
                    while let part = try await parts.next() {
                        guard case .body(let buffer) = part else { continue }
                        let out = stream.consume(buffer.readableBytesView)
                        if !out.isEmpty { try await writer.write(ByteBuffer(bytes: out)) }
                        if let failure = stream.failure { throw failure }
                    }
                    finished = true
                    let tail = stream.finish()
                    if !tail.isEmpty { try await writer.write(ByteBuffer(bytes: tail)) }
                    if let failure = stream.failure { throw failure }
                    metrics.receiptVerified()
                    await node.release(connection)
                } catch let failure as ChannelFailure {
                    connection.close()
                    metrics.refusal(check: failure.check)
                    logger.warning("stream refused", metadata: ["check": .string(failure.check), "reason": .string(failure.reason)])
                    if failure.check.hasPrefix("receipt") { await node.refuse(failure) }
                    let event = "data: " + String(decoding: APIError(502, "the response was refused: \(failure)", type: "server_error",
                                                                     code: "receipt_refused").json, as: UTF8.self) + "\n\n"
                    try await writer.write(ByteBuffer(string: event))
                } catch {
                    connection.close()
                    if finished { throw error }
                    let event = "data: " + String(decoding: APIError(502, "the node's stream failed: \(error)", type: "server_error",
                                                                     code: "bad_gateway").json, as: UTF8.self) + "\n\n"
                    try? await writer.write(ByteBuffer(string: event))
                }
                try await writer.finish(nil)
            })
        }
        // Whole responses: the node's errors and listings pass through; a completion only with a receipt that verifies.
        var data: [UInt8] = []
        do {
            while let part = try await parts.next() {
                guard case .body(let buffer) = part else { continue }
                data += buffer.readableBytesView
                guard data.count <= maxResponseBytes else { throw NodeConnection.Refused("the response is larger than \(maxResponseBytes) bytes") }
            }
        } catch {
            connection.close()
            return APIError(502, "the node's response failed: \(error)", type: "server_error", code: "bad_gateway").response
        }
        if head.status == .ok && receipted {
            do throws(ChannelFailure) {
                try receipts.verify(response: data, request: body, attested: attested)
                metrics.receiptVerified()
            } catch {
                connection.close()
                await node.refuse(error)
                logger.warning("response refused", metadata: ["check": .string(error.check), "reason": .string(error.reason)])
                return APIError(503, "the response was refused: \(error)", type: "service_unavailable", code: "receipt_refused").response
            }
        }
        await node.release(connection)
        return Response(status: status, headers: responseHeaders, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func json(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// A response's parts as they arrive, read from the request's task and then from its response body's writer.
final class ResponseParts: @unchecked Sendable {
    private var iterator: AsyncThrowingStream<NodeConnection.ResponsePart, any Error>.AsyncIterator

    init(_ stream: AsyncThrowingStream<NodeConnection.ResponsePart, any Error>) {
        iterator = stream.makeAsyncIterator()
    }

    func next() async throws -> NodeConnection.ResponsePart? {
        var it = iterator
        defer { iterator = it }
        return try await it.next()
    }
}
