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
/// enrollment stay open (evidence is public, and an orchestrator must reach it). The key that
/// authenticated a request is named in its context by position (`key-1`, ...), never by value.
/// Every request is counted and timed for `/metrics`, and every error a route throws becomes
/// OpenAI's error JSON here (`APIError(mapping:)`).
public struct AccessMiddleware: RouterMiddleware {
    public typealias Context = NodeRequestContext
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
        let known = ["/healthz", "/readyz", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize",
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

    /// The label of the configured key the request carries (every digest is compared, in constant
    /// time), or nil.
    func keyLabel(_ request: Request) -> String? {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return nil }
        let digest = Array(SHA256.hash(data: Array(header.dropFirst(7).utf8)))
        var label: String?
        for (i, candidate) in keyDigests.enumerated() where constantTimeEquals(candidate, digest) { label = "key-\(i + 1)" }
        return label
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let route = Self.route(request.uri.path)
        var response: Response
        var context = context
        context.apiKey = keyDigests.isEmpty ? nil : keyLabel(request)
        if needsKey(request.uri.path) && context.apiKey == nil {
            response = APIError(401, "a valid API key is required (Authorization: Bearer KEY)", code: "invalid_api_key").response
            response.headers[.wwwAuthenticate] = "Bearer"
        } else {
            do {
                response = try await next(request, context)
            } catch let error as HTTPError where error.status == .notFound {
                response = APIError(404, "no such endpoint: \(request.method) \(request.uri.path)", code: "not_found").response
            } catch {
                let api = APIError(mapping: error)
                if api.status >= 500 && api.status != 503 {
                    context.logger.error("request failed", metadata: ["route": .string(route), "status": .stringConvertible(api.status),
                                                                     "reason": .string(api.message)])
                }
                response = api.response
            }
        }
        metrics.request(route: route, status: response.status.code, duration: ContinuousClock.now - start)
        return response
    }
}

/// The whole HTTP service: attestation/enrollment/health routes, the OpenAI routes, access control
/// and metrics, optional TLS (mutual when a client CA is configured). The scheduler is a service of
/// its own, run beside the application so that SIGTERM drains it first (see `ServeCommand`).
public enum ServiceApplication {
    public static func make(nodeRoutes: NodeRoutes, openAI: OpenAIRoutes, settings: ServiceSettings, logger: Logger,
                            additionalServices: [any Service] = [], tls nodeKeyTLS: TLSConfiguration? = nil,
                            onRunning: @escaping @Sendable (Int) async -> Void) throws -> some ApplicationProtocol {
        let router = router(nodeRoutes: nodeRoutes, openAI: openAI, settings: settings)
        let hardened = HardenedServer(limits: settings.connections)
        // The same answer as the routes' own 413, before any route runs.
        let refusal = BodyLimitHandler.Refusal(contentType: "application/json") { limit in
            String(decoding: APIError(413, "the request body is larger than \(limit) bytes", code: "request_too_large").json, as: UTF8.self)
        }
        // Every connection also gets a DisconnectWatcher: a non-streaming completion whose client hangs up is cancelled.
        let server = try hardened.builder(maxBodyBytes: settings.maxBodyBytes, refusal: refusal,
                                          tls: try nodeKeyTLS ?? settings.tls.map { tls throws(ServiceError) in try tlsConfiguration(tls) },
                                          extraHandlers: { [DisconnectWatcher()] })
        return Application(router: router, server: server,
                           configuration: hardened.configuration(address: .hostname(settings.host, port: settings.port), serverName: "securenode"),
                           services: additionalServices,
                           onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? settings.port) },
                           logger: logger)
    }

    /// The routes and middleware (without a server: in-process tests use it as it is).
    public static func router(nodeRoutes: NodeRoutes?, openAI: OpenAIRoutes, settings: ServiceSettings) -> Router<NodeRequestContext> {
        let router = Router(context: NodeRequestContext.self)
        router.add(middleware: AccessMiddleware(keyDigests: settings.apiKeyDigests, openHealth: settings.openHealth,
                                                openMetrics: settings.openMetrics, metrics: openAI.metrics))
        nodeRoutes?.register(on: router)
        openAI.register(on: router)
        return router
    }

    /// HTTP/1.1 with a `DisconnectWatcher` on every connection (a non-streaming completion whose
    /// client hangs up is cancelled).
    public static var http1: HTTPServerBuilder {
        .http1(configuration: .init(additionalChannelHandlers: [DisconnectWatcher()]))
    }

    /// TLS from the operator's files (`server.tls.certificate` / `private_key`). `tls: {}` (the node's
    /// own key) is built by the caller from the key store and passed to `make(tls:)`.
    static func tlsConfiguration(_ tls: ServiceConfig.TLS) throws(ServiceError) -> TLSConfiguration {
        guard let certificate = tls.certificate, let privateKey = tls.privateKey else {
            throw ServiceError("server.tls: {} serves with the node's api-tls key: the caller must unlock it (securenode serve does)")
        }
        do {
            return try ServerTLS.configuration(certificate: certificate, privateKey: privateKey, clientCA: tls.clientCA,
                                               fields: .init(certificate: "server.tls.certificate", privateKey: "server.tls.private_key",
                                                             clientCA: "server.tls.client_ca"))
        } catch {
            throw ServiceError(error.description)
        }
    }
}
