import Testing
@testable import NodeService

/// The scheduler's decisions, driven directly: no threads, no engine, no HTTP.
@Suite struct SchedulerStateTests {
    static let limits = SchedulerState.Limits(parallel: 2, queueDepth: 3, perKeyLimit: nil, batchTokens: 8)

    @Test func admitsUpToParallelPlusQueueThenRefuses() throws {
        var state = SchedulerState(limits: Self.limits)
        for id in 1 ... 5 { try state.admit(id: UInt64(id), key: nil, prompt: Array(1 ... 4)) }
        #expect(throws: SchedulerState.AdmitError.queueFull) { try state.admit(id: 6, key: nil, prompt: Array(1 ... 4)) }
        #expect(state.waitingCount == 5 && state.runningCount == 0)
        let plan = state.plan()
        #expect(plan.started.map(\.id) == [1, 2] && state.runningCount == 2 && state.waitingCount == 3)
    }

    @Test func neverAdmitsAnEmptyPromptThatWouldSpin() {
        var state = SchedulerState(limits: Self.limits)
        #expect(throws: SchedulerState.AdmitError.emptyPrompt) { try state.admit(id: 1, key: nil, prompt: []) }
        #expect(state.isIdle)
    }

    @Test func refusesOneKeyTakingEverySlot() throws {
        var state = SchedulerState(limits: .init(parallel: 4, queueDepth: 4, perKeyLimit: 2, batchTokens: 8))
        try state.admit(id: 1, key: "key-1", prompt: Array(1 ... 1))
        try state.admit(id: 2, key: "key-1", prompt: Array(1 ... 1))
        #expect(throws: SchedulerState.AdmitError.keyLimit(2)) { try state.admit(id: 3, key: "key-1", prompt: Array(1 ... 1)) }
        // Another key, and requests without a key, still get in.
        try state.admit(id: 4, key: "key-2", prompt: Array(1 ... 1))
        try state.admit(id: 5, key: nil, prompt: Array(1 ... 1))
        // A finished job gives its key room again.
        state.finish(1)
        try state.admit(id: 6, key: "key-1", prompt: Array(1 ... 1))
        #expect(state.jobs(forKey: "key-1") == 2)
    }

    @Test func stepsDecodeEveryRunningJobFirstThenChunkPromptsWithinTheBudget() throws {
        var state = SchedulerState(limits: .init(parallel: 3, queueDepth: 0, batchTokens: 8))
        try state.admit(id: 1, key: nil, prompt: Array(1 ... 3))
        var plan = state.plan()
        #expect(plan.items == [.init(id: 1, slot: plan.items[0].slot, work: .prompt(range: 0 ..< 3, last: true))])
        for item in plan.items { state.completed(item) }
        try state.admit(id: 2, key: nil, prompt: Array(1 ... 20))
        try state.admit(id: 3, key: nil, prompt: Array(1 ... 20))
        plan = state.plan()
        // Job 1 decodes (1 token); job 2 gets the other 7 tokens of the budget; job 3 waits for the next step.
        #expect(plan.items.map(\.id) == [1, 2])
        #expect(plan.items[0].work == .decode)
        #expect(plan.items[1].work == .prompt(range: 0 ..< 7, last: false))
        #expect(plan.items.reduce(0) { $0 + $1.tokenCount } == 8)
        for item in plan.items { state.completed(item) }
        plan = state.plan()
        #expect(plan.items.map(\.id) == [1, 2])
        #expect(plan.items[1].work == .prompt(range: 7 ..< 14, last: false))
    }

