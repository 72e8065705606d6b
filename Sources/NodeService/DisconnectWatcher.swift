import NIOConcurrencyHelpers
import NIOCore

/// Notices a client that went away while its request is still being answered: the connection's
/// input closed (the client shut down or closed its socket; the server allows half-closure, so this
/// is the only sign) or the connection died. A non-streaming completion registers here, so that an
/// abandoned request is cancelled as a streaming one is, instead of holding a slot until it finishes.
/// One per connection, in the HTTP pipeline.
public final class DisconnectWatcher: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    /// Reads pass through untouched (never unwrapped).
    public typealias InboundIn = NIOAny

    private struct State {
        var gone = false
        var callbacks: [UInt64: @Sendable () -> Void] = [:]
        var next: UInt64 = 0
    }
    private let state = NIOLockedValueBox(State())

    public init() {}

    /// Runs `callback` once when the client goes away (at once if it already has). Returns a token
    /// for `forget`.
    @discardableResult
    public func onDisconnect(_ callback: @escaping @Sendable () -> Void) -> UInt64? {
        let token: UInt64? = state.withLockedValue { s in
            if s.gone { return nil }
            s.next += 1
            s.callbacks[s.next] = callback
            return s.next
        }
        if token == nil { callback() }
        return token
    }

    /// The request finished: its callback is no longer wanted.
    public func forget(_ token: UInt64?) {
        guard let token else { return }
        _ = state.withLockedValue { $0.callbacks.removeValue(forKey: token) }
    }

    public var clientGone: Bool { state.withLockedValue { $0.gone } }

    private func fire() {
        let callbacks = state.withLockedValue { s -> [@Sendable () -> Void] in
            guard !s.gone else { return [] }
            s.gone = true
            defer { s.callbacks = [:] }
            return Array(s.callbacks.values)
        }
        for callback in callbacks { callback() }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event { fire() }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        fire()
        context.fireChannelInactive()
    }
}

extension NodeRequestContext {
    /// The connection's watcher (nil if the pipeline has none, e.g. in-process tests).
    func disconnectWatcher() async -> DisconnectWatcher? {
        try? await channel.pipeline.handler(type: DisconnectWatcher.self).get()
    }
}
