import Foundation

/// Runs the work whose cost a client controls — parsing a request body, rendering the chat
/// template, tokenizing — on threads of its own, never on Swift's cooperative pool (which also runs
/// the HTTP server: a request that occupied it would stall every other client, `/healthz` included).
///
/// Bounded three ways: `threads` jobs run at once, at most `queueDepth` wait (more are refused at
/// once: the HTTP layer answers 429), and a job that waited longer than `deadline` is not started
/// (503). A started job is not interrupted: its cost is bounded by the body limit and by the
/// linear-time tokenizer.
public final class RequestWorker: @unchecked Sendable {
    public enum Refusal: Error, Sendable, Equatable {
        /// `queueDepth` jobs wait already.
        case busy(queueDepth: Int)
        /// The job waited longer than the deadline.
        case timedOut(Duration)
        /// The worker stopped.
        case stopped
    }

    private struct Pending {
        let enqueued: ContinuousClock.Instant
        let run: (Refusal?) -> Void
    }

    public let threads: Int
    public let queueDepth: Int
    public let deadline: Duration
    private let condition = NSCondition()
    private var queue: [Pending] = []
    private var head = 0
    private var stopped = false
    /// Threads running a job.
    private var busy = 0
    /// Jobs started, for tests and metrics.
    public private(set) var started = 0
    /// The worker threads (pthread ids), for the tests that check where work runs.
    var threadIDs: Set<UInt> {
        condition.lock()
        defer { condition.unlock() }
        return workerThreads
    }
    private var workerThreads: Set<UInt> = []
    /// Jobs queued and not yet started, for the tests.
    var waiting: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count - head
    }

    public init(threads: Int = 2, queueDepth: Int = 64, deadline: Duration = .seconds(10)) {
        self.threads = max(1, threads)
        self.queueDepth = max(0, queueDepth)
        self.deadline = deadline
        for i in 0 ..< self.threads {
            let thread = Thread { [unowned self] in self.work() }
            thread.name = "securenode-request-\(i)"
            thread.start()
        }
    }

    deinit { stop() }

    /// Runs `body` on a worker thread and returns its result, or throws `Refusal` without running it.
    public func run<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws -> T {
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            let pending = Pending(enqueued: .now) { refusal in
                if let refusal {
                    continuation.resume(returning: .failure(refusal))
                } else {
                    continuation.resume(returning: Result { () throws(E) -> T in try body() }.mapError { $0 as any Error })
                }
            }
            condition.lock()
            if stopped {
                condition.unlock()
                pending.run(.stopped)
            } else if queue.count - head + busy >= queueDepth + threads {
                condition.unlock()
                pending.run(.busy(queueDepth: queueDepth))
            } else {
                queue.append(pending)
                condition.signal()
                condition.unlock()
            }
        }
        return try result.get()
    }

    /// Refuses what waits and stops the threads once they are idle.
    public func stop() {
        condition.lock()
        stopped = true
        let left = queue[head...]
        queue = []
        head = 0
        condition.broadcast()
        condition.unlock()
        for pending in left { pending.run(.stopped) }
    }

    private func work() {
        condition.lock()
        workerThreads.insert(UInt(bitPattern: Int(bitPattern: pthread_self())))
        condition.unlock()
        while true {
            condition.lock()
            while head == queue.count && !stopped { condition.wait() }
            if stopped {
                condition.unlock()
                return
            }
            let pending = queue[head]
            head += 1
            if head > 64 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            started += 1
            busy += 1
            condition.unlock()
            let waited = ContinuousClock.now - pending.enqueued
            pending.run(waited > deadline ? .timedOut(deadline) : nil)
            condition.lock()
            busy -= 1
            condition.unlock()
        }
    }
}
