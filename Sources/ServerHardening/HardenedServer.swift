public import Hummingbird
public import HummingbirdCore
import HummingbirdTLS
public import NIOCore
public import NIOSSL

/// One listener's server and configuration with the node's limits: what both the OpenAI API and the
/// Keylime agent use.
public struct HardenedServer: Sendable {
    public let limits: ServerLimits
    /// The open connections of this listener (one table per listener).
    public let table = ConnectionTable()

    public init(limits: ServerLimits) {
        self.limits = limits
    }

    /// HTTP/1.1, over TLS when `tls` is given, with every per-connection limit.
    public func builder(maxBodyBytes: Int, refusal: BodyLimitHandler.Refusal, tls: TLSConfiguration?,
                        extraHandlers: @escaping @Sendable () -> [any RemovableChannelHandler] = { [] }) throws -> HTTPServerBuilder {
        let limits = limits, table = table
        let http = HTTPServerBuilder { responder in
            HardenedHTTP1Channel(responder: responder, limits: limits, maxBodyBytes: maxBodyBytes, refusal: refusal,
                                 table: table, tls: tls != nil, extraHandlers: extraHandlers)
        }
        guard let tls else { return http }
        return try .tls(http, tlsConfiguration: tls)
    }

    /// The application configuration with the connection cap. The kernel's accept queue holds up to
    /// max(1024, 4 x max_connections) connections waiting for a slot (Linux caps it at
    /// net.core.somaxconn, 4096 by default): when it is full, a client's connection attempt is dropped
    /// and retried only a second later, so a deep queue keeps a slowloris from delaying everyone by that.
    public func configuration(address: BindAddress, serverName: String) -> ApplicationConfiguration {
        ApplicationConfiguration(address: address, serverName: serverName, backlog: min(65535, max(1024, 4 * limits.maxConnections)),
                                 availableConnectionsDelegate: ConnectionCap(limit: limits.maxConnections, table: table))
    }
}
