public import HTTPTypes
public import NIOCore
public import NIOHTTPTypes

/// Deadlines on reading a request, after the HTTP decoder: the head must be complete within
/// `headerTimeout` of its first byte (announced by ``InboundBytesObserver``), else the client gets
/// 408 and the connection is closed; the body must be complete within `bodyTimeout` of the head,
/// else the connection is closed. Nothing limits the time a response takes (the request path bounds
/// generation). Idle connections between requests are Hummingbird's `idleTimeout`. Keeps the
/// listener's ``ConnectionTable`` informed of what the connection is doing.
public final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    enum State {
        case waitingForRequest
        case readingHead
        case readingBody
        case responding
    }

    let headerTimeout: Duration
    let bodyTimeout: Duration
    let table: ConnectionTable?
    var state = State.waitingForRequest
    /// Bytes of a next request arrived while the current one was being answered.
    var nextRequestStarted = false
    var timer: Scheduled<Void>?
    var registered = false

    public init(headerTimeout: Duration, bodyTimeout: Duration, table: ConnectionTable?) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.table = table
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        table?.opened(context.channel)
        registered = true
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        stop(context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        stop(context)
        context.fireChannelInactive()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is RequestBytesArrived else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch state {
        case .waitingForRequest:
            state = .readingHead
            table?.update(context.channel, phase: .readingHead)
            arm(context, headerTimeout) { [weak self] in self?.headTimedOut(context) }
        case .responding:
            nextRequestStarted = true
        case .readingHead, .readingBody:
            break
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            state = .readingBody
            nextRequestStarted = false
            table?.update(context.channel, phase: .readingBody)
            arm(context, bodyTimeout) { context.close(promise: nil) }
        case .body:
            break
        case .end:
            state = .responding
            disarm()
            table?.update(context.channel, phase: .responding)
        }
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), state == .responding {
            table?.update(context.channel, phase: .waitingForRequest)
            if nextRequestStarted {
                state = .readingHead
                table?.update(context.channel, phase: .readingHead)
                arm(context, headerTimeout) { [weak self] in self?.headTimedOut(context) }
            } else {
                state = .waitingForRequest
            }
        }
        context.write(data, promise: promise)
    }

    private func headTimedOut(_ context: ChannelHandlerContext) {
        guard state == .readingHead else { return }
        let head = HTTPResponse(status: .requestTimeout, headerFields: [.connection: "close", .contentLength: "0"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func arm(_ context: ChannelHandlerContext, _ timeout: Duration, _ action: @escaping () -> Void) {
        disarm()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout), action)
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }

    private func stop(_ context: ChannelHandlerContext) {
        disarm()
        if registered {
            registered = false
            table?.closed(context.channel)
        }
    }
}

@available(*, unavailable)
extension RequestDeadlineHandler: Sendable {}