    /// A hostile client sends a huge prompt while 15 other streams decode (16 slots, 64-token steps):
    /// its prompt is evaluated in chunks of at most the budget left after one token for every
    /// decoding stream, so between any two of its chunks every other stream gets its next token;
    /// none waits for the whole prompt.
    @Test func refusesAHugePromptStallingTheOtherStreams() throws {
        var state = SchedulerState(limits: .init(parallel: 16, queueDepth: 4, batchTokens: 64, promptCache: false))
        for id in 1 ... 15 { try state.admit(id: UInt64(id), key: nil, prompt: Array(1 ... 64)) }
        while state.jobs.values.contains(where: { !$0.decoding }) {
            for item in state.plan().items { state.completed(item) }
        }
        let hostile: UInt64 = 99
        try state.admit(id: hostile, key: "attacker", prompt: (0 ..< 20_000).map { $0 % 1000 })
        var tokens = [UInt64: Int]()  // decode tokens of each other stream
        var chunks = 0
        while !(state.jobs[hostile]?.decoding ?? true) {
            let plan = state.plan()
            let chunk = plan.items.filter { $0.id == hostile }
            #expect(chunk.count == 1 && chunk[0].tokenCount <= 64 - 15, "the hostile prompt's chunk stays within the budget")
            #expect(Set(plan.items.filter { $0.work == .decode }.map(\.id)) == Set((1 ... 15).map(UInt64.init)),
                    "every other stream decodes in every step of the hostile prompt")
            for item in plan.items {
                if item.work == .decode { tokens[item.id, default: 0] += 1 }
                state.completed(item)
            }
            chunks += 1
        }
        #expect(chunks == (20_000 + 48) / 49)
        #expect(tokens.count == 15 && tokens.values.allSatisfy { $0 == chunks }, "one token per stream per hostile chunk")
    }

    @Test func abandonedRequestsFreeTheirSlotsAtTheNextStep() throws {
        var state = SchedulerState(limits: Self.limits)
        for id in 1 ... 4 { try state.admit(id: UInt64(id), key: "k", prompt: Array(1 ... 2)) }
        _ = state.plan()
        let cancelled = state.cancel(1) && state.cancel(3)
        let unknown = state.cancel(99)
        #expect(cancelled && !unknown)
        let plan = state.plan()
        #expect(Set(plan.dropped) == [1, 3])
        #expect(plan.started.map(\.id) == [4])
        #expect(state.runningCount == 2 && state.waitingCount == 0 && state.jobs(forKey: "k") == 2)
    }

    @Test func drainRefusesNewRequestsAndEndsAtItsDeadline() throws {
        var state = SchedulerState(limits: Self.limits)
        for id in 1 ... 4 { try state.admit(id: UInt64(id), key: nil, prompt: Array(1 ... 2)) }
        _ = state.plan()
        let start = ContinuousClock.now
        state.beginDrain(deadline: start + .seconds(30))
        #expect(throws: SchedulerState.AdmitError.draining) { try state.admit(id: 9, key: nil, prompt: Array(1 ... 1)) }
        #expect(state.expire(now: start + .seconds(29)).isEmpty)
        // Running and waiting jobs alike are failed at the deadline, however many there are.
        #expect(Set(state.expire(now: start + .seconds(30))) == [1, 2, 3, 4])
        #expect(state.isIdle)
    }

    /// Random admissions, cancellations, steps, finishes and warming (seeded), with random F32
    /// rules, with and without kept answers: the invariants hold after every event, and every row
    /// the prompt cache hands a job holds the job's own token and was computed the way the job's own
    /// prompt computes it (an independent record of every slot's rows: token, and exact, or which
    /// whole chunk ran in F32). Some finishes claim answer rows their slot did not evaluate.
    @Test func invariantsHoldUnderRandomEvents() throws {
        enum Row: Equatable { case exact, float(Range<Int>), decoding, warmed, answer }
        var rng = SplitMix64(seed: 0x5eed)
        var seen = (reusedFloat: 0, reusedWarmed: 0, floatChunks: 0, warmPieces: 0, reusedAnswer: 0, falseClaims: 0)
        for _ in 0 ..< 80 {
            let limits = SchedulerState.Limits(parallel: Int.random(in: 1 ... 4, using: &rng), queueDepth: Int.random(in: 0 ... 4, using: &rng),
                                               perKeyLimit: Bool.random(using: &rng) ? Int.random(in: 1 ... 3, using: &rng) : nil,
                                               batchTokens: Int.random(in: 4 ... 16, using: &rng), keepsAnswers: Bool.random(using: &rng))
            let (minimumRows, fromPosition) = (Int.random(in: 2 ... 20, using: &rng), Int.random(in: 8 ... 80, using: &rng))
            let runsInFloat: @Sendable (Int, Int) -> Bool = { rows, last in rows >= minimumRows || (rows > 1 && last >= fromPosition) }
            var state = SchedulerState(limits: limits, runsInFloat: runsInFloat)
            var rows = [[Row]](repeating: [], count: limits.parallel)  // what each slot's session holds
            var tokens = [[Int]](repeating: [], count: limits.parallel)  // and the tokens of those rows
            var decoded: [UInt64: [Int]] = [:]  // the tokens each job's decoding steps evaluated
            var next: UInt64 = 1
            // How the job's own prompt computes row i.
            func canonical(_ prompt: [Int], _ i: Int) -> Row {
                let chunk = state.chunk(of: prompt.count, at: i)
                return state.isFloat(chunk) ? .float(chunk) : .exact
            }
            for _ in 0 ..< 300 {
                switch Int.random(in: 0 ..< 10, using: &rng) {
                case 0 ..< 4:
                    let key = ["a", "b", nil][Int.random(in: 0 ..< 3, using: &rng)]
                    try? state.admit(id: next, key: key, prompt: (0 ..< Int.random(in: 0 ... 40, using: &rng)).map { $0 % 3 })
                    next += 1
                case 4:
                    if let id = state.jobs.keys.randomElement(using: &rng) { state.cancel(id) }
                case 5:
                    if let id = state.running.randomElement(using: &rng) {
                        // Prompts are 0, 1, 2, 0, ... (token i is i % 3); so are half of the decoded
                        // tokens. A false claim says the pattern where the slot evaluated another
                        // token, or one more row than it evaluated, so that a later prompt matches it.
                        let evaluated = decoded[id] ?? [], base = state.jobs[id]!.promptCount
                        let extra = (0 ..< Int.random(in: 0 ... 2, using: &rng)).map { (base + evaluated.count + $0) % 3 }
                        var claim = evaluated
                        if Int.random(in: 0 ..< 4, using: &rng) == 0 {
                            if let i = evaluated.indices.first(where: { evaluated[$0] != (base + $0) % 3 }) {
                                claim[i] = (base + i) % 3
                            } else {
                                claim.append((base + claim.count) % 3)
                            }
                            seen.falseClaims += 1
                        }
                        state.finish(id, generated: evaluated + extra, answerRows: claim)
                    }
                default:
                    let plan = state.plan()
                    for start in plan.started {
                        let prompt = state.jobs[start.id]!.prompt
                        #expect(rows[start.slot].count >= start.reused)
                        // A warmed row, and a kept answer's row, is an exact prompt row.
                        #expect((0 ..< start.reused).allSatisfy { [rows[start.slot][$0]].map { $0 == .warmed || $0 == .answer ? .exact : $0 } == [canonical(prompt, $0)] },
                                "reused rows are computed as the job's own prompt computes them")
                        #expect(Array(tokens[start.slot].prefix(start.reused)) == Array(prompt.prefix(start.reused)), "reused rows hold the job's own tokens")
                        if rows[start.slot].prefix(start.reused).contains(where: { if case .float = $0 { true } else { false } }) { seen.reusedFloat += 1 }
                        if rows[start.slot].prefix(start.reused).contains(.warmed) { seen.reusedWarmed += 1 }
                        if rows[start.slot].prefix(start.reused).contains(.answer) { seen.reusedAnswer += 1 }
                        rows[start.slot] = Array(rows[start.slot].prefix(start.reused))
                        tokens[start.slot] = Array(tokens[start.slot].prefix(start.reused))
                    }
                    let floats = plan.items.filter(\.inFloat)
                    #expect(floats.count <= 1, "one F32 chunk per step")
                    seen.floatChunks += floats.count
                    #expect(plan.items.filter { !$0.inFloat }.reduce(0) { $0 + $1.tokenCount } <= limits.batchTokens)
                    #expect(Set(plan.items.map(\.slot)).count == plan.items.count, "a slot is used once per step")
                    #expect(!state.running.isEmpty == !plan.items.isEmpty, "running jobs always make progress")
                    #expect(plan.warm == nil || (state.running.isEmpty && state.waiting.isEmpty))
                    for item in plan.items {
                        let job = state.jobs[item.id]!
                        switch item.work {
                        case let .prompt(range, _):
                            #expect(rows[item.slot].count == range.lowerBound)
                            if item.inFloat {
                                #expect(range == state.chunk(of: job.promptCount, at: range.lowerBound) && range.lowerBound % limits.batchTokens == 0,
                                        "an F32 chunk is whole")
                            }
                            for i in range {
                                #expect(canonical(job.prompt, i) == (item.inFloat ? .float(range) : .exact), "row \(i) computed canonically")
                            }
                            rows[item.slot] += range.map { _ in item.inFloat ? .float(range) : .exact }
                            tokens[item.slot] += job.prompt[range]
                        case let .sharePrompt(_, sourceSlot):
                            rows[item.slot] = Array(rows[sourceSlot].prefix(job.promptCount))
                            tokens[item.slot] = Array(tokens[sourceSlot].prefix(job.promptCount))
                        case .decode:
                            // Not a prompt row (never reused), unless answers are kept: then it is
                            // computed as one.
                            let token = Bool.random(using: &rng) ? rows[item.slot].count % 3 : Int.random(in: 0 ..< 3, using: &rng)
                            rows[item.slot].append(limits.keepsAnswers ? .answer : .decoding)
                            tokens[item.slot].append(token)
                            decoded[item.id, default: []].append(token)
                        }
                        state.completed(item)
                    }
                    if let warm = plan.warm {
                        #expect(warm.tokens.count <= SchedulerState.warmPieceTokens && !warm.tokens.isEmpty)
                        rows[warm.slot] = Array(rows[warm.slot].prefix(warm.from)) + warm.tokens.map { _ in .warmed }
                        tokens[warm.slot] = Array(tokens[warm.slot].prefix(warm.from)) + warm.tokens
                        seen.warmPieces += 1
                        state.warmed(warm)
                    }
                }
                #expect(state.runningCount <= limits.parallel)
                #expect(state.runningCount + state.waitingCount <= limits.parallel + limits.queueDepth)
                if let cap = limits.perKeyLimit { #expect(state.jobs(forKey: "a") <= cap && state.jobs(forKey: "b") <= cap) }
                #expect(state.jobs.values.allSatisfy { $0.promptCount > 0 })
            }
        }
        // The random events did reach every case the record checks.
        #expect(seen.reusedFloat > 0 && seen.reusedWarmed > 0 && seen.floatChunks > 0 && seen.warmPieces > 0 && seen.reusedAnswer > 0
                && seen.falseClaims > 0, "\(seen)")
    }

    // MARK: Prompt cache

    /// Runs `id` through its whole prompt and finishes it, so its slot keeps the prompt.
    static func evaluateAndFinish(_ state: inout SchedulerState, _ id: UInt64) {
        while state.jobs[id]?.decoding == false {
            let plan = state.plan()
            for item in plan.items { state.completed(item) }
        }
        state.finish(id)
    }

    @Test func reusesTheLongestSharedPrefixOfTheSameKey() throws {
        var state = SchedulerState(limits: .init(parallel: 2, queueDepth: 2, batchTokens: 64))
        let system = Array(100 ..< 140)
        try state.admit(id: 1, key: "k", prompt: system + [1, 2, 3])
        Self.evaluateAndFinish(&state, 1)
        try state.admit(id: 2, key: "k", prompt: system + [7, 8])
        let plan = state.plan()
        #expect(plan.started.map(\.reused) == [40])
        #expect(plan.items.first?.work == .prompt(range: 40 ..< 42, last: true))
        #expect(state.reusedTokens == 40)
    }

    @Test func refusesPromptCacheLeakBetweenKeys() throws {
        var state = SchedulerState(limits: .init(parallel: 1, queueDepth: 2, batchTokens: 64))
        let secret = Array(200 ..< 260)
        try state.admit(id: 1, key: "key-1", prompt: secret + [1])
        Self.evaluateAndFinish(&state, 1)
        // Another key with the same prefix starts from scratch (and cannot time the difference).
        try state.admit(id: 2, key: "key-2", prompt: secret + [2])
        #expect(state.plan().started.map(\.reused) == [0])
        #expect(state.reusedTokens == 0)
    }

    @Test func alwaysLeavesOneTokenToEvaluateAndSkipsOneTokenPrompts() throws {
        var state = SchedulerState(limits: .init(parallel: 1, queueDepth: 2, batchTokens: 64))
        try state.admit(id: 1, key: nil, prompt: [5, 6, 7])
        Self.evaluateAndFinish(&state, 1)
        try state.admit(id: 2, key: nil, prompt: [5, 6, 7])
        let plan = state.plan()
        #expect(plan.started.map(\.reused) == [2])
        #expect(plan.items.first?.work == .prompt(range: 2 ..< 3, last: true))
        Self.evaluateAndFinish(&state, 2)
        // A one-token prompt's row is computed like a decoding row: never kept.
        try state.admit(id: 3, key: nil, prompt: [9])
        Self.evaluateAndFinish(&state, 3)
        try state.admit(id: 4, key: nil, prompt: [9, 1])
        #expect(state.plan().started.map(\.reused) == [0])
    }

    /// An engine model for the F32 rules: with 8-token steps, full chunks run in F32, and so does
    /// any chunk ending at position 40 or later.
    static let floatChunks: @Sendable (Int, Int) -> Bool = { rows, last in rows == 8 || last >= 40 }

    /// A client keeps the node decoding so that another prompt's chunks would be cut short by the
    /// budget: an F32 chunk is still evaluated whole, alone in its pass, so its rows are the bits
    /// they are without load; the budget then only holds back the exact pieces.
    @Test func decodingJobsNeverSplitAnF32Chunk() throws {
        var state = SchedulerState(limits: .init(parallel: 3, queueDepth: 0, batchTokens: 8), runsInFloat: Self.floatChunks)
        try state.admit(id: 1, key: nil, prompt: [1, 2])
        try state.admit(id: 2, key: nil, prompt: [3, 4])
        for item in state.plan().items { state.completed(item) }
        try state.admit(id: 3, key: nil, prompt: Array(1 ... 20))
        var plan = state.plan()
        #expect(plan.items.map(\.work) == [.decode, .decode, .prompt(range: 0 ..< 8, last: false)])
        #expect(plan.items.map(\.inFloat) == [false, false, true])
        for item in plan.items { state.completed(item) }
        plan = state.plan()
        #expect(plan.items.last == .init(id: 3, slot: plan.items[2].slot, work: .prompt(range: 8 ..< 16, last: false), inFloat: true))
        for item in plan.items { state.completed(item) }
        // The last chunk (4 tokens, ending at 19) is exact: a piece of the budget left.
        plan = state.plan()
        #expect(plan.items.last?.work == .prompt(range: 16 ..< 20, last: true) && plan.items.last?.inFloat == false)
    }

    /// Two prompts reach an F32 chunk in the same step: one takes it, the other waits (one F32 pass
    /// per step); an exact piece stops where the next F32 chunk starts.
    @Test func oneF32ChunkPerStepAndExactPiecesStopAtOne() throws {
        var state = SchedulerState(limits: .init(parallel: 2, queueDepth: 0, batchTokens: 8), runsInFloat: Self.floatChunks)
        try state.admit(id: 1, key: nil, prompt: Array(1 ... 16))
        try state.admit(id: 2, key: nil, prompt: Array(1 ... 16))
        var plan = state.plan()
        #expect(plan.items == [.init(id: 1, slot: plan.items[0].slot, work: .prompt(range: 0 ..< 8, last: false), inFloat: true)])
        // With exact chunks below position 40, a 44-token prompt runs 0..<40 exact and 40..<44 in F32.
        var exact = SchedulerState(limits: .init(parallel: 1, queueDepth: 0, batchTokens: 8),
                                   runsInFloat: { rows, last in last >= 40 })
        try exact.admit(id: 1, key: nil, prompt: Array(1 ... 44))
        var ranges: [Range<Int>] = []
        var floats: [Bool] = []
        while exact.jobs[1]?.decoding == false {
            plan = exact.plan()
            for item in plan.items {
                if case let .prompt(range, _) = item.work { ranges.append(range); floats.append(item.inFloat) }
                exact.completed(item)
            }
        }
        #expect(ranges == [0 ..< 8, 8 ..< 16, 16 ..< 24, 24 ..< 32, 32 ..< 40, 40 ..< 44])
        #expect(floats == [false, false, false, false, false, true])
    }

    /// A new prompt shares 12 tokens with a kept one: the first 8-token chunk ran in F32 and is
    /// shared whole, but the second is F32 in the new prompt, so only 8 tokens are reused: the
    /// new prompt's F32 chunk is evaluated whole, as recomputation would.
    @Test func promptCacheNeverSharesPartOfAnF32Chunk() throws {
        var state = SchedulerState(limits: .init(parallel: 1, queueDepth: 2, batchTokens: 8), runsInFloat: Self.floatChunks)
        let shared = Array(100 ..< 112)
        try state.admit(id: 1, key: nil, prompt: shared + [1, 2])  // chunks 0..<8 (F32), 8..<14 (exact)
        Self.evaluateAndFinish(&state, 1)
        try state.admit(id: 2, key: nil, prompt: shared + [7, 8, 9, 10, 11])  // 8..<17: chunk 8..<16 is F32
        var plan = state.plan()
        #expect(plan.started.map(\.reused) == [8])
        #expect(plan.items.first?.work == .prompt(range: 8 ..< 16, last: false) && plan.items.first?.inFloat == true)
        Self.evaluateAndFinish(&state, 2)
        // A third prompt whose second chunk is exact on both sides reuses up to the divergence.
        try state.admit(id: 3, key: nil, prompt: Array(shared[..<10]) + [4, 4])
        plan = state.plan()
        #expect(plan.started.map(\.reused) == [8])  // the kept chunk 8..<16 ran in F32: not shared in part
        Self.evaluateAndFinish(&state, 3)
        try state.admit(id: 4, key: nil, prompt: Array(shared[..<10]) + [4, 5])
        #expect(state.plan().started.map(\.reused) == [11])  // 8..<12 ran exact for job 3 and is exact here
    }

    /// Runs `id`'s prompt to its end, then finishes it as if it had generated `generated`.
    static func evaluate(_ state: inout SchedulerState, _ id: UInt64, generating generated: [Int]) {
        while state.jobs[id]?.decoding == false {
            for item in state.plan().items { state.completed(item) }
        }
        state.finish(id, generated: generated)
    }

    /// A finished answer is evaluated again as prompt rows, in small pieces, only while nothing
    /// else runs or waits; the chat's next turn, which carries the answer, then reuses it.
    @Test func warmsAFinishedAnswerOnlyWhenIdle() throws {
        var state = SchedulerState(limits: .init(parallel: 2, queueDepth: 2, batchTokens: 8))
        let prompt = Array(1 ... 5), answer = Array(10 ..< 30)
        try state.admit(id: 1, key: "k", prompt: prompt)
        Self.evaluate(&state, 1, generating: answer)
        #expect(state.hasWarmWork)
        // Another request runs: no warming until it is gone.
        try state.admit(id: 2, key: "k", prompt: [50, 51, 52])
        var plan = state.plan()
        #expect(plan.warm == nil && plan.started.map(\.reused) == [0])
        let slot1 = (0 ..< 2).first { $0 != plan.started[0].slot }!
        for item in plan.items { state.completed(item) }
        #expect(state.plan().warm == nil)  // job 2 decodes
        state.finish(2)  // no generated tokens (failed): its slot warms nothing
        var warmed = 0
        while let warm = state.plan().warm {
            #expect(warm.slot == slot1 && warm.from == 5 + warmed && warm.promptLength == 25)
            #expect(warm.tokens == Array(answer[warmed ..< min(20, warmed + SchedulerState.warmPieceTokens)]))
            state.warmed(warm)
            warmed += warm.tokens.count
        }
        #expect(warmed == 20 && !state.hasWarmWork)
        try state.admit(id: 3, key: "k", prompt: prompt + answer + [99, 98])
        plan = state.plan()
        #expect(plan.started.map(\.reused) == [25] && plan.started[0].slot == slot1)
    }

    /// A request arriving mid-warming takes the slot with what is warmed so far; the rest of the
    /// answer is dropped. Draining, another key, or the cache turned off: no warming, no sharing.
    @Test func warmingStopsWhenTheSlotIsTakenOrTheNodeDrains() throws {
        var state = SchedulerState(limits: .init(parallel: 1, queueDepth: 2, batchTokens: 8))
        let prompt = Array(1 ... 5), answer = Array(10 ..< 30)
        try state.admit(id: 1, key: "k", prompt: prompt)
        Self.evaluate(&state, 1, generating: answer)
        state.warmed(try #require(state.plan().warm))
        try state.admit(id: 2, key: "k", prompt: prompt + answer + [99])
        #expect(state.plan().started.map(\.reused) == [5 + SchedulerState.warmPieceTokens])
        #expect(!state.hasWarmWork)
        Self.evaluate(&state, 2, generating: answer)
        while let warm = state.plan().warm { state.warmed(warm) }
        // Another key shares nothing, warmed or not.
        try state.admit(id: 3, key: "other", prompt: prompt + answer + [99] + answer + [1])
        #expect(state.plan().started.map(\.reused) == [0])
        Self.evaluate(&state, 3, generating: answer)
        state.beginDrain(deadline: .now + .seconds(1))
        #expect(!state.hasWarmWork && state.plan().warm == nil)
        var off = SchedulerState(limits: .init(parallel: 1, queueDepth: 2, batchTokens: 8, promptCache: false))
        try off.admit(id: 1, key: nil, prompt: prompt)
        Self.evaluate(&off, 1, generating: answer)
        #expect(!off.hasWarmWork && off.plan().warm == nil)
    }

    /// Evaluates job `id`'s prompt, then `steps` decoding steps (one row each).
    static func decode(_ state: inout SchedulerState, _ id: UInt64, steps: Int) {
        while state.jobs[id]?.decoding == false {
            for item in state.plan().items { state.completed(item) }
        }
        for _ in 0 ..< steps {
            for item in state.plan().items where item.id == id { state.completed(item) }
        }
    }

    /// With kept answers, a finished job's slot keeps the rows its decoding steps evaluated after
    /// its prompt's, and the next turn reuses them at once (no idle time needed); only the token
    /// sampled last is left to warm.
    @Test func keepsTheAnswerRowsItsDecodingStepsEvaluated() throws {
        var state = SchedulerState(limits: .init(parallel: 2, queueDepth: 2, batchTokens: 8, keepsAnswers: true))
        let prompt = Array(1 ... 5), answer = Array(10 ..< 30)
        try state.admit(id: 1, key: "k", prompt: prompt)
        Self.decode(&state, 1, steps: 19)
        #expect(state.jobs[1]?.decodedRows == 19)
        state.finish(1, generated: answer, answerRows: Array(answer.dropLast()))
        let warm = try #require(state.plan().warm)
        #expect(warm.from == 24 && warm.tokens == [29] && warm.promptLength == 25)
        try state.admit(id: 2, key: "k", prompt: prompt + answer.dropLast() + [99])
        #expect(state.plan().started.map(\.reused) == [24])
    }

    /// A caller's claim of answer rows the slot did not evaluate (more or fewer than its decoding
    /// steps, or not the tokens it generated) keeps nothing past the prompt: a wrong claim would
    /// hand the next turn rows of other tokens.
    @Test func refusesAnswerRowsTheSlotDidNotEvaluate() throws {
        let prompt = Array(1 ... 5), answer = Array(10 ..< 30)
        for claim in [Array(answer.prefix(12)), Array(answer.prefix(8)), [77] + Array(answer.prefix(9))] {
            var state = SchedulerState(limits: .init(parallel: 1, queueDepth: 2, batchTokens: 8, keepsAnswers: true))
            try state.admit(id: 1, key: "k", prompt: prompt)
            Self.decode(&state, 1, steps: 10)
            state.finish(1, generated: answer, answerRows: claim)
            #expect(state.plan().warm == nil)
            try state.admit(id: 2, key: "k", prompt: prompt + answer + [99])
            #expect(state.plan().started.map(\.reused) == [5])
        }
    }

    /// Kept answers need the prompt cache; another key shares none of them; a failed job (no
    /// generated tokens) keeps only its prompt.
    @Test func keptAnswersStayWithTheirKeyAndNeedThePromptCache() throws {
        #expect(!SchedulerState.Limits(parallel: 1, queueDepth: 1, batchTokens: 8, promptCache: false, keepsAnswers: true).keepsAnswers)
        let prompt = Array(1 ... 5), answer = Array(10 ..< 20)
        var state = SchedulerState(limits: .init(parallel: 1, queueDepth: 2, batchTokens: 8, keepsAnswers: true))
        try state.admit(id: 1, key: "k", prompt: prompt)
        Self.decode(&state, 1, steps: 10)
        state.finish(1, generated: answer, answerRows: answer)
        try state.admit(id: 2, key: "other", prompt: prompt + answer + [99])
        #expect(state.plan().started.map(\.reused) == [0])
        Self.decode(&state, 2, steps: 3)
        state.finish(2)
        try state.admit(id: 3, key: "other", prompt: prompt + answer + [99, 98])
        #expect(state.plan().started.map(\.reused) == [16])
    }

    /// Warmed rows are exact: where the next turn's own chunk runs in F32, they are not reused.
    @Test func warmedRowsAreNeverReusedForAnF32Chunk() throws {
        var state = SchedulerState(limits: .init(parallel: 1, queueDepth: 2, batchTokens: 8), runsInFloat: { _, last in last >= 16 })
        let prompt = Array(1 ... 5), answer = Array(10 ..< 30)
        try state.admit(id: 1, key: nil, prompt: prompt)
        Self.evaluate(&state, 1, generating: answer)
        while let warm = state.plan().warm { state.warmed(warm) }
        // The next prompt (27 tokens): 0..<16 exact, 16..<24 F32, 24..<27 F32 (ends at 26).
        try state.admit(id: 2, key: nil, prompt: prompt + answer + [99, 98])
        #expect(state.plan().started.map(\.reused) == [16])
    }

    @Test func promptCacheOffReusesNothing() throws {
        var state = SchedulerState(limits: .init(parallel: 1, queueDepth: 2, batchTokens: 64, promptCache: false))
        try state.admit(id: 1, key: nil, prompt: Array(1 ... 30))
        Self.evaluateAndFinish(&state, 1)
        try state.admit(id: 2, key: nil, prompt: Array(1 ... 31))
        #expect(state.plan().started.map(\.reused) == [0])
    }
}

