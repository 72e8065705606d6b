import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import NIOTLS
import ServerHardening
import Testing

/// The connection layer's handlers on an EmbeddedChannel whose clock the tests advance: no sockets,
/// no waiting, every deadline checked on both sides of its expiry.
@Suite struct ConnectionHandlerTests {
    static let refusal = BodyLimitHandler.Refusal(contentType: "application/json") { limit in #"{"limit":\#(limit)}"# }

    func channel(_ handlers: [any ChannelHandler]) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(handlers)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    func head(_ method: HTTPRequest.Method = .post, _ fields: HTTPFields = [:]) -> HTTPRequestPart {
        .head(HTTPRequest(method: method, scheme: nil, authority: "x", path: "/v1/completions", headerFields: fields))
    }

    func outbound(_ channel: EmbeddedChannel) throws -> [HTTPResponsePart] {
        var parts: [HTTPResponsePart] = []
        while let part = try channel.readOutbound(as: HTTPResponsePart.self) { parts.append(part) }
        return parts
    }

    @Test func cutsSlowlorisHeadAtTheHeaderDeadline() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(RequestDeadlineHandler(headerTimeout: .seconds(10), bodyTimeout: .seconds(60), table: nil))
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        // A byte a second: never idle, never a complete head.
        for _ in 0..<9 {
            channel.pipeline.fireUserInboundEventTriggered(RequestBytesArrived())
            loop.advanceTime(by: .seconds(1))
        }
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        let parts = try outbound(channel)
        guard case .head(let response) = parts.first else { Issue.record("no answer"); return }
        #expect(response.status == .requestTimeout)
        #expect(!channel.isActive)
    }

