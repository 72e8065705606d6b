import Foundation
import Generation
import Inference
import ServiceLifecycle

/// Shares one engine among concurrent requests with continuous batching: each engine step runs one
/// token for every sequence that is decoding plus chunks of waiting prompts, up to the engine's
/// batch size, so a long prompt never stalls the others for long and aggregate throughput grows
/// with concurrency. Every sequence's result is what it would be alone (the engine's rows are
/// independent), whatever else is running.
///
/// The decisions (admission, step planning, cancellation, drain) are `SchedulerState`'s; this type
/// owns the engine, its sessions and the loop thread (a step blocks on the CPU for milliseconds: it
/// must not sit on Swift's cooperative pool) and carries those decisions out. It is a ServiceLifecycle
/// `Service`: on graceful shutdown it stops admitting, lets running and queued requests finish until
/// the drain deadline, fails what is left, and returns.
public final class InferenceScheduler: @unchecked Sendable, Service {
    /// What one request asks for.
    public struct Request: Sendable {
        public var promptIDs: [Int]
        public var options: GenerationOptions
        /// Who asked (an API key's label), for the per-key limit; nil without keys.
        public var key: String?
        /// Keep the logits of the prompt's end, so that later submissions with the same prompt
        /// (`submit(_:sharingPromptOf:)`: the other choices of a request with n > 1) copy its
        /// evaluation instead of repeating it.
        public var sharesPrompt: Bool
        /// Send `.text` and `.logprobs` events as the tokens come (a streamed response). Without, only
        /// the end (`.finished` or `.failed`): its consumer is not woken for every token, which on a
        /// small machine takes a core from the engine while it generates.
        public var streams: Bool
        public init(promptIDs: [Int], options: GenerationOptions, key: String? = nil, sharesPrompt: Bool = false, streams: Bool = true) {
            self.promptIDs = promptIDs
            self.options = options
            self.key = key
            self.sharesPrompt = sharesPrompt
            self.streams = streams
        }
    }

    /// The end of a request.
    public struct Completion: Sendable {
        public var promptTokens: Int
        public var completionTokens: Int
        public var text: String
        public var stopReason: GenerationResult.StopReason
        /// With `options.logprobs`: one entry per generated token (else empty).
        public var logprobs: [TokenLogprob] = []
        /// From submission to the first generated text (or to the end, if there was none).
        public var timeToFirstToken: Duration
        /// The generation loop's own time: from the step that chose the first token to the step that
        /// chose the last one (`completionTokens - 1` decoding steps; zero with fewer than two tokens).
        public var decodeTime: Duration = .zero
    }

    public enum Event: Sendable {
        /// Generated text, in UTF-8-safe pieces, in order.
        case text(String)
        /// With `options.logprobs`: the entries of the tokens generated since the last ones, sent
        /// before the text those tokens produced (which may come in a later event, or only at the end).
        case logprobs([TokenLogprob])
        case finished(Completion)
        /// The request could not complete (the node is stopping, or the engine refused it).
        case failed(String)
    }

    /// A queued request: its events, and a way to cancel it (a client that went away).
    public struct Submission: Sendable {
        public let events: AsyncStream<Event>
        public let cancel: @Sendable () -> Void
        let id: UInt64
    }

    public enum SubmitError: Error, Sendable, Equatable {
        case queueFull
        case draining
        /// The caller's key holds this many requests already.
        case keyLimit(Int)
        /// The request cannot run (empty prompt, bad options): the reason.
        case invalid(String)
    }

    /// A job's side the state machine does not hold: its generation and its stream.
    final class Job {
        var generation: GenerationState
        let continuation: AsyncStream<Event>.Continuation
        let submitted = ContinuousClock.now
        var firstText: Duration?
        /// When the first and the latest token were chosen (`Completion.decodeTime`).
        var firstTokenAt: ContinuousClock.Instant?
        var lastTokenAt: ContinuousClock.Instant?
        /// The token to evaluate at the next decode step.
        var next: Int?
        /// With `limits.keepsAnswers`: the tokens its decode steps evaluated, in order.
        var answerRows: [Int] = []
        /// Log-probability entries already sent.
        var sentLogprobs = 0
        /// `Request.sharesPrompt`; then the logits after the prompt, once evaluated.
        let sharesPrompt: Bool
        var promptLogits: [Float]?
        /// `Request.streams`.
        let streams: Bool