/// A small seeded generator, so that random tests repeat.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// Choices of one request (n > 1) evaluate their common prompt once.
@Suite struct PromptSharingStateTests {
    @Test func aChoiceCopiesItsSourcesPromptOnceEvaluated() throws {
        var state = SchedulerState(limits: .init(parallel: 3, queueDepth: 0, batchTokens: 8))
        try state.admit(id: 1, key: nil, prompt: Array(1 ... 12))
        try state.admit(id: 2, key: nil, prompt: Array(1 ... 12), promptSource: 1)
        // The follower gets no prompt chunks while its source evaluates the prompt.
        var plan = state.plan()
        #expect(plan.items == [.init(id: 1, slot: 0, work: .prompt(range: 0 ..< 8, last: false))])
        for item in plan.items { state.completed(item) }
        plan = state.plan()
        #expect(plan.items == [.init(id: 1, slot: 0, work: .prompt(range: 8 ..< 12, last: true))])
        for item in plan.items { state.completed(item) }
        // Then one copy, costing no engine tokens, beside the source's first decode.
        plan = state.plan()
        #expect(plan.items == [.init(id: 1, slot: 0, work: .decode), .init(id: 2, slot: 1, work: .sharePrompt(source: 1, sourceSlot: 0))])
        for item in plan.items { state.completed(item) }
        plan = state.plan()
        #expect(plan.items == [.init(id: 1, slot: 0, work: .decode), .init(id: 2, slot: 1, work: .decode)])
    }

