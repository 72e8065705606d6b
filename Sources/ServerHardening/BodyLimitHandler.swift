public import HTTPTypes
public import NIOCore
public import NIOHTTPTypes

/// Refuses request bodies larger than the listener allows (413, then the connection is closed), and
/// makes sure a body nobody reads can never wedge a connection.
///
/// Why at this depth: a route that collects the body with `collect(upTo:)` stops reading at the
/// limit and answers 413 (a route that refuses earlier, e.g. 401, reads none of it). When the client
/// sent `Connection: close`, Hummingbird then half-closes its side and waits for the client to close,
/// and stops reading; the client, still writing the rest of its body before it reads anything, waits
/// for the server to read: both wait forever. Here:
/// - a `Content-Length` over the limit is answered 413 before any route runs (the head is not passed on);
/// - a body without a length (chunked) is counted as it arrives; the part that crosses the limit is
///   passed on (the route sees its body exceed the limit and answers 413) and the rest is dropped;
/// - once the response to a refused request, or to a `Connection: close` request, has been written,
///   the rest of the body is read here and discarded, for at most `linger` (and `lingerBytes`), so the
///   client finishes writing and reads the answer; then the connection is closed.
public final class BodyLimitHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    /// The 413 answer when no route has run: content type and body.
    public struct Refusal: Sendable {
        public var contentType: String
        public var body: @Sendable (_ limit: Int) -> String
        public init(contentType: String, body: @escaping @Sendable (_ limit: Int) -> String) {
            self.contentType = contentType
            self.body = body
        }
    }

    let limit: Int
    let refusal: Refusal
    let linger: Duration
    let lingerBytes: Int

    var received = 0
    /// The body is over the limit: nothing more of it is passed on and the connection closes after the answer.
    var refused = false
    /// Refused by Content-Length: the route never saw this request.
    var answeredHere = false
    var closeRequested = false
    var requestEnded = true
    var responseEnded = false
    var lingering = false
    var discarded = 0
    var lingerTimer: Scheduled<Void>?

    public init(limit: Int, refusal: Refusal, linger: Duration = .seconds(10), lingerBytes: Int = 64 << 20) {
        self.limit = limit
        self.refusal = refusal
        self.linger = linger
        self.lingerBytes = lingerBytes
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        lingerTimer?.cancel()
        lingerTimer = nil
    }

    /// After the answer, the rest of this request is read and dropped here.
    var discarding: Bool { refused || (responseEnded && closeRequested) }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if !requestEnded || lingering { return }  // a pipelined request behind one being closed
            received = 0
            refused = false
            answeredHere = false
            requestEnded = false
            responseEnded = false
            closeRequested = head.headerFields[values: .connection].contains { $0.lowercased().contains("close") }
            if let length = head.headerFields[.contentLength].flatMap({ Int($0) }), length > limit {
                refused = true
                answeredHere = true
                answer(context)
                return
            }
            context.fireChannelRead(data)
        case .body(let buffer):
            if discarding {
                discarded += buffer.readableBytes
                if discarded > lingerBytes { context.close(promise: nil) }
                return
            }
            received += buffer.readableBytes
            if received > limit {
                refused = true
                if responseEnded { startLingering(context) }
            }
            context.fireChannelRead(data)
        case .end:
            requestEnded = true
            if !answeredHere { context.fireChannelRead(data) }
            if responseEnded && (refused || closeRequested) { context.close(promise: nil) }
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        // Hummingbird stopped reading once it answered; keep reading what is left of the body.
        if lingering { context.read() }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        guard refused || closeRequested else {
            responseEnded = true
            context.write(data, promise: promise)
            return
        }
        let written = promise ?? context.eventLoop.makePromise()
        context.write(data, promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in self.responseWritten(context) }
    }

    /// The answer to a refused or `Connection: close` request is out: close now if the whole request
    /// was read, else read and drop the rest first.
    private func responseWritten(_ context: ChannelHandlerContext) {
        responseEnded = true
        if requestEnded {
            context.close(promise: nil)
        } else {
            startLingering(context)
        }
    }

    private func startLingering(_ context: ChannelHandlerContext) {
        guard !lingering else { return }
        lingering = true
        lingerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(linger)) {
            context.close(promise: nil)
        }
        context.read()
    }

    private func answer(_ context: ChannelHandlerContext) {
        let text = ByteBuffer(string: refusal.body(limit))
        let head = HTTPResponse(status: .contentTooLarge, headerFields: [
            .contentType: refusal.contentType, .contentLength: "\(text.readableBytes)", .connection: "close",
        ])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(text)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in self.responseWritten(context) }
    }
}

@available(*, unavailable)
extension BodyLimitHandler: Sendable {}
