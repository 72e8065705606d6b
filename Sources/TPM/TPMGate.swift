/// Bounds the TPM work that clients can cause. A TPM answers one command at a time and a quote
/// takes tens of milliseconds, so an open endpoint that quotes (attestation, credential
/// activation, Keylime's quotes) would otherwise let a flood queue unbounded work on the TPM queue
/// and delay every other TPM user behind it. At most `concurrent` callers run, at most `waiting`
/// wait in order; beyond that `enter` refuses at once (the HTTP layer answers 429).
///
/// Concurrency alone does not protect the rest of the node: a flood that keeps two quotes running
/// all the time keeps a (software) TPM and the evidence assembly busy enough to take most of a core
/// from inference (measured: legitimate tokens/s fell to 10% on 2 cores). So admissions are also
/// rate-limited: a token bucket of `perSecond` admissions with bursts of `burst`; an orchestrator
/// needs a quote per node every few seconds, not hundreds.
public actor TPMGate {
    public struct Busy: Error, Sendable, CustomStringConvertible {
        public let concurrent: Int
        public let waiting: Int
        public var description: String { "the TPM is busy (at most \(concurrent) requests run and \(waiting) wait, at a bounded rate); retry shortly" }
    }

    public let concurrent: Int
    public let waiting: Int
    public let perSecond: Double
    public let burst: Double
    private var tokens: Double
    private var refilled = ContinuousClock.now
    private var running = 0
    private var queue: [CheckedContinuation<Void, Never>] = []
    /// Callers refused since start (for metrics and tests).
    public private(set) var refused = 0

    public init(concurrent: Int = 2, waiting: Int = 8, perSecond: Double = 10, burst: Double = 20) {
        self.concurrent = max(1, concurrent)
        self.waiting = max(0, waiting)
        self.perSecond = max(0.001, perSecond)
        self.burst = max(1, burst)
        tokens = self.burst
    }

    /// Runs `body` once admitted, or throws `Busy` at once.
    public func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await enter()
        defer { leave() }
        return try await body()
    }

    func enter() async throws(Busy) {
        let now = ContinuousClock.now
        let elapsed = now - refilled
        tokens = min(burst, tokens + perSecond * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
        refilled = now
        guard tokens >= 1 else {
            refused += 1
            throw Busy(concurrent: concurrent, waiting: waiting)
        }
        tokens -= 1
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
