/// The scheduler's decisions, and nothing else: which requests are admitted, which wait, which
/// run, what the next engine step evaluates, what a cancellation or a drain does. No threads, no
/// clocks of its own, no engine: `InferenceScheduler` feeds it events and carries out its plans, and
/// the tests drive it directly.
///
/// Invariants (checked by `SchedulerStateTests`):
/// - at most `limits.parallel` jobs run (each holds one slot), at most `limits.queueDepth` wait;
/// - with `limits.perKeyLimit`, no API key has more than that many jobs running or waiting;
/// - a step holds at most `limits.batchTokens` tokens: one for every decoding job first, then
///   prompt chunks of running jobs in admission order; except that one F32 chunk (below) may join
///   a step whose budget is short of it, so that decoding jobs never starve a prompt;
/// - a prompt is cut into canonical chunks of `limits.batchTokens` tokens from its first position
///   (the last one shorter). A chunk the engine would evaluate in F32 (`runsInFloat(rows,
///   lastPosition)`: BLAS, whose rows depend on the whole pass) is always evaluated whole, as an
///   item of its own (`Item.inFloat`); every other row runs on the exact kernels, whose rows do not
///   depend on their batch, in pieces of any size. So a prompt's rows are the same bits whatever
///   else the node is doing, and whatever prefix the prompt cache supplied;
/// - a job with an empty prompt is never admitted (it would never produce a step);
/// - a job admitted with a `promptSource` (another choice of the same request, same prompt) gets no
///   prompt chunks: once the source has evaluated the prompt, one `.sharePrompt` item copies it;
///   if the source ends first, the job evaluates its prompt itself;
/// - once draining, nothing new is admitted; at the drain deadline every job left is failed;
/// - prompt cache: a free slot keeps the KV rows of the prompt it last evaluated. A job starts in the
///   free slot whose kept prompt shares the longest prefix with its own — only a slot last used by the
///   same API key (no leak between keys), the least recently used one when nothing matches — and skips
///   that prefix (always leaving at least one token to evaluate), cut back to the first chunk whose
///   kept rows were not computed as the new prompt computes it: an F32 chunk of the new prompt only
///   if the slot evaluated that very chunk in F32, an exact one only if none of its shared rows ran
///   in F32. Only prompt rows are kept, never one-token decoding rows (they use other attention
///   kernels than prompt rows), so the outputs equal recomputation bit for bit — and with
///   `limits.keepsAnswers` (decoding rows computed as prompt rows, `limits.decodesAsPromptRows`:
///   the service's default) a finished job's slot also keeps the rows of
///   exactly the tokens its decoding steps evaluated (counted here, `Job.decodedRows`) after its
///   prompt's. Memory is the slots' own: nothing extra is allocated;
/// - answer warming: a job that finished normally leaves its generated tokens with its slot; while
///   no job runs or waits (and not while draining), a plan carries a `warm` piece of at most
///   `warmPieceTokens` of them, evaluated as exact prompt rows after the kept prompt, so that the
///   chat's next turn reuses them. A job that takes the slot keeps what is warmed so far.
public struct SchedulerState: Sendable {
    public struct Limits: Sendable, Equatable {
        public var parallel: Int
        public var queueDepth: Int
        /// Jobs (running or waiting) one API key may hold at once; nil: no limit.
        public var perKeyLimit: Int?
        /// Tokens in one engine step.
        public var batchTokens: Int
        /// Reuse the KV rows of a shared prompt prefix kept in a free slot.
        public var promptCache: Bool
        /// A free slot keeps its last answer's rows after its prompt's, and a chat's next turn
        /// reuses them. Only with `promptCache` and `decodesAsPromptRows`.
        public var keepsAnswers: Bool
        /// Decoding rows are computed as prompt rows (`LlamaSession.decodesAsPromptRows`: the
        /// prompt rows' kernels), as a later recomputation of the text as one prompt computes them.
        public var decodesAsPromptRows: Bool

        /// `decodesAsPromptRows` nil: as `keepsAnswers` asks.
        public init(parallel: Int, queueDepth: Int, perKeyLimit: Int? = nil, batchTokens: Int, promptCache: Bool = true,
                    keepsAnswers: Bool = false, decodesAsPromptRows: Bool? = nil) {
            self.parallel = max(1, parallel)
            self.queueDepth = max(0, queueDepth)
            self.perKeyLimit = perKeyLimit.map { max(1, $0) }
            self.batchTokens = max(1, batchTokens)
            self.promptCache = promptCache
            self.decodesAsPromptRows = decodesAsPromptRows ?? keepsAnswers
            self.keepsAnswers = promptCache && keepsAnswers && self.decodesAsPromptRows
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
        public let prompt: [Int]
        public var promptCount: Int { prompt.count }
        /// Prompt tokens already evaluated.
        public var promptOffset = 0
        /// The prompt is evaluated and the job generates one token per step.
        public var decoding = false
        /// The engine session it holds while running.
        public var slot: Int?
        public var cancelled = false
        /// The job whose evaluated prompt (the same tokens) this one copies instead of evaluating it.
        public var promptSource: UInt64?
        /// Decoding steps evaluated (one generated token each).
        public var decodedRows = 0
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
        /// A whole canonical prompt chunk to evaluate in F32, alone in its engine pass.
        public var inFloat = false

        public init(id: UInt64, slot: Int, work: Work, inFloat: Bool = false) {
            self.id = id
            self.slot = slot
            self.work = work
            self.inFloat = inFloat
        }

        public var tokenCount: Int {
            switch work {
            case .decode: 1
            case let .prompt(range, _): range.count
            case .sharePrompt: 0
            }
        }
    }

