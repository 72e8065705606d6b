import Crypto
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HTTPTypes
import Logging
import ModelSigning
import NodeHTTP
import ServerHardening
import ServiceLifecycle

/// Who may call what. With API keys configured, the completions and models endpoints require
/// `Authorization: Bearer KEY` whose SHA-256 is configured (compared in constant time); the
/// health endpoints and `/metrics` follow `open_health` and `open_metrics`; attestation and
/// enrollment stay open (evidence is public, and an orchestrator must reach it). Every request is
/// counted and timed for `/metrics`, and router errors get OpenAI's error JSON.
public struct AccessMiddleware<Context: RequestContext>: RouterMiddleware {
    public let keyDigests: [[UInt8]]
    public let openHealth: Bool
    public let openMetrics: Bool
    public let metrics: NodeMetrics

    public init(keyDigests: [[UInt8]], openHealth: Bool, openMetrics: Bool, metrics: NodeMetrics) {
        self.keyDigests = keyDigests
        self.openHealth = openHealth
        self.openMetrics = openMetrics
        self.metrics = metrics
    }

    static func route(_ path: String) -> String {
        let known = ["/healthz", "/readyz", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions",
                     "/v1/attestation", "/v1/enrollment", "/v1/enrollment/activate"]
        if known.contains(path) { return path }
        if path.hasPrefix("/v1/models/") { return "/v1/models/{id}" }
        return "other"
    }

    func needsKey(_ path: String) -> Bool {
        guard !keyDigests.isEmpty else { return false }
        switch path {
        case "/healthz", "/readyz": return !openHealth
        case "/metrics": return !openMetrics
        case "/v1/attestation", "/v1/enrollment", "/v1/enrollment/activate": return false
        default: return true
        }
    }

    func authorized(_ request: Request) -> Bool {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return false }
        let digest = Array(SHA256.hash(data: Array(header.dropFirst(7).utf8)))
        var ok = false
        for candidate in keyDigests where constantTimeEquals(candidate, digest) { ok = true }
        return ok
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let route = Self.route(request.uri.path)
        var response: Response
        if needsKey(request.uri.path) && !authorized(request) {
            response = OpenAIRoutes.error(APIError(401, "a valid API key is required (Authorization: Bearer KEY)", code: "invalid_api_key"))
            response.headers[.wwwAuthenticate] = "Bearer"
        } else {
            do {
                response = try await next(request, context)
            } catch let error as HTTPError {
                let message = error.status == .notFound ? "no such endpoint: \(request.method) \(request.uri.path)" : "\(error.body ?? error.status.reasonPhrase)"
                response = OpenAIRoutes.error(APIError(error.status.code, message, code: error.status == .notFound ? "not_found" : nil))
            }
        }
        metrics.request(route: route, status: response.status.code, duration: ContinuousClock.now - start)
        return response
    }
}

/// Runs the scheduler for the life of the service: on graceful shutdown (SIGTERM), it stops
/// accepting requests (503), lets running and queued ones finish for up to `drain`, then fails the
/// rest and stops. The HTTP server drains its connections at the same time.
public struct SchedulerService: Service {
    public let scheduler: InferenceScheduler
    public let drain: Duration
    public let logger: Logger

    public init(scheduler: InferenceScheduler, drain: Duration, logger: Logger) {
        self.scheduler = scheduler
        self.drain = drain
        self.logger = logger
    }

    public func run() async throws {
        scheduler.start()
        try? await gracefulShutdown()
        let (waiting, running) = scheduler.counts
        logger.info("draining", metadata: ["running": .stringConvertible(running), "waiting": .stringConvertible(waiting),
                                          "deadline_seconds": .stringConvertible(drain.components.seconds)])
        await scheduler.drain(deadline: drain)
        logger.info("scheduler stopped")
    }
}

/// The whole HTTP service: attestation/enrollment/health routes, the OpenAI routes, access control
/// and metrics, optional TLS (mutual when a client CA is configured), and the scheduler service.
public enum ServiceApplication {
    public static func make(nodeRoutes: NodeRoutes, openAI: OpenAIRoutes, settings: ServiceSettings, logger: Logger,
                            additionalServices: [any Service] = [],
                            onRunning: @escaping @Sendable (Int) async -> Void) throws -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: AccessMiddleware(keyDigests: settings.apiKeyDigests, openHealth: settings.openHealth,
                                                openMetrics: settings.openMetrics, metrics: openAI.metrics))
        nodeRoutes.register(on: router)
        openAI.register(on: router)
        let hardened = HardenedServer(limits: settings.connections)
        // The same answer as the routes' own 413, before any route runs.
        let refusal = BodyLimitHandler.Refusal(contentType: "application/json") { limit in
            String(decoding: APIError(413, "the request body is larger than \(limit) bytes", code: "request_too_large").json, as: UTF8.self)
        }
        let server = try hardened.builder(maxBodyBytes: settings.maxBodyBytes, refusal: refusal,
                                          tls: try settings.tls.map { tls throws(ServiceError) in try tlsConfiguration(tls) })
        let scheduler = SchedulerService(scheduler: openAI.scheduler, drain: .seconds(settings.drainSeconds), logger: logger)
        return Application(router: router, server: server,
                           configuration: hardened.configuration(address: .hostname(settings.host, port: settings.port), serverName: "securenode"),
                           services: [scheduler] + additionalServices,
                           onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? settings.port) },
                           logger: logger)
    }

    static func tlsConfiguration(_ tls: ServiceConfig.TLS) throws(ServiceError) -> TLSConfiguration {
        do {
            return try ServerTLS.configuration(certificate: tls.certificate, privateKey: tls.privateKey, clientCA: tls.clientCA,
                                               fields: .init(certificate: "server.tls.certificate", privateKey: "server.tls.private_key",
                                                             clientCA: "server.tls.client_ca"))
        } catch {
            throw ServiceError(error.description)
        }
    }
}
