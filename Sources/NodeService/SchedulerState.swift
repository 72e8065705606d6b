/// The scheduler's decisions, and nothing else: which requests are admitted, which wait, which
/// run, what the next engine step evaluates, what a cancellation or a drain does. No threads, no
/// clocks of its own, no engine: `InferenceScheduler` feeds it events and carries out its plans, and
/// the tests drive it directly.
///
/// Invariants (checked by `SchedulerStateTests`):
/// - at most `limits.parallel` jobs run (each holds one slot), at most `limits.queueDepth` wait;
/// - with `limits.perKeyLimit`, no API key has more than that many jobs running or waiting;
/// - a step holds at most `limits.batchTokens` tokens: one for every decoding job first, then
///   prompt chunks of running jobs in admission order;
/// - a job with an empty prompt is never admitted (it would never produce a step);
/// - a job admitted with a `promptSource` (another choice of the same request, same prompt) gets no
///   prompt chunks: once the source has evaluated the prompt, one `.sharePrompt` item copies it;
///   if the source ends first, the job evaluates its prompt itself;
/// - once draining, nothing new is admitted; at the drain deadline every job left is failed.
public struct SchedulerState: Sendable {
    public struct Limits: Sendable, Equatable {
        public var parallel: Int
        public var queueDepth: Int
        /// Jobs (running or waiting) one API key may hold at once; nil: no limit.
        public var perKeyLimit: Int?
        /// Tokens in one engine step.
        public var batchTokens: Int

        public init(parallel: Int, queueDepth: Int, perKeyLimit: Int? = nil, batchTokens: Int) {
            self.parallel = max(1, parallel)
            self.queueDepth = max(0, queueDepth)
            self.perKeyLimit = perKeyLimit.map { max(1, $0) }
            self.batchTokens = max(1, batchTokens)
        }
    }

    public enum AdmitError: Error, Sendable, Equatable {
        /// The node is draining (SIGTERM) or stopped.
        case draining
        /// `parallel` running and `queueDepth` waiting already.
        case queueFull
        /// This key holds `perKeyLimit` jobs already.
        case keyLimit(Int)
        /// No prompt tokens: nothing to evaluate.
        case emptyPrompt
    }

    /// What the state knows of one job.
    public struct Job: Sendable, Equatable {
        public let id: UInt64
        public let key: String?
        public let promptCount: Int
        /// Prompt tokens already evaluated.
        public var promptOffset = 0
        /// The prompt is evaluated and the job generates one token per step.
        public var decoding = false
        /// The engine session it holds while running.
        public var slot: Int?
        public var cancelled = false
        /// The job whose evaluated prompt (the same tokens) this one copies instead of evaluating it.
        public var promptSource: UInt64?
    }

    /// One part of a step.
    public struct Item: Sendable, Equatable {
        public enum Work: Sendable, Equatable {
            /// The job's next generated token.
            case decode
            /// Prompt tokens `range`; `last`: the chunk ends the prompt (its logits are wanted).
            case prompt(range: Range<Int>, last: Bool)
            /// No engine work: copy the whole prompt's KV cache from job `source` (in `sourceSlot`),
            /// and take its last prompt logits.
            case sharePrompt(source: UInt64, sourceSlot: Int)
        }
        public let id: UInt64
        public let slot: Int
        public let work: Work

        public var tokenCount: Int {
            switch work {
            case .decode: 1
            case let .prompt(range, _): range.count
            case .sharePrompt: 0
            }
        }
    }

    /// What to do now.
    public struct Plan: Sendable, Equatable {
        /// Jobs dropped because they were cancelled: end their streams.
        public var dropped: [UInt64] = []
        /// Jobs that got a slot this turn (their session must be reset).
        public var started: [UInt64] = []
        /// The engine step, possibly empty.
        public var items: [Item] = []
    }

    public let limits: Limits
    public private(set) var jobs: [UInt64: Job] = [:]
    /// Waiting jobs in arrival order.
    public private(set) var waiting: [UInt64] = []
    /// Running jobs in admission order.
    public private(set) var running: [UInt64] = []
    private var freeSlots: [Int]
    private var perKey: [String: Int] = [:]
    public private(set) var accepting = true
    public private(set) var drainDeadline: ContinuousClock.Instant?

    public init(limits: Limits) {
        self.limits = limits
        freeSlots = Array((0 ..< limits.parallel).reversed())
    }

    public var waitingCount: Int { waiting.count }
    public var runningCount: Int { running.count }
    public var isIdle: Bool { waiting.isEmpty && running.isEmpty }
    public func jobs(forKey key: String) -> Int { perKey[key] ?? 0 }

    // MARK: Events

