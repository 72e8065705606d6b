public import HummingbirdCore
public import Logging
public import NIOCore

/// Hummingbird's HTTP/1.1 child channel with the node's limits around it. The pipeline of a
/// connection, from the socket: [TLS, ``TLSHandshakeTimeoutHandler``] ``InboundBytesObserver``,
/// HTTP decoder, ``RequestDeadlineHandler``, ``BodyLimitHandler``, Hummingbird (idle timeout, routes).
public struct HardenedHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    public typealias Value = HTTP1Channel.Value

    let base: HTTP1Channel
    let tlsHandshakeTimeout: Duration?

    /// `extraHandlers` go after the node's own (e.g. the API's `DisconnectWatcher`), one set per connection.
    public init(responder: @escaping HTTPChannelHandler.Responder, limits: ServerLimits, maxBodyBytes: Int,
                refusal: BodyLimitHandler.Refusal, table: ConnectionTable?, tls: Bool,
                extraHandlers: @escaping @Sendable () -> [any RemovableChannelHandler] = { [] }) {
        let linger = min(limits.bodyTimeout, .seconds(10))
        base = HTTP1Channel(responder: responder, configuration: .init(
            additionalChannelHandlers: [
                RequestDeadlineHandler(headerTimeout: limits.headerTimeout, bodyTimeout: limits.bodyTimeout, table: table),
                BodyLimitHandler(limit: maxBodyBytes, refusal: refusal, linger: linger),
            ] + extraHandlers(),
            idleTimeout: TimeAmount(limits.idleTimeout)))
        tlsHandshakeTimeout = tls ? limits.tlsHandshakeTimeout : nil
    }

    public var responder: HTTPChannelHandler.Responder { base.responder }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            if let tlsHandshakeTimeout {
                try channel.pipeline.syncOperations.addHandler(TLSHandshakeTimeoutHandler(timeout: tlsHandshakeTimeout))
            }
            try channel.pipeline.syncOperations.addHandler(InboundBytesObserver())
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
