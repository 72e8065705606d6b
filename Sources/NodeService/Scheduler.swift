import Foundation
import Generation
import Inference

/// Shares one engine among concurrent requests with continuous batching: each engine step runs one
/// token for every sequence that is decoding plus chunks of waiting prompts, up to the engine's
/// batch size, so a long prompt never stalls the others for long and aggregate throughput grows
/// with concurrency. Every sequence's result is what it would be alone (the engine's rows are
/// independent), whatever else is running.
///
/// The loop runs on its own thread (it blocks on the CPU for milliseconds per step; it must not sit
/// on Swift's cooperative pool). Requests beyond the parallel slots wait in a bounded queue; a full
/// queue refuses at once (the HTTP layer answers 429).
public final class InferenceScheduler: @unchecked Sendable {
    /// What one request asks for.
    public struct Request: Sendable {
        public var promptIDs: [Int]
        public var options: GenerationOptions
        public init(promptIDs: [Int], options: GenerationOptions) {
            self.promptIDs = promptIDs
            self.options = options
        }
    }

    /// The end of a request.
    public struct Completion: Sendable {
        public var promptTokens: Int
        public var completionTokens: Int
        public var text: String
        public var stopReason: GenerationResult.StopReason
        /// From submission to the first generated text (or to the end, if there was none).
        public var timeToFirstToken: Duration
    }

    public enum Event: Sendable {
        /// Generated text, in UTF-8-safe pieces, in order.
        case text(String)
        case finished(Completion)
        /// The request could not run (the node is stopping, or the engine refused it).
        case failed(String)
    }

    /// A queued request: its events, and a way to cancel it (a client that went away).
    public struct Submission: Sendable {
        public let events: AsyncStream<Event>
        public let cancel: @Sendable () -> Void
    }

    public enum SubmitError: Error, Sendable {
        case queueFull
        case draining
    }

    /// One request; its mutable state is touched under `condition` or by the loop thread alone.
    final class Job: @unchecked Sendable {
        let id: UInt64
        var state: GenerationState
        let continuation: AsyncStream<Event>.Continuation
        let submitted = ContinuousClock.now
        var firstText: Duration?
        var session: LlamaSession?
        /// Prompt tokens not evaluated yet.
        var promptOffset = 0
        /// The token to evaluate next once decoding (nil while the prompt is pending).
        var next: Int?
        var cancelled = false
        var promptIDs: [Int] { state.promptIDs }

        init(id: UInt64, state: GenerationState, continuation: AsyncStream<Event>.Continuation) {
            self.id = id
            self.state = state
            self.continuation = continuation
        }
    }

    public let engine: LlamaEngine
    public let tokenizer: Tokenizer
    public let parallel: Int
    public let queueCapacity: Int
    private let condition = NSCondition()
    private var pending: [Job] = []
    private var active: [Job] = []
    private var freeSessions: [LlamaSession]
    private var accepting = true
    private var stopped = false
    private var nextID: UInt64 = 1
    private var thread: Thread?
    /// Called after every step with (waiting, running) counts, and for each first token.
    private let observer: (any SchedulerObserver)?

    /// A scheduler with `parallel` sessions of `contextLength` positions on `engine`, and a queue of
    /// `queueDepth` waiting requests beyond them.
    public init(engine: LlamaEngine, tokenizer: Tokenizer, parallel: Int, contextLength: Int, queueDepth: Int,
                observer: (any SchedulerObserver)? = nil) throws(InferenceError) {
        self.engine = engine
        self.tokenizer = tokenizer
        self.parallel = max(1, parallel)
        queueCapacity = max(0, queueDepth)
        self.observer = observer
        var sessions: [LlamaSession] = []
        for _ in 0 ..< self.parallel { sessions.append(try engine.makeSession(contextLength: contextLength)) }
        freeSessions = sessions
    }