        init(generation: GenerationState, continuation: AsyncStream<Event>.Continuation, sharesPrompt: Bool = false, streams: Bool = true) {
            self.generation = generation
            self.continuation = continuation
            self.sharesPrompt = sharesPrompt
            self.streams = streams
        }
    }

    private let engine: LlamaEngine
    private let sessions: [LlamaSession]
    public let tokenizer: Tokenizer
    public let limits: SchedulerState.Limits
    /// How long a drain may take before what is left is failed.
    public let drainTimeout: Duration
    private let condition = NSCondition()
    // Touched under `condition` only.
    private var state: SchedulerState
    private var jobs: [UInt64: Job] = [:]
    private var nextID: UInt64 = 1
    private var stopped = false
    private var loopRunning = false
    private var loopDone: [@Sendable () -> Void] = []
    private var sharedPrompts = 0
    private let observer: (any SchedulerObserver)?

    /// A scheduler with `limits.parallel` sessions of `contextLength` positions on `engine`.
    public init(engine: LlamaEngine, tokenizer: Tokenizer, limits: SchedulerState.Limits, contextLength: Int,
                drainTimeout: Duration = .seconds(30), observer: (any SchedulerObserver)? = nil) throws(InferenceError) {
        self.engine = engine
        self.tokenizer = tokenizer
        self.limits = SchedulerState.Limits(parallel: limits.parallel, queueDepth: limits.queueDepth, perKeyLimit: limits.perKeyLimit,
                                            batchTokens: min(limits.batchTokens, engine.batchCapacity), promptCache: limits.promptCache,
                                            keepsAnswers: limits.keepsAnswers, decodesAsPromptRows: limits.decodesAsPromptRows)
        self.drainTimeout = drainTimeout
        self.observer = observer
        // Per chunk size, the first last-position from which a chunk runs in F32 (the engine's
        // answer grows with the position): a table the state's pure decisions can read.
        let floatFrom = (0 ... self.limits.batchTokens).map { rows in
            var low = 0, high = contextLength  // answer in low...high; contextLength: never
            while low < high {
                let mid = (low + high) / 2
                if engine.promptChunkRunsInFloat(rows: rows, lastPosition: mid) { high = mid } else { low = mid + 1 }
            }
            return low
        }
        state = SchedulerState(limits: self.limits) { rows, last in rows < floatFrom.count && last >= floatFrom[rows] }
        var sessions: [LlamaSession] = []
        for _ in 0 ..< self.limits.parallel {
            let session = try engine.makeSession(contextLength: contextLength)
            session.decodesAsPromptRows = self.limits.decodesAsPromptRows
            sessions.append(session)
        }
        self.sessions = sessions
    }

    // MARK: Service

