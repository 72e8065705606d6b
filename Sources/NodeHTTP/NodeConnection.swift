import Attestation
import Foundation
import ModelSigning
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// One HTTP/1.1 connection from a client (`securenode enroll`, `securenode proxy`) to a node, over
/// TLS whose certificate is checked as ``Trust`` says, before a byte of any request is written.
///
/// The connection is owned by one task that reads its requests from a queue: ``send(_:)`` enqueues a
/// request and returns the response as it arrives (head, then body parts), so a streamed response
/// reaches the caller chunk by chunk. One request at a time (no pipelining); a response that
/// did not end cleanly, or a `Connection: close`, ends the connection (``isReusable``).
public final class NodeConnection: Sendable {
    /// How the node's TLS certificate is accepted.
    public enum Trust: Sendable, Equatable {
        /// Only a certificate whose SubjectPublicKeyInfo has this SHA-256 (hex), whoever signed it:
        /// the key the node's appraised evidence binds.
        case pinned(String)
        /// Any certificate, whose key is recorded (``peerKeySHA256``): only to fetch evidence, which
        /// says whether that key is the node's before anything else is sent.
        case recordOnly
        /// The system's certificate authorities and the host name (ordinary HTTPS).
        case certificateAuthorities
        /// No TLS (http:// URLs).
        case plaintext
    }

    /// What the node's certificate did not satisfy.
    public struct Refused: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    public struct Request: Sendable {
        public var method: HTTPMethod
        public var path: String
        public var headers: [(String, String)]
        public var body: [UInt8]?
        public init(method: HTTPMethod, path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) {
            self.method = method
            self.path = path
            self.headers = headers
            self.body = body
        }
    }

    public enum ResponsePart: Sendable {
        case head(HTTPResponseHead)
        case body(ByteBuffer)
    }

    struct Job: Sendable {
        let request: Request
        let response: AsyncThrowingStream<ResponsePart, any Error>.Continuation
    }

    /// SHA-256 (hex) of the SubjectPublicKeyInfo of the certificate the node presented (nil over plain HTTP).
    public let peerKeySHA256: String?
    public let host: String
    public let port: Int
    private let jobs: AsyncStream<Job>.Continuation
    private let reusable = NIOLockedValueBox(true)
    private let channel: any Channel

    /// Whether another request may be sent: the last response ended cleanly and kept the connection
    /// open, and the node has not closed it since.
    public var isReusable: Bool { reusable.withLockedValue { $0 } && channel.isActive }

    private init(peerKeySHA256: String?, host: String, port: Int, jobs: AsyncStream<Job>.Continuation, channel: any Channel) {
        self.peerKeySHA256 = peerKeySHA256
        self.host = host
        self.port = port
        self.jobs = jobs
        self.channel = channel
    }

