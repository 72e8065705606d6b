import Hummingbird
import Logging

/// The node's HTTP server: Hummingbird 2, run under ServiceLifecycle (SIGTERM and SIGINT drain and stop).
public enum NodeServer {
    /// - Parameter onRunning: called with the bound port once the server accepts connections.
    public static func application(routes: NodeRoutes, host: String, port: Int,
                                   onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router()
        routes.register(on: router)
        var logger = Logger(label: "securenode")
        logger.logLevel = .info
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "securenode"),
                           onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
                           logger: logger)
    }
}
