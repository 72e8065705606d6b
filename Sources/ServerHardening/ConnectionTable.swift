public import HummingbirdCore
public import NIOCore
import NIOConcurrencyHelpers

/// The open connections of one listener and what each is doing, so that at the cap a new connection
/// can displace one that holds a slot without a request being answered.
///
/// Promise (documented in README "Hostile clients"): when `max_connections` connections are open,
/// the node closes one to accept the next, in this order: the connection trickling a request head
/// longest (at once), the one that has waited longest without sending anything (idle keep-alive, a
/// stalled TLS handshake), the longest upload (those two after `grace`, so that a request still on
/// its way is not cut). A connection whose request is being answered is never displaced; when all of
/// them are, new connections wait in the kernel's accept queue. So connections that have not sent a
/// request cannot keep `/healthz` or the API from answering.
public final class ConnectionTable: Sendable {
    /// What a connection is doing, in the order connections are displaced.
    public enum Phase: Int, Sendable, Comparable {
        /// Bytes of a request head arrived but not the whole head (legitimate clients send their head
        /// at once; this is where a slowloris sits). Displaced first, at once.
        case readingHead = 0
        /// Connected (or in the TLS handshake, or idle after a response) without sending anything.
        case waitingForRequest = 1
        /// Receiving a request body.
        case readingBody = 2
        /// The request was read; the response is being produced. Never displaced.
        case responding = 3
        public static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }
    }

    struct Entry {
        let channel: any Channel
        var phase: Phase
        var since: NIODeadline
        var displaced = false
    }

    private let entries = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])
    private let displacedCount = NIOLockedValueBox(0)

    public init() {}

    /// Open connections.
    public var count: Int { entries.withLockedValue { $0.count } }
    /// Connections closed to make room since the start.
    public var displaced: Int { displacedCount.withLockedValue { $0 } }

    public func opened(_ channel: any Channel) {
        entries.withLockedValue { $0[ObjectIdentifier(channel)] = Entry(channel: channel, phase: .waitingForRequest, since: .now()) }
    }

    public func update(_ channel: any Channel, phase: Phase) {
        entries.withLockedValue { entries in
            entries[ObjectIdentifier(channel)]?.phase = phase
            entries[ObjectIdentifier(channel)]?.since = .now()
        }
    }

    public func closed(_ channel: any Channel) {
        _ = entries.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// A connection that has sent nothing yet (or is uploading) is displaced only once it has been in
    /// that phase this long, so reaching the cap (Hummingbird asks on every accept, whether or not
    /// anyone else is waiting) does not displace a connection whose request is already on its way.
    /// Short on purpose: the cap is reached only under attack or overload, a client sends its head
    /// (or its TLS hello) right after connecting, and a slowloris that reconnects silently must not
    /// hold `/healthz` up for long (with a 1 s grace, probes under a reconnecting slowloris waited 1 s).
    /// A client whose first bytes take longer than this to arrive, while the node is at its cap, may be
    /// cut and retries.
    public static let grace = TimeAmount.milliseconds(50)

    /// What ``displaceOne()`` did.
    public enum Displacement: Sendable, Equatable {
        /// A connection is closing now (a slot frees in a moment).
        case now
        /// A connection will be closed when its grace time ends.
        case afterGrace
        /// Every connection is being answered: nothing to displace.
        case nothing
    }

    /// Closes, in this order, the connection trickling its request head the longest (at once), the
    /// one that has waited longest without sending anything, or the longest upload (those two at the
    /// earliest `grace` after they entered that phase); one at a time, except that a trickler is
    /// displaced at once while another connection waits out its grace time.
    @discardableResult
    public func displaceOne() -> Displacement {
        let pendingNow = entries.withLockedValue { entries in
            entries.values.contains { $0.displaced && ($0.phase == .readingHead || $0.since + Self.grace <= .now()) }
        }
        if pendingNow { return .now }
        let victim: (channel: any Channel, phase: Phase, since: NIODeadline)? = entries.withLockedValue { entries in
            let pending = entries.values.filter(\.displaced)
            var best: (key: ObjectIdentifier, entry: Entry)?
            for (key, entry) in entries where !entry.displaced && entry.phase != .responding
                && (pending.isEmpty || entry.phase == .readingHead) {
                if let b = best, (b.entry.phase, b.entry.since) <= (entry.phase, entry.since) { continue }
                best = (key, entry)
            }
            guard let best else { return nil }
            entries[best.key]?.displaced = true
            return (best.entry.channel, best.entry.phase, best.entry.since)
        }
        guard let victim else {
            return entries.withLockedValue { $0.values.contains(where: \.displaced) } ? .afterGrace : .nothing
        }
        let channel = victim.channel
        let deadline = victim.phase == .readingHead ? NIODeadline.now() : victim.since + Self.grace
        channel.eventLoop.scheduleTask(deadline: deadline) { [self] in
            // Still where it was (or trickling a head): close it. Its request arrived meanwhile: pick
            // another. It closed by itself: that made room already.
            enum Outcome { case close, pickAnother, gone }
            let outcome = entries.withLockedValue { entries -> Outcome in
                guard let entry = entries[ObjectIdentifier(channel)] else { return .gone }
                if entry.phase != victim.phase && entry.phase != .readingHead {
                    entries[ObjectIdentifier(channel)]?.displaced = false
                    return .pickAnother
                }
                return .close
            }
            switch outcome {
            case .close:
                displacedCount.withLockedValue { $0 += 1 }
                channel.close(promise: nil)
            case .pickAnother:
                displaceOne()
            case .gone:
                break
            }
        }
        return deadline <= .now() ? .now : .afterGrace
    }
}

/// Hummingbird's accept gate: accepts while fewer than `limit` connections are open. At the cap it
/// displaces one connection of the ``ConnectionTable`` and accepts again once that one has closed (at
/// once for a slowloris, after the grace time for a connection that has sent nothing); when every
/// connection is being answered, new connections wait in the kernel's accept queue.
///
/// (Accepting a few more while a displaced connection waits out its grace time would shorten that
/// wait under a slowloris that reconnects faster than the cap turns over, but Hummingbird asks only
/// when it is about to accept, so such a reserve would also let a connection past a cap held
/// entirely by requests being answered: not done.)
public struct ConnectionCap: AvailableConnectionsDelegate {
    public let limit: Int
    public let table: ConnectionTable
    var open = 0

    public init(limit: Int, table: ConnectionTable) {
        self.limit = limit
        self.table = table
    }

    public mutating func connectionOpened() { open += 1 }
    public mutating func connectionClosed() { open -= 1 }

    public func isAcceptingNewConnections() -> Bool {
        if open < limit { return true }
        table.displaceOne()
        return false
    }
}
