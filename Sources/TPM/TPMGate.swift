/// Bounds the TPM work that clients can cause. A TPM answers one command at a time and a quote
/// takes tens of milliseconds, so an open endpoint that quotes (attestation, credential
/// activation, Keylime's quotes) would otherwise let a flood queue unbounded work on the TPM queue
/// and delay every other TPM user behind it. At most `concurrent` callers run, at most `waiting`
/// wait in order; beyond that `enter` refuses at once (the HTTP layer answers 429).
public actor TPMGate {
    public struct Busy: Error, Sendable, CustomStringConvertible {
        public let concurrent: Int
        public let waiting: Int
        public var description: String { "the TPM is busy (\(concurrent) requests running, \(waiting) waiting); retry shortly" }
    }

    public let concurrent: Int
    public let waiting: Int
    private var running = 0
    private var queue: [CheckedContinuation<Void, Never>] = []
    /// Callers refused since start (for metrics and tests).
    public private(set) var refused = 0

    public init(concurrent: Int = 2, waiting: Int = 8) {
        self.concurrent = max(1, concurrent)
        self.waiting = max(0, waiting)
    }

    /// Runs `body` once admitted, or throws `Busy` at once.
    public func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await enter()
        defer { leave() }
        return try await body()
    }

    func enter() async throws(Busy) {
        if running < concurrent {
            running += 1
            return
        }
        guard queue.count < waiting else {
            refused += 1
            throw Busy(concurrent: concurrent, waiting: waiting)
        }
        await withCheckedContinuation { queue.append($0) }
    }

    func leave() {
        if queue.isEmpty {
            running -= 1
        } else {
            queue.removeFirst().resume()  // the slot passes to the next caller
        }
    }
}