    /// A new request; refused without any change to the state when it cannot be taken.
    /// `promptSource`: a job (waiting or running) with the same prompt whose evaluation this one will copy.
    public mutating func admit(id: UInt64, key: String?, promptCount: Int, promptSource: UInt64? = nil) throws(AdmitError) {
        guard accepting else { throw .draining }
        guard promptCount > 0 else { throw .emptyPrompt }
        guard waiting.count + running.count < limits.parallel + limits.queueDepth else { throw .queueFull }
        if let key, let cap = limits.perKeyLimit, (perKey[key] ?? 0) >= cap { throw .keyLimit(cap) }
        precondition(jobs[id] == nil, "job ids are unique")
        jobs[id] = Job(id: id, key: key, promptCount: promptCount)
        if let source = promptSource, let s = jobs[source], s.promptCount == promptCount, s.promptSource == nil {
            jobs[id]!.promptSource = source
        }
        waiting.append(id)
        if let key { perKey[key, default: 0] += 1 }
    }

    /// A client went away (or the node was revoked): the job is dropped at the next plan.
    /// Returns false if the job is unknown (already finished).
    @discardableResult
    public mutating func cancel(_ id: UInt64) -> Bool {
        guard jobs[id] != nil else { return false }
        jobs[id]!.cancelled = true
        return true
    }

    /// Cancels every job.
    public mutating func cancelAll() {
        for id in jobs.keys { jobs[id]!.cancelled = true }
    }

    /// The next step: drops cancelled jobs, gives free slots to waiting jobs in arrival order, and
    /// fills the step with one token per decoding job, then prompt chunks.
    public mutating func plan() -> Plan {
        var plan = Plan()
        for id in waiting + running where jobs[id]!.cancelled {
            plan.dropped.append(id)
            remove(id)
        }
        while !waiting.isEmpty, let slot = freeSlots.popLast() {
            let id = waiting.removeFirst()
            jobs[id]!.slot = slot
            running.append(id)
            plan.started.append(id)
        }
        var budget = limits.batchTokens
        for id in running where budget > 0 {
            let job = jobs[id]!
            if job.decoding {
                plan.items.append(Item(id: id, slot: job.slot!, work: .decode))
                budget -= 1
            }
        }
        for id in running where budget > 0 {
            let job = jobs[id]!
            guard !job.decoding, job.promptOffset < job.promptCount else { continue }
            if let source = job.promptSource {
                // Wait for the source's prompt; then copy it (costs no engine tokens).
                if let s = jobs[source], s.decoding, let sourceSlot = s.slot {
                    plan.items.append(Item(id: id, slot: job.slot!, work: .sharePrompt(source: source, sourceSlot: sourceSlot)))
                }
                continue
            }
            let end = min(job.promptCount, job.promptOffset + budget)
            plan.items.append(Item(id: id, slot: job.slot!, work: .prompt(range: job.promptOffset ..< end, last: end == job.promptCount)))
            budget -= end - job.promptOffset
        }
        return plan
    }

    /// The engine evaluated `item`: a prompt chunk advances the job (the last chunk starts its
    /// decoding); a decode step changes nothing here (the caller decides whether the job goes on).
    public mutating func completed(_ item: Item) {
        guard jobs[item.id] != nil else { return }
        switch item.work {
        case let .prompt(range, last):
            jobs[item.id]!.promptOffset = range.upperBound
            if last { jobs[item.id]!.decoding = true }
        case .sharePrompt:
            jobs[item.id]!.promptOffset = jobs[item.id]!.promptCount
            jobs[item.id]!.decoding = true
        case .decode:
            break
        }
    }

    /// The job ended (finished, failed, or dropped by the caller): its slot is free.
    public mutating func finish(_ id: UInt64) {
        remove(id)
    }

    /// Stops admitting; jobs left at `deadline` are failed by `expire(now:)`.
    public mutating func beginDrain(deadline: ContinuousClock.Instant) {
        accepting = false
        if drainDeadline == nil || deadline < drainDeadline! { drainDeadline = deadline }
    }

    /// Past the drain deadline: removes every job and returns them (to fail). Empty otherwise.
    public mutating func expire(now: ContinuousClock.Instant) -> [UInt64] {
        guard let drainDeadline, now >= drainDeadline else { return [] }
        let left = waiting + running
        for id in left { remove(id) }
        return left
    }

    private mutating func remove(_ id: UInt64) {
        guard let job = jobs.removeValue(forKey: id) else { return }
        // Jobs still waiting for this one's prompt evaluate their own.
        for (other, j) in jobs where j.promptSource == id {
            jobs[other]!.promptSource = nil
        }
        waiting.removeAll { $0 == id }
        running.removeAll { $0 == id }
        if let slot = job.slot { freeSlots.append(slot) }
        if let key = job.key {
            perKey[key, default: 1] -= 1
            if perKey[key] == 0 { perKey[key] = nil }
        }
    }
}
