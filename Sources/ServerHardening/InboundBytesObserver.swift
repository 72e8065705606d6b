public import NIOCore

/// Sent up the pipeline, before the HTTP decoder sees them, whenever request bytes arrive: the
/// decoder only reports a request head once it is complete, so this is how ``RequestDeadlineHandler``
/// learns when a request started (its header deadline runs from the first byte).
public struct RequestBytesArrived: Sendable {
    public init() {}
}

/// Placed before the HTTP decoder (after TLS): announces every read as ``RequestBytesArrived``.
public final class InboundBytesObserver: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireUserInboundEventTriggered(RequestBytesArrived())
        context.fireChannelRead(data)
    }
}

@available(*, unavailable)
extension InboundBytesObserver: Sendable {}