    /// Runs the loop until graceful shutdown, then drains for up to `drainTimeout`.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await drain(deadline: drainTimeout)
    }

    /// Starts the loop thread (idempotent; `run` calls it).
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard !loopRunning && !stopped else { return }
        loopRunning = true
        let t = Thread { [self] in loop() }
        t.name = "securenode-scheduler"
        t.stackSize = 16 << 20
        t.start()
    }

    /// Stops admitting (new requests get `.draining`), lets running and queued requests finish for
    /// up to `deadline`, then fails what is left; returns once the loop has stopped.
    public func drain(deadline: Duration) async {
        guard beginDrain(deadline: deadline) else { return }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            whenLoopEnds { done.resume() }
        }
    }

    /// Returns whether the loop is running (and will end by the deadline).
    private func beginDrain(deadline: Duration) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        state.beginDrain(deadline: ContinuousClock.now + deadline)
        condition.signal()
        return loopRunning
    }

    private func whenLoopEnds(_ done: @escaping @Sendable () -> Void) {
        condition.lock()
        if loopRunning {
            loopDone.append(done)
            condition.unlock()
        } else {
            condition.unlock()
            done()
        }
    }

    /// New requests get `.draining` from now on; nothing else changes until `drain`.
    public func stopAccepting() {
        condition.lock()
        state.beginDrain(deadline: .now + .seconds(365 * 24 * 3600))
        condition.unlock()
    }

    /// Whether new requests are accepted.
    public var isAccepting: Bool {
        condition.lock()
        defer { condition.unlock() }
        return state.accepting
    }

    /// Prompts copied from another choice's evaluation instead of evaluated (for tests and metrics).
    public var promptsShared: Int {
        condition.lock()
        defer { condition.unlock() }
        return sharedPrompts
    }

    /// Requests waiting, and running.
    public var counts: (waiting: Int, running: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (state.waitingCount, state.runningCount)
    }

    // MARK: Requests

    /// Queues a request; its events arrive on the returned stream. Ending the stream early (the
    /// consumer stops iterating) cancels the request.
    ///
    /// With `source` (an earlier submission of the same prompt with `sharesPrompt`, still queued
    /// or running), this one does not evaluate the prompt: it copies the source's KV cache rows
    /// once the source has evaluated them, and starts from the same logits (the same result, bit
    /// for bit; if the source ends first, it evaluates the prompt itself).
    public func submit(_ request: Request, sharingPromptOf source: Submission? = nil) throws(SubmitError) -> Submission {
        let generation: GenerationState
        do {
            generation = try GenerationState(promptIDs: request.promptIDs, options: request.options, tokenizer: tokenizer)
        } catch {
            throw .invalid(error.reason)
        }
        let (stream, continuation) = AsyncStream<Event>.makeStream()
        condition.lock()
        let id = nextID
        do {
            let sharable = source.flatMap { s in jobs[s.id].map { $0.sharesPrompt && $0.generation.promptIDs == request.promptIDs } } ?? false
            try state.admit(id: id, key: request.key, prompt: request.promptIDs, promptSource: sharable ? source?.id : nil)
        } catch {
            condition.unlock()
            switch error {
            case .draining: throw .draining
            case .queueFull: throw .queueFull
            case let .keyLimit(n): throw .keyLimit(n)
            case .emptyPrompt: throw .invalid("the prompt is empty")
            }
        }
        nextID += 1
        jobs[id] = Job(generation: generation, continuation: continuation, sharesPrompt: request.sharesPrompt, streams: request.streams)
        condition.signal()
        condition.unlock()
        continuation.onTermination = { [weak self] _ in self?.cancel(id) }
        return Submission(events: stream, cancel: { [weak self] in self?.cancel(id) }, id: id)
    }

    func cancel(_ id: UInt64) {
        condition.lock()
        if state.cancel(id) { condition.signal() }
        condition.unlock()
    }

    /// Cancels every queued and running request: a revoked node stops answering at once (streams
    /// end; what was generated before is not withdrawn).
    public func cancelAll() {
        condition.lock()
        state.cancelAll()
        condition.signal()
        condition.unlock()
    }

    // MARK: - The loop

    private func loop() {
        while true {
            condition.lock()
            while state.isIdle && !state.hasWarmWork && !stopped && state.accepting { condition.wait() }
            let expired = state.expire(now: .now)
            let expiredJobs = expired.compactMap { jobs.removeValue(forKey: $0) }
            if state.isIdle && !state.accepting { stopped = true }
            if stopped {
                let left = jobs.values
                jobs = [:]
                loopRunning = false
                let waiters = loopDone
                loopDone = []
                condition.unlock()
                for job in expiredJobs + left { fail(job, "the node is shutting down: the drain deadline passed") }
                observer?.queue(waiting: 0, running: 0)
                for waiter in waiters { waiter() }
                return
            }
            var plan = state.plan()
            // Keep the reused prompt prefix's KV rows (the prompt cache), forget the rest. Only this
            // thread touches the sessions.
            for start in plan.started {
                let session = sessions[start.slot]
                if start.reused > 0, (try? session.rewind(to: start.reused)) != nil {
                    observer?.promptCacheHit(tokens: start.reused)
                } else {
                    session.reset()
                    if start.reused > 0 {
                        state.forgetReuse(start.id)
                        plan = state.replan(plan)
                    }
                }
            }
            let dropped = plan.dropped.compactMap { jobs.removeValue(forKey: $0) }
            let work = plan.items.map { (item: $0, job: jobs[$0.id]!) }
            var sources: [UInt64: Job] = [:]
            for item in plan.items {
                if case let .sharePrompt(source, _) = item.work { sources[source] = jobs[source] }
            }
            observer?.queue(waiting: state.waitingCount, running: state.runningCount)
            condition.unlock()

            for job in expiredJobs { fail(job, "the node is shutting down: the drain deadline passed") }
            for job in dropped {
                job.continuation.finish()
                observer?.cancelled()
            }
            if !work.isEmpty { runStep(work, sources: sources) }
            if let warm = plan.warm { runWarm(warm) }
        }
    }

    /// Idle time: a piece of a finished answer evaluated as prompt rows in its slot's session, so
    /// that the chat's next turn, which carries the answer in its history, reuses them (the same
    /// bits as recomputing them: exact prompt rows). A request that arrives meanwhile waits for at
    /// most this piece.
    private func runWarm(_ warm: SchedulerState.Warm) {
        let session = sessions[warm.slot]
        let done = Result { () throws(InferenceError) in
            if session.position != warm.from { try session.rewind(to: warm.from) }
            _ = try engine.step([.init(session: session, tokens: warm.tokens, promptLength: warm.promptLength, wantsLogits: false)])
        }
        condition.lock()
        if case .success = done { state.warmed(warm) } else { state.warmFailed(warm) }
        condition.unlock()
        if case .success = done { observer?.promptCacheWarmed(tokens: warm.tokens.count) }
    }

    /// One engine step. A step the engine refuses changes nothing (the engine checks every item
    /// first); then each item runs alone, so that only the item at fault fails.
    /// `.sharePrompt` items run first, without the engine: the source's prompt rows are copied and
    /// its prompt logits taken (`sources`: the jobs they copy from).
    private func runStep(_ all: [(item: SchedulerState.Item, job: Job)], sources: [UInt64: Job]) {
        var work: [(item: SchedulerState.Item, job: Job)] = []
        var results: [Result<[Float]?, InferenceError>] = []
        var engineWork: [(item: SchedulerState.Item, job: Job)] = []
        for entry in all {
            guard case let .sharePrompt(source, sourceSlot) = entry.item.work else {
                engineWork.append(entry)
                continue
            }
            work.append(entry)
            results.append(Result { () throws(InferenceError) -> [Float]? in
                guard let logits = sources[source]?.promptLogits else {
                    throw InferenceError(.invalidArgument, "the shared prompt's logits are missing")
                }
                try sessions[entry.item.slot].copyPrefix(of: sessions[sourceSlot], count: entry.job.generation.promptIDs.count)
                return logits
            })
        }
        // The exact items in one pass; an F32 chunk in a pass of its own (its rows depend on its pass).
        var passes = [engineWork.filter { !$0.item.inFloat }].filter { !$0.isEmpty }
        passes += engineWork.filter(\.item.inFloat).map { [$0] }
        for pass in passes {
            let items = pass.map(stepItem)
            work += pass
            do {
                results += try engine.step(items).map { .success($0) }
            } catch {
                results += items.map { item in Result { () throws(InferenceError) in try engine.step([item])[0] } }
            }
        }
        var finished: [(UInt64, Job, String?)] = []
        for ((item, job), result) in zip(work, results) {
            switch result {
            case let .failure(error):
                finished.append((item.id, job, error.reason))
            case let .success(logits):
                if limits.keepsAnswers, case .decode = item.work { job.answerRows.append(job.next!) }
                guard let logits else { continue }
                if job.sharesPrompt, case .prompt(_, true) = item.work { job.promptLogits = logits }
                let step = job.generation.accept(logits: logits)
                let now = ContinuousClock.now
                if job.firstTokenAt == nil { job.firstTokenAt = now }
                job.lastTokenAt = now
                if job.streams, job.generation.options.logprobs != nil, job.generation.logprobs.count > job.sentLogprobs {
                    job.continuation.yield(.logprobs(Array(job.generation.logprobs[job.sentLogprobs...])))
                    job.sentLogprobs = job.generation.logprobs.count
                }
                if !step.text.isEmpty {
                    if job.firstText == nil {
                        job.firstText = ContinuousClock.now - job.submitted
                        observer?.firstToken(after: job.firstText!)
                    }
                    if job.streams { job.continuation.yield(.text(step.text)) }
                }
                let session = sessions[item.slot]
                if let next = step.next, session.position < session.contextLength {
                    job.next = next
                } else {
                    finished.append((item.id, job, nil))
                }
            }
        }
        condition.lock()
        for ((item, _), result) in zip(work, results) {
            guard case .success = result else { continue }
            state.completed(item)
            if case .sharePrompt = item.work { sharedPrompts += 1 }
        }
        for (id, job, failure) in finished {
            // Generated tokens past the context could not be kept.
            let room = state.jobs[id]?.slot.map { max(0, sessions[$0].contextLength - job.generation.promptIDs.count) } ?? 0
            state.finish(id, generated: failure == nil ? Array(job.generation.outputIDs.prefix(room)) : [],
                         answerRows: failure == nil ? job.answerRows : [])
            jobs[id] = nil
        }
        condition.unlock()
        for (_, job, failure) in finished {
            if let failure { fail(job, failure) } else { complete(job) }
        }
    }

    private func stepItem(_ entry: (item: SchedulerState.Item, job: Job)) -> LlamaEngine.StepItem {
        let session = sessions[entry.item.slot]
        switch entry.item.work {
        case .decode:
            // With `limits.decodesAsPromptRows`, the session computes the row as the last row of a
            // prompt holding everything so far, as a later turn's recomputation would compute it.
            return .init(session: session, tokens: [entry.job.next!])
        case let .prompt(range, last):
            let prompt = entry.job.generation.promptIDs
            return .init(session: session, tokens: Array(prompt[range]), promptLength: prompt.count, wantsLogits: last,
                         inFloat: entry.item.inFloat)
        case .sharePrompt:
            preconditionFailure("shared prompts are copied, not stepped")
        }
    }

    private func complete(_ job: Job) {
        job.generation.cancel()
        let result = job.generation.result
        observer?.completed(promptTokens: result.promptIDs.count, completionTokens: result.outputIDs.count)
        job.continuation.yield(.finished(Completion(promptTokens: result.promptIDs.count, completionTokens: result.outputIDs.count,
                                                    text: result.text, stopReason: result.stopReason, logprobs: job.generation.logprobs,
                                                    timeToFirstToken: job.firstText ?? (ContinuousClock.now - job.submitted),
                                                    decodeTime: job.firstTokenAt.flatMap { first in job.lastTokenAt.map { $0 - first } } ?? .zero)))
        job.continuation.finish()
    }

    private func fail(_ job: Job, _ reason: String) {
        job.continuation.yield(.failed(reason))
        job.continuation.finish()
    }
}

/// Receives the scheduler's measurements (metrics).
public protocol SchedulerObserver: Sendable {
    func queue(waiting: Int, running: Int)
    func firstToken(after: Duration)
    func completed(promptTokens: Int, completionTokens: Int)
    /// A request was dropped because its client went away.
    func cancelled()
    /// A request started with `tokens` prompt tokens reused from the prompt cache.
    func promptCacheHit(tokens: Int)
    /// An idle slot evaluated `tokens` tokens of its last answer as prompt rows.
    func promptCacheWarmed(tokens: Int)
}