    /// A job that got a slot: its session keeps the first `reused` positions (the prompt cache) and
    /// forgets the rest.
    public struct Start: Sendable, Equatable {
        public let id: UInt64
        public let slot: Int
        public let reused: Int
    }

    /// What a free slot's KV cache holds: the first tokens of the prompt it last evaluated.
    struct Kept: Sendable, Equatable {
        var key: String?
        var tokens: [Int] = []
        var lastUsed: UInt64 = 0
        /// The ranges of `tokens` evaluated in F32, each a whole canonical chunk of its prompt.
        var floatRanges: [Range<Int>] = []
        /// Tokens the slot's last job generated, still to evaluate as prompt rows after `tokens`
        /// while the node is idle (`Plan.warm`): a chat's next turn carries them in its history.
        var pending: [Int] = []
    }

    /// Idle work: evaluate `tokens` as prompt rows (exact kernels, `promptLength` for the attention
    /// kernels) in `slot`'s session from position `from`, dropping whatever rows it holds there.
    public struct Warm: Sendable, Equatable {
        public let slot: Int
        public let from: Int
        public let tokens: [Int]
        public let promptLength: Int
    }

    /// Most tokens of one warming pass: a request that arrives meanwhile waits for at most this.
    public static let warmPieceTokens = 8

    /// What to do now.
    public struct Plan: Sendable, Equatable {
        /// Jobs dropped because they were cancelled: end their streams.
        public var dropped: [UInt64] = []
        /// Jobs that got a slot this turn.
        public var started: [Start] = []
        /// The engine step, possibly empty.
        public var items: [Item] = []
        /// With nothing else to do: a piece of a finished answer to evaluate as prompt rows.
        public var warm: Warm?
    }

    public let limits: Limits
    /// Whether a canonical prompt chunk of `rows` rows ending at `lastPosition` runs in F32
    /// (`LlamaEngine.promptChunkRunsInFloat`).
    public let runsInFloat: @Sendable (_ rows: Int, _ lastPosition: Int) -> Bool
    public private(set) var jobs: [UInt64: Job] = [:]
    /// Waiting jobs in arrival order.
    public private(set) var waiting: [UInt64] = []
    /// Running jobs in admission order.
    public private(set) var running: [UInt64] = []
    private var freeSlots: [Int]
    private var kept: [Kept]
    private var clock: UInt64 = 0
    private var perKey: [String: Int] = [:]
    /// Prompt tokens skipped thanks to the prompt cache, since start.
    public private(set) var reusedTokens = 0
    public private(set) var accepting = true
    public private(set) var drainDeadline: ContinuousClock.Instant?

    public init(limits: Limits, runsInFloat: @escaping @Sendable (_ rows: Int, _ lastPosition: Int) -> Bool = { _, _ in false }) {
        self.limits = limits
        self.runsInFloat = runsInFloat
        freeSlots = Array((0 ..< limits.parallel).reversed())
        kept = Array(repeating: Kept(), count: limits.parallel)
    }

    public var waitingCount: Int { waiting.count }
    public var runningCount: Int { running.count }
    public var isIdle: Bool { waiting.isEmpty && running.isEmpty }
    public func jobs(forKey key: String) -> Int { perKey[key] ?? 0 }

    // MARK: Events