    @Test func aChoiceWhoseSourceIsCancelledEvaluatesItsOwnPrompt() throws {
        var state = SchedulerState(limits: .init(parallel: 2, queueDepth: 0, batchTokens: 64))
        try state.admit(id: 1, key: nil, prompt: Array(1 ... 5))
        try state.admit(id: 2, key: nil, prompt: Array(1 ... 5), promptSource: 1)
        #expect(state.plan().items == [.init(id: 1, slot: 0, work: .prompt(range: 0 ..< 5, last: true))])
        // The source goes away before its prompt was evaluated.
        state.cancel(1)
        let plan = state.plan()
        #expect(plan.dropped == [1])
        #expect(plan.items == [.init(id: 2, slot: 1, work: .prompt(range: 0 ..< 5, last: true))])
    }

    @Test func refusesToShareADifferentPromptOrAChainedSource() throws {
        var state = SchedulerState(limits: .init(parallel: 3, queueDepth: 0, batchTokens: 64))
        try state.admit(id: 1, key: nil, prompt: Array(1 ... 5))
        try state.admit(id: 2, key: nil, prompt: Array(1 ... 6), promptSource: 1)
        try state.admit(id: 3, key: nil, prompt: Array(1 ... 5), promptSource: 9)
        #expect(state.jobs[2]?.promptSource == nil && state.jobs[3]?.promptSource == nil)
    }
}
