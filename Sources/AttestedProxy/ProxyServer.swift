import Hummingbird
import HummingbirdCore
import Logging
import NodeService
import ServerHardening
import ServiceLifecycle

/// The proxy's listener: ``ProxyRoutes`` on HTTP/1.1 with the same per-connection limits as the
/// node's own API (``HardenedServer``: connection cap, header/body/idle deadlines, bodies over
/// `maxBodyBytes` refused with 413 in OpenAI's shape), and the re-attestation schedule beside it.
public enum ProxyServer {
    public static func make(routes: ProxyRoutes, host: String, port: Int, limits: ServerLimits = ServerLimits(), reattestEvery interval: Duration,
                            logger: Logger, onRunning: @escaping @Sendable (Int) async -> Void) throws -> some ApplicationProtocol {
        let router = Router()
        routes.register(on: router)
        let hardened = HardenedServer(limits: limits)
        let refusal = BodyLimitHandler.Refusal(contentType: "application/json") { limit in
            String(decoding: APIError(413, "the request body is larger than \(limit) bytes", code: "request_too_large").json, as: UTF8.self)
        }
        let server = try hardened.builder(maxBodyBytes: routes.maxBodyBytes, refusal: refusal, tls: nil)
        return Application(router: router, server: server,
                           configuration: hardened.configuration(address: .hostname(host, port: port), serverName: "securenode-proxy"),
                           services: [ReattestationSchedule(node: routes.node, interval: interval)],
                           onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
                           logger: logger)
    }
}