    /// Starts the loop thread.
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard thread == nil else { return }
        let t = Thread { [self] in loop() }
        t.name = "securenode-scheduler"
        t.stackSize = 16 << 20
        thread = t
        t.start()
    }

    /// Queues a request; its events arrive on the returned stream. Ending the stream early (the
    /// consumer stops iterating) cancels the request.
    public func submit(_ request: Request) throws(SubmitError) -> Submission {
        let state: GenerationState
        do {
            state = try GenerationState(promptIDs: request.promptIDs, options: request.options, tokenizer: tokenizer)
        } catch {
            return Submission(events: AsyncStream { $0.yield(.failed(error.reason)); $0.finish() }, cancel: {})
        }
        let (stream, continuation) = AsyncStream<Event>.makeStream()
        condition.lock()
        defer { condition.unlock() }
        guard accepting else { throw .draining }
        // Room for `parallel` running and `queueCapacity` waiting requests in all.
        guard pending.count + active.count < parallel + queueCapacity else { throw .queueFull }
        let job = Job(id: nextID, state: state, continuation: continuation)
        nextID += 1
        pending.append(job)
        continuation.onTermination = { [weak self, weak job] _ in
            guard let self, let job else { return }
            self.cancel(job)
        }
        condition.signal()
        return Submission(events: stream, cancel: { [weak self, weak job] in
            guard let self, let job else { return }
            self.cancel(job)
        })
    }

    func cancel(_ job: Job) {
        condition.lock()
        job.cancelled = true
        condition.signal()
        condition.unlock()
    }

    /// Cancels every queued and running request: a revoked node stops answering at once (streams
    /// end; what was generated before is not withdrawn).
    public func cancelAll() {
        condition.lock()
        for job in pending + active { job.cancelled = true }
        condition.signal()
        condition.unlock()
    }

    /// Requests waiting, and running.
    public var counts: (waiting: Int, running: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (pending.count, active.count)
    }

    /// Stops accepting requests (they get `.draining`), lets the running and queued ones finish for
    /// up to `deadline`, then fails whatever is left and stops the loop.
    public func drain(deadline: Duration) async {
        stopAccepting()
        let end = ContinuousClock.now + deadline
        while ContinuousClock.now < end {
            let (waiting, running) = counts
            if waiting == 0 && running == 0 { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        stopLoop()
    }

    /// New requests get `.draining` from now on.
    public func stopAccepting() {
        condition.lock()
        accepting = false
        condition.unlock()
    }

    /// Whether new requests are accepted.
    public var isAccepting: Bool {
        condition.lock()
        defer { condition.unlock() }
        return accepting
    }

    /// Fails whatever is queued or running and ends the loop thread.
    public func stopLoop() {
        condition.lock()
        accepting = false
        stopped = true
        condition.signal()
        condition.unlock()
    }

    // MARK: - The loop

    private func loop() {
        while true {
            condition.lock()
            while !stopped && pending.isEmpty && active.isEmpty { condition.wait() }
            if stopped {
                let left = pending + active
                pending = []
                active = []
                condition.unlock()
                for job in left {
                    job.continuation.yield(.failed("the node is shutting down"))
                    job.continuation.finish()
                }
                return
            }
            // Drop cancelled requests, then admit waiting ones into free sessions.
            for job in pending where job.cancelled {
                job.continuation.finish()
                observer?.cancelled()
            }
            pending.removeAll { $0.cancelled }
            for job in active where job.cancelled {
                release(job)
                job.continuation.finish()
                observer?.cancelled()
            }
            active.removeAll { $0.cancelled }
            while !pending.isEmpty, let session = freeSessions.popLast() {
                let job = pending.removeFirst()
                session.reset()
                job.session = session
                active.append(job)
            }
            let running = active
            observer?.queue(waiting: pending.count, running: active.count)
            condition.unlock()
            if running.isEmpty { continue }
            runStep(running)
        }
    }

    /// One engine step: a token for every decoding sequence, then prompt chunks in arrival order
    /// with the rest of the batch.
    private func runStep(_ running: [Job]) {
        var items: [LlamaEngine.StepItem] = []
        var owners: [Job] = []
        var budget = engine.batchCapacity
        for job in running where job.next != nil && budget > 0 {
            items.append(.init(session: job.session!, tokens: [job.next!]))
            owners.append(job)
            budget -= 1
        }
        for job in running where job.next == nil && job.promptOffset < job.promptIDs.count && budget > 0 {
            let count = min(budget, job.promptIDs.count - job.promptOffset)
            let chunk = Array(job.promptIDs[job.promptOffset ..< job.promptOffset + count])
            let last = job.promptOffset + count == job.promptIDs.count
            items.append(.init(session: job.session!, tokens: chunk, promptLength: job.promptIDs.count, wantsLogits: last))
            owners.append(job)
            budget -= count
        }
        guard !items.isEmpty else { return }
        let results: [[Float]?]
        do {
            results = try engine.step(items)
        } catch {
            // A request the engine refuses (it was validated before; this is a bug or a limit): fail it alone.
            for job in owners { finish(job, failure: error.reason) }
            return
        }
        for (job, (item, logits)) in zip(owners, zip(items, results)) {
            if job.next == nil { job.promptOffset += item.tokens.count }
            guard let logits else { continue }
            let step = job.state.accept(logits: logits)
            if !step.text.isEmpty {
                if job.firstText == nil {
                    job.firstText = ContinuousClock.now - job.submitted
                    observer?.firstToken(after: job.firstText!)
                }
                job.continuation.yield(.text(step.text))
            }
            if let next = step.next, job.session!.position < job.session!.contextLength {
                job.next = next
            } else {
                finish(job, failure: nil)
            }
        }
    }

    private func finish(_ job: Job, failure: String?) {
        if let failure {
            job.continuation.yield(.failed(failure))
        } else {
            job.state.cancel()
            let result = job.state.result
            observer?.completed(promptTokens: result.promptIDs.count, completionTokens: result.outputIDs.count)
            job.continuation.yield(.finished(Completion(promptTokens: result.promptIDs.count, completionTokens: result.outputIDs.count,
                                                        text: result.text, stopReason: result.stopReason,
                                                        timeToFirstToken: job.firstText ?? (ContinuousClock.now - job.submitted))))
        }
        job.continuation.finish()
        condition.lock()
        active.removeAll { $0 === job }
        release(job)
        observer?.queue(waiting: pending.count, running: active.count)
        condition.unlock()
    }

    /// Returns a job's session to the free list (the lock is held).
    private func release(_ job: Job) {
        if let session = job.session {
            freeSessions.append(session)
            job.session = nil
        }
    }
}

/// Receives the scheduler's measurements (metrics).
public protocol SchedulerObserver: Sendable {
    func queue(waiting: Int, running: Int)
    func firstToken(after: Duration)
    func completed(promptTokens: Int, completionTokens: Int)
    /// A request was dropped because its client went away.
    func cancelled()
}