    /// Connects and completes the TLS handshake (refused unless the certificate satisfies `trust`).
    public static func open(url: URL, trust: Trust, timeout: Duration = .seconds(10),
                            group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> NodeConnection {
        guard let scheme = url.scheme, let host = url.host else { throw Refused("\(url) has no scheme or host") }
        let tls = scheme == "https"
        guard tls == (trust != .plaintext) else {
            throw Refused(tls ? "an https URL needs a TLS trust" : "\(url): plain HTTP only with --insecure-http-for-development")
        }
        let port = url.port ?? (tls ? 443 : 80)
        let recorded = NIOLockedValueBox<String?>(nil)
        let context: NIOSSLContext?
        if tls {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.minimumTLSVersion = .tlsv12
            if trust != .certificateAuthorities { configuration.certificateVerification = .noHostnameVerification }
            context = try NIOSSLContext(configuration: configuration)
        } else {
            context = nil
        }
        let serverName = tls && !Self.isIPAddress(host) ? host : nil
        let handshake = group.next().makePromise(of: Void.self)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(timeout))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await bootstrap.connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        let handler: NIOSSLClientHandler
                        switch trust {
                        case .pinned(let pin):
                            handler = try NIOSSLClientHandler(context: context, serverHostname: serverName) { chain, promise in
                                let digest = chain.first.flatMap(Self.keyDigest)
                                recorded.withLockedValue { $0 = digest }
                                // Compared in constant time; any other key is refused during the handshake.
                                let same = digest.map { constantTimeEquals(Array($0.utf8), Array(pin.lowercased().utf8)) } ?? false
                                promise.succeed(same ? .certificateVerified : .failed)
                            }
                        case .recordOnly:
                            handler = try NIOSSLClientHandler(context: context, serverHostname: serverName) { chain, promise in
                                recorded.withLockedValue { $0 = chain.first.flatMap(Self.keyDigest) }
                                promise.succeed(chain.isEmpty ? .failed : .certificateVerified)
                            }
                        case .certificateAuthorities, .plaintext:
                            handler = try NIOSSLClientHandler(context: context, serverHostname: serverName)
                        }
                        try channel.pipeline.syncOperations.addHandler(handler)
                        try channel.pipeline.syncOperations.addHandler(HandshakeWatcher(promise: handshake))
                    } else {
                        handshake.succeed()
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        } catch {
            handshake.fail(error)
            throw Refused("cannot connect to \(host):\(port): \(error)")
        }
        do {
            try await handshake.futureResult.get()
        } catch {
            try? await channel.channel.close()
            if case .pinned(let pin) = trust, let seen = recorded.withLockedValue({ $0 }), seen != pin.lowercased() {
                throw Refused("the node's TLS certificate has key \(seen), not the attested key \(pin)")
            }
            throw Refused("TLS handshake with \(host):\(port) failed: \(error)")
        }
        if tls, case .certificateAuthorities = trust {
            // The system's verification passed: record the key too.
            let certificate = try? await channel.channel.nioSSL_peerCertificate().get()
            recorded.withLockedValue { $0 = certificate.flatMap(Self.keyDigest) }
        }
        let (stream, continuation) = AsyncStream.makeStream(of: Job.self)
        let connection = NodeConnection(peerKeySHA256: recorded.withLockedValue { $0 }, host: host, port: port, jobs: continuation,
                                        channel: channel.channel)
        Task { await connection.serve(channel, jobs: stream) }
        return connection
    }

    /// Sends `request`; the stream yields the response head, then its body parts, and finishes at its end.
    public func send(_ request: Request) -> AsyncThrowingStream<ResponsePart, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ResponsePart.self)
        reusable.withLockedValue { $0 = false }
        if case .terminated = jobs.yield(Job(request: request, response: continuation)) {
            continuation.finish(throwing: Refused("the connection to \(host):\(port) is closed"))
        }
        return stream
    }

    /// A whole response, its body at most `limit` bytes.
    public func fetch(_ request: Request, limit: Int) async throws -> (head: HTTPResponseHead, body: [UInt8]) {
        var head: HTTPResponseHead?
        var body: [UInt8] = []
        for try await part in send(request) {
            switch part {
            case .head(let h): head = h
            case .body(let buffer):
                body += buffer.readableBytesView
                guard body.count <= limit else {
                    close()
                    throw Refused("\(request.path) answered more than \(limit) bytes")
                }
            }
        }
        guard let head else { throw Refused("\(request.path): no response") }
        return (head, body)
    }

    public func close() {
        reusable.withLockedValue { $0 = false }
        jobs.finish()
    }

    private func serve(_ channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>, jobs: AsyncStream<Job>) async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                var responses = inbound.makeAsyncIterator()
                for await job in jobs {
                    do {
                        var head = HTTPRequestHead(version: .http1_1, method: job.request.method, uri: job.request.path)
                        head.headers.add(name: "Host", value: "\(host):\(port)")
                        for (name, value) in job.request.headers { head.headers.add(name: name, value: value) }
                        head.headers.replaceOrAdd(name: "Content-Length", value: String(job.request.body?.count ?? 0))
                        try await outbound.write(.head(head))
                        if let body = job.request.body, !body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                        try await outbound.write(.end(nil))
                        var keepAlive = false
                        reading: while let part = try await responses.next() {
                            switch part {
                            case .head(let response):
                                guard response.status != .continue else { continue }
                                keepAlive = response.isKeepAlive
                                job.response.yield(.head(response))
                            case .body(let buffer):
                                job.response.yield(.body(buffer))
                            case .end:
                                break reading
                            }
                        }
                        // Reusable before the caller hears the end, so that it can give the connection back at once.
                        reusable.withLockedValue { $0 = keepAlive }
                        job.response.finish()
                        guard keepAlive else { break }
                    } catch {
                        job.response.finish(throwing: error)
                        throw error
                    }
                }
            }
        } catch {
            // The connection failed; its pending request (if any) was told.
        }
        reusable.withLockedValue { $0 = false }
        self.jobs.finish()
        for await job in jobs { job.response.finish(throwing: Refused("the connection to \(host):\(port) closed")) }
    }

    /// SHA-256 (hex) of a certificate's SubjectPublicKeyInfo.
    public static func keyDigest(_ certificate: NIOSSLCertificate) -> String? {
        guard let spki = try? certificate.extractPublicKey().toSPKIBytes() else { return nil }
        return hexString(SHA256Hash.of(spki))
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}

/// Completes `promise` when the TLS handshake completes, or fails it when the connection fails first.
final class HandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let promise: EventLoopPromise<Void>
    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event { promise.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(NodeConnection.Refused("the node closed the connection during the TLS handshake"))
        context.fireChannelInactive()
    }
}