    @Test func theHeaderDeadlineRunsFromTheFirstByteNotFromTheConnection() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(RequestDeadlineHandler(headerTimeout: .seconds(10), bodyTimeout: .seconds(60), table: nil))
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        loop.advanceTime(by: .seconds(30))  // idle: Hummingbird's idle timeout is the bound here
        #expect(channel.isActive)
        channel.pipeline.fireUserInboundEventTriggered(RequestBytesArrived())
        try channel.writeInbound(head(.get))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        loop.advanceTime(by: .seconds(100))  // answering takes as long as it takes
        #expect(channel.isActive)
    }

    @Test func cutsSlowBodyUpload() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(RequestDeadlineHandler(headerTimeout: .seconds(10), bodyTimeout: .seconds(60), table: nil))
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.pipeline.fireUserInboundEventTriggered(RequestBytesArrived())
        try channel.writeInbound(head(.post, [.contentLength: "100"]))
        for _ in 0..<59 {
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "a")))
            loop.advanceTime(by: .seconds(1))
        }
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func refusesOversizedContentLengthBeforeTheRouteAndClosesAfterTheBody() throws {
        let channel = try channel([BodyLimitHandler(limit: 1000, refusal: Self.refusal)])
        try channel.writeInbound(head(.post, [.contentLength: "5000", .connection: "close"]))
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)  // the route never sees it
        let parts = try outbound(channel)
        guard case .head(let response) = parts.first else { Issue.record("no answer"); return }
        #expect(response.status == .contentTooLarge && response.headerFields[.connection] == "close")
        #expect(parts.contains { if case .body(let b) = $0 { String(buffer: b) == #"{"limit":1000}"# } else { false } })
        // The client writes its whole body before reading: it is read and dropped, then the connection closes.
        for _ in 0..<5 { try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 0x61, count: 1000))) }
        #expect(channel.isActive)
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(!channel.isActive)
    }

    @Test func closesOversizedChunkedBodyAfterTheRoutesAnswer() throws {
        let channel = try channel([BodyLimitHandler(limit: 1000, refusal: Self.refusal)])
        try channel.writeInbound(head(.post, [.transferEncoding: "chunked"]))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 0x61, count: 800)))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 0x61, count: 800)))  // crosses the limit: passed on
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 0x61, count: 800)))  // dropped
        var seen = 0
        while let part = try channel.readInbound(as: HTTPRequestPart.self) { if case .body(let b) = part { seen += b.readableBytes } }
        #expect(seen == 1600)
        // The route answers 413 (its collect(upTo:) saw the overflow); the rest is drained, then closed.
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .contentTooLarge)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        #expect(channel.isActive)
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 0x61, count: 800)))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(!channel.isActive)
    }

    @Test func closesAConnectionCloseRequestWhoseBodyNobodyRead() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: BodyLimitHandler(limit: 1 << 20, refusal: Self.refusal, linger: .seconds(10)), loop: loop)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(head(.post, [.contentLength: "500000", .connection: "close"]))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 0x61, count: 1000)))
        // A 401 without reading the body, then Hummingbird half-closes and stops reading.
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .unauthorized)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 0x61, count: 1000)))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(10))  // a client that never finishes its body is closed after the linger time
        #expect(!channel.isActive)
    }

    @Test func displacesTheConnectionWaitingLongestNeverOneBeingAnswered() throws {
        let table = ConnectionTable()
        let loop = EmbeddedEventLoop()
        let answering = EmbeddedChannel(loop: loop), uploading = EmbeddedChannel(loop: loop), idle = EmbeddedChannel(loop: loop)
        for c in [answering, uploading, idle] {
            try c.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
            table.opened(c)
        }
        table.update(answering, phase: .responding)
        table.update(uploading, phase: .readingBody)
        #expect(table.displaceOne() == .afterGrace)
        // Not before the grace time: its request may still be on its way.
        loop.advanceTime(to: .now() + ConnectionTable.grace - .milliseconds(20))
        #expect(idle.isActive)
        loop.advanceTime(to: .now() + ConnectionTable.grace + .milliseconds(20))
        #expect(!idle.isActive && uploading.isActive && answering.isActive)
        table.closed(idle)
        #expect(table.displaceOne() != .nothing)
        loop.advanceTime(to: .now() + ConnectionTable.grace + .milliseconds(20))
        #expect(!uploading.isActive && answering.isActive)
        table.closed(uploading)
        #expect(table.displaceOne() == .nothing)
        #expect(answering.isActive && table.count == 1 && table.displaced == 2)
    }

    @Test func aConnectionWhoseRequestArrivesInTheGraceTimeIsKept() throws {
        let table = ConnectionTable()
        let loop = EmbeddedEventLoop()
        let early = EmbeddedChannel(loop: loop), late = EmbeddedChannel(loop: loop)
        for c in [early, late] {
            try c.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
            table.opened(c)
        }
        #expect(table.displaceOne() == .afterGrace)  // early is picked (it has waited longest)
        table.update(early, phase: .responding)  // its request arrives
        loop.advanceTime(to: .now() + ConnectionTable.grace * 3)
        #expect(early.isActive && !late.isActive)
    }

    @Test func refusesConnectionsBeyondCap() throws {
        let table = ConnectionTable()
        var cap = ConnectionCap(limit: 2, table: table)
        let a = EmbeddedChannel(), b = EmbeddedChannel()
        for c in [a, b] {
            try c.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
            table.opened(c)
            table.update(c, phase: .responding)
            #expect(cap.isAcceptingNewConnections())
            cap.connectionOpened()
        }
        #expect(!cap.isAcceptingNewConnections())  // both are being answered: nothing to displace
        #expect(a.isActive && b.isActive)
        cap.connectionClosed()
        #expect(cap.isAcceptingNewConnections())
    }

    @Test func displacesASlowlorisAtOnceAndASilentConnectionAfterItsGraceTime() throws {
        let table = ConnectionTable()
        let loop = EmbeddedEventLoop()
        var cap = ConnectionCap(limit: 2, table: table)
        let trickling = EmbeddedChannel(loop: loop), silent = EmbeddedChannel(loop: loop)
        for c in [trickling, silent] {
            try c.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
            table.opened(c)
            cap.connectionOpened()
        }
        table.update(trickling, phase: .readingHead)
        #expect(!cap.isAcceptingNewConnections())  // the trickler goes at once; accept again when it has closed
        loop.advanceTime(to: .now())
        #expect(!trickling.isActive && silent.isActive)
        table.closed(trickling)
        cap.connectionClosed()
        #expect(cap.isAcceptingNewConnections())
        let next = EmbeddedChannel(loop: loop)
        try next.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        table.opened(next)
        cap.connectionOpened()
        table.update(next, phase: .responding)
        #expect(!cap.isAcceptingNewConnections())
        #expect(table.displaceOne() == .afterGrace)  // the silent one, when its grace time is over
        loop.advanceTime(to: .now() + ConnectionTable.grace + .milliseconds(20))
        #expect(!silent.isActive && next.isActive)
    }

    @Test func cutsStalledTLSHandshake() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: TLSHandshakeTimeoutHandler(timeout: .seconds(10)), loop: loop)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        loop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func aCompletedHandshakeIsNotCut() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: TLSHandshakeTimeoutHandler(timeout: .seconds(10)), loop: loop)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        loop.advanceTime(by: .seconds(5))
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        loop.advanceTime(by: .seconds(60))
        #expect(channel.isActive)
    }
}