    /// A new request; refused without any change to the state when it cannot be taken.
    /// `promptSource`: a job (waiting or running) with the same prompt whose evaluation this one will copy.
    public mutating func admit(id: UInt64, key: String?, prompt: [Int], promptSource: UInt64? = nil) throws(AdmitError) {
        guard accepting else { throw .draining }
        guard !prompt.isEmpty else { throw .emptyPrompt }
        guard waiting.count + running.count < limits.parallel + limits.queueDepth else { throw .queueFull }
        if let key, let cap = limits.perKeyLimit, (perKey[key] ?? 0) >= cap { throw .keyLimit(cap) }
        precondition(jobs[id] == nil, "job ids are unique")
        jobs[id] = Job(id: id, key: key, prompt: prompt)
        if let source = promptSource, let s = jobs[source], s.prompt == prompt, s.promptSource == nil {
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
        while !waiting.isEmpty, !freeSlots.isEmpty {
            let id = waiting.removeFirst()
            let (index, reused) = chooseSlot(for: jobs[id]!)
            let slot = freeSlots.remove(at: index)
            jobs[id]!.slot = slot
            jobs[id]!.promptOffset = reused
            reusedTokens += reused
            kept[slot] = Kept(key: jobs[id]!.key, tokens: Array(jobs[id]!.prompt[..<reused]), lastUsed: clock,
                              floatRanges: kept[slot].floatRanges.filter { $0.upperBound <= reused })
            running.append(id)
            plan.started.append(Start(id: id, slot: slot, reused: reused))
        }
        plan.items = items()
        if plan.items.isEmpty && running.isEmpty && accepting && limits.promptCache {
            plan.warm = nextWarm()
        }
        return plan
    }

    /// Whether a free slot holds answer tokens still to evaluate as prompt rows.
    public var hasWarmWork: Bool { accepting && limits.promptCache && kept.contains { !$0.pending.isEmpty } }

    /// The most recently used slot's next piece of answer to evaluate.
    private func nextWarm() -> Warm? {
        guard let slot = freeSlots.filter({ !kept[$0].pending.isEmpty }).max(by: { kept[$0].lastUsed < kept[$1].lastUsed }) else { return nil }
        let k = kept[slot]
        return Warm(slot: slot, from: k.tokens.count, tokens: Array(k.pending.prefix(Self.warmPieceTokens)),
                    promptLength: k.tokens.count + k.pending.count)
    }

    /// `warm` was evaluated: its rows join what the slot keeps.
    public mutating func warmed(_ warm: Warm) {
        guard freeSlots.contains(warm.slot), kept[warm.slot].tokens.count == warm.from,
              kept[warm.slot].pending.starts(with: warm.tokens) else { return }
        kept[warm.slot].tokens += warm.tokens
        kept[warm.slot].pending.removeFirst(warm.tokens.count)
    }

    /// `warm` could not be evaluated: the slot keeps its rows up to `warm.from` and warms no more.
    public mutating func warmFailed(_ warm: Warm) {
        guard freeSlots.contains(warm.slot) else { return }
        kept[warm.slot].pending = []
    }

    /// The same plan with its step built again (after `forgetReuse`).
    public func replan(_ plan: Plan) -> Plan {
        var plan = plan
        plan.items = items()
        return plan
    }

    /// One token for every decoding job, then prompt chunks in admission order, within the budget;
    /// the first F32 chunk reached is taken whole even over the budget (at most one per step).
    private func items() -> [Item] {
        var items: [Item] = []
        var budget = limits.batchTokens
        var tookFloat = false
        for id in running where budget > 0 {
            let job = jobs[id]!
            if job.decoding {
                items.append(Item(id: id, slot: job.slot!, work: .decode))
                budget -= 1
            }
        }
        for id in running where budget > 0 || !tookFloat {
            let job = jobs[id]!
            guard !job.decoding, job.promptOffset < job.promptCount else { continue }
            if let source = job.promptSource {
                // Wait for the source's prompt; then copy it (costs no engine tokens).
                if let s = jobs[source], s.decoding, let sourceSlot = s.slot {
                    items.append(Item(id: id, slot: job.slot!, work: .sharePrompt(source: source, sourceSlot: sourceSlot)))
                }
                continue
            }
            let chunk = chunk(of: job.prompt.count, at: job.promptOffset)
            // An F32 chunk is reached at its first row (the prompt cache reuses no part of one).
            if job.promptOffset == chunk.lowerBound && isFloat(chunk) {
                guard !tookFloat else { continue }
                items.append(Item(id: id, slot: job.slot!, work: .prompt(range: chunk, last: chunk.upperBound == job.promptCount), inFloat: true))
                tookFloat = true
                budget = max(0, budget - chunk.count)
                continue
            }
            guard budget > 0 else { continue }
            var end = min(job.promptCount, job.promptOffset + budget)
            if end > chunk.upperBound && isFloat(self.chunk(of: job.prompt.count, at: chunk.upperBound)) { end = chunk.upperBound }
            items.append(Item(id: id, slot: job.slot!, work: .prompt(range: job.promptOffset ..< end, last: end == job.promptCount)))
            budget -= end - job.promptOffset
        }
        return items
    }

    /// The canonical chunk of a prompt of `count` tokens that holds position `position`.
    func chunk(of count: Int, at position: Int) -> Range<Int> {
        let start = position / limits.batchTokens * limits.batchTokens
        return start ..< min(count, start + limits.batchTokens)
    }

    /// Whether the engine evaluates `chunk` in F32.
    func isFloat(_ chunk: Range<Int>) -> Bool {
        runsInFloat(chunk.count, chunk.upperBound - 1)
    }

    /// The engine evaluated `item`: a prompt chunk advances the job (the last chunk starts its
    /// decoding) and its rows join what the slot keeps; a decode step changes nothing here (the
    /// caller decides whether the job goes on).
    public mutating func completed(_ item: Item) {
        guard let job = jobs[item.id] else { return }
        switch item.work {
        case let .prompt(range, last):
            jobs[item.id]!.promptOffset = range.upperBound
            if last { jobs[item.id]!.decoding = true }
            // Rows of one-token prompts are computed like decoding rows: not kept.
            if job.promptCount > 1 && kept[item.slot].tokens.count == range.lowerBound {
                kept[item.slot].tokens += job.prompt[range]
                if item.inFloat { kept[item.slot].floatRanges.append(range) }
            }
        case let .sharePrompt(_, sourceSlot):
            jobs[item.id]!.promptOffset = job.promptCount
            jobs[item.id]!.decoding = true
            if job.promptCount > 1 {
                kept[item.slot].tokens = job.prompt
                kept[item.slot].floatRanges = kept[sourceSlot].floatRanges
            }
        case .decode:
            jobs[item.id]!.decodedRows += 1
        }
    }

    /// The free slot for `job` (an index into `freeSlots`) and how many prompt tokens it reuses:
    /// the longest kept prefix of the same key, else the least recently used slot.
    private mutating func chooseSlot(for job: Job) -> (index: Int, reused: Int) {
        clock += 1
        var best = (index: 0, reused: 0, lastUsed: UInt64.max)
        for (index, slot) in freeSlots.enumerated() {
            let k = kept[slot]
            var shared = 0
            if limits.promptCache && k.key == job.key {
                let limit = min(k.tokens.count, job.prompt.count - 1)
                while shared < limit && k.tokens[shared] == job.prompt[shared] { shared += 1 }
                shared = canonicalPrefix(of: job.prompt.count, shared: shared, kept: k)
            }
            if shared > best.reused || (shared == best.reused && k.lastUsed <= best.lastUsed) {
                best = (index, shared, k.lastUsed)
            }
        }
        return (best.index, best.reused)
    }

    /// How much of `shared` kept rows equal the rows the job's own prompt (of `count` tokens) would
    /// compute: chunk by chunk, an F32 chunk of the prompt only if the slot evaluated that very
    /// chunk in F32, an exact chunk only if none of its shared rows were evaluated in F32.
    private func canonicalPrefix(of count: Int, shared: Int, kept k: Kept) -> Int {
        var start = 0
        while start < shared {
            let chunk = chunk(of: count, at: start)
            if isFloat(chunk) {
                guard chunk.upperBound <= shared, k.floatRanges.contains(chunk) else { return start }
            } else if k.floatRanges.contains(where: { $0.overlaps(start ..< min(chunk.upperBound, shared)) }) {
                return start
            }
            start = chunk.upperBound
        }
        return shared
    }

    /// The session of `id` could not keep its reused prefix: evaluate its whole prompt.
    public mutating func forgetReuse(_ id: UInt64) {
        guard let job = jobs[id], let slot = job.slot else { return }
        reusedTokens -= job.promptOffset
        jobs[id]!.promptOffset = 0
        kept[slot].tokens = []
        kept[slot].floatRanges = []
    }

    /// The job ended (finished, failed, or dropped by the caller): its slot is free. `generated`:
    /// the tokens it generated, when it finished normally, which the slot then evaluates as prompt
    /// rows while the node is idle (`Plan.warm`), if it keeps the whole prompt. With
    /// `limits.keepsAnswers`, `answerRows`: the tokens its decoding steps evaluated, in order (one
    /// per step, the first of `generated`), which the slot keeps after the prompt; the rest of
    /// `generated` (the token sampled last) is warmed.
    public mutating func finish(_ id: UInt64, generated: [Int] = [], answerRows: [Int] = []) {
        if limits.promptCache, let job = jobs[id], let slot = job.slot, job.decoding, job.promptCount > 1,
           kept[slot].tokens.count == job.promptCount {
            if limits.keepsAnswers {
                // Only rows the slot's session really holds: one per decoding step, the tokens it was given.
                guard answerRows.count == job.decodedRows, generated.starts(with: answerRows) else { remove(id); return }
                kept[slot].tokens += answerRows
                kept[slot].pending = Array(generated.dropFirst(answerRows.count))
            } else {
                kept[slot].pending = generated
            }
        }
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
        if let slot = job.slot {
            freeSlots.append(slot)
            kept[slot].lastUsed = clock
        }
        if let key = job.key {
            perKey[key, default: 1] -= 1
            if perKey[key] == 0 { perKey[key] = nil }
        }
    }
}
