import Foundation

/// How the next token is chosen from the logits. First the penalties: the repetition penalty on
/// the last `repeatWindow` tokens, then OpenAI's presence and frequency penalties over the
/// generated tokens (`logit[t] -= count[t] * frequencyPenalty + (count[t] > 0 ? presencePenalty : 0)`).
/// Then `temperature == 0` is greedy (argmax, lowest id among equal logits). Otherwise, in
/// llama.cpp's order: top-k, top-p, min-p, then temperature, then a draw from the
/// softmax with the sampler's own seeded PRNG, so that equal seeds give equal outputs.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 for greedy; otherwise logits are divided by it (0 < t <= 100).
    public var temperature: Float = 0
    /// Keep the `topK` most likely tokens (0: all).
    public var topK: Int = 40
    /// Keep the smallest set of most likely tokens whose probability reaches `topP` (1: all).
    public var topP: Float = 0.95
    /// Drop tokens less likely than `minP` times the most likely one (0: none).
    public var minP: Float = 0.05
    /// Divide positive (multiply negative) logits of recently seen tokens by this (1: off).
    public var repetitionPenalty: Float = 1
    /// How many of the last tokens the penalty looks at.
    public var repeatWindow: Int = 64
    /// Seed of the sampler's PRNG.
    public var seed: UInt64 = 0
    /// OpenAI's `presence_penalty` (-2...2): subtracted once from the logit of every token generated so far.
    public var presencePenalty: Float = 0
    /// OpenAI's `frequency_penalty` (-2...2): subtracted from a token's logit once per time it was generated.
    public var frequencyPenalty: Float = 0

    public init(temperature: Float = 0, topK: Int = 40, topP: Float = 0.95, minP: Float = 0.05,
                repetitionPenalty: Float = 1, repeatWindow: Int = 64, seed: UInt64 = 0,
                presencePenalty: Float = 0, frequencyPenalty: Float = 0) {
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.repeatWindow = repeatWindow
        self.seed = seed
    }

    /// Refuses values outside the documented ranges (NaN included).
    public func validate() throws(InferenceError) {
        func bad(_ what: String) -> InferenceError { InferenceError(.invalidArgument, what) }
        guard temperature >= 0, temperature <= 100 else { throw bad("temperature must be in 0...100, not \(temperature)") }
        guard topK >= 0 else { throw bad("top-k must be >= 0, not \(topK)") }
        guard topP > 0, topP <= 1 else { throw bad("top-p must be in (0, 1], not \(topP)") }
        guard minP >= 0, minP <= 1 else { throw bad("min-p must be in [0, 1], not \(minP)") }
        guard repetitionPenalty > 0, repetitionPenalty <= 100 else {
            throw bad("repetition penalty must be in (0, 100], not \(repetitionPenalty)")
        }
        guard repeatWindow >= 0 else { throw bad("repeat window must be >= 0, not \(repeatWindow)") }
        guard presencePenalty >= -2, presencePenalty <= 2 else { throw bad("presence penalty must be in -2...2, not \(presencePenalty)") }
        guard frequencyPenalty >= -2, frequencyPenalty <= 2 else { throw bad("frequency penalty must be in -2...2, not \(frequencyPenalty)") }
    }
}

/// xoshiro256** seeded through SplitMix64: a small, fast, reproducible PRNG that is the same on
/// every platform (unlike `SystemRandomNumberGenerator`).
public struct Xoshiro256: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9e37_79b9_7f4a_7c15
            var z = x
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1) with 24 bits.
    public mutating func nextUnit() -> Float { Float(next() >> 40) / Float(1 << 24) }
}

/// Chooses tokens from logits according to `SamplingParameters`. Holds the PRNG state.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var random: Xoshiro256

    public init(_ parameters: SamplingParameters) throws(InferenceError) {
        try parameters.validate()
        self.parameters = parameters
        random = Xoshiro256(seed: parameters.seed)
    }

    /// OpenAI's presence and frequency penalties over the generated tokens, in place.
    public static func applyPenalties(_ logits: inout [Float], generated: [Int], presence: Float, frequency: Float) {
        var counts: [Int: Int] = [:]
        for id in generated where id >= 0 && id < logits.count { counts[id, default: 0] += 1 }
        for (id, count) in counts { logits[id] -= Float(count) * frequency + presence }
    }

    /// The index of the largest logit, the lowest index among equals (llama.cpp's greedy choice).
    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in logits.indices where logits[i] > logits[best] { best = i }
        return best
    }

    /// `argmax(_:)` among the tokens of `allowed` (all when nil).
    public static func argmax(_ logits: [Float], allowed: [UInt64]?) -> Int {
        guard let allowed else { return argmax(logits) }
        var best = -1
        for i in logits.indices where isAllowed(i, allowed) && (best < 0 || logits[i] > logits[best]) { best = i }
        return max(best, 0)
    }

    /// Bit `i % 64` of word `i / 64` of `mask` (a `TokenConstraint.mask()`).
    @inline(__always)
    public static func isAllowed(_ i: Int, _ mask: [UInt64]) -> Bool {
        i >> 6 < mask.count && mask[i >> 6] & (1 << UInt64(i & 63)) != 0
    }

    /// The `k` best of `ids` (by logit, descending; the lower id first among equals), in that
    /// order: one pass keeping a sorted list of the best so far, for `k` much smaller than `ids`.
    static func best(_ k: Int, of ids: [Int], _ logits: [Float]) -> [Int] {
        @inline(__always) func before(_ a: Int, _ b: Int) -> Bool { logits[a] != logits[b] ? logits[a] > logits[b] : a < b }
        var kept: [Int] = []
        kept.reserveCapacity(k + 1)
        for id in ids {
            if kept.count == k, let last = kept.last, !before(id, last) { continue }
            var i = kept.count
            while i > 0 && before(id, kept[i - 1]) { i -= 1 }
            kept.insert(id, at: i)
            if kept.count > k { kept.removeLast() }
        }
        return kept
    }

    /// The tokens a draw at `p.temperature > 0` chooses among, after top-k, top-p and min-p, and
    /// their probabilities at the temperature, in the order the draw walks them (descending when a
    /// truncation sorted them, else by id). Nil when no allowed token has a finite logit.
    static func distribution(_ logits: [Float], _ p: SamplingParameters, allowed: [UInt64]?) -> (ids: [Int], probabilities: [Float])? {
        // Candidates: the allowed tokens with a number, in id order; top-k keeps the k best (by
        // logit, descending, the lower id first among equals), sorted. No step sorts the whole
        // vocabulary: with OpenAI's defaults (no top-k, top_p 1) a full sort of 49k-152k logits per
        // token cost as much as the forward pass of a small model.
        var candidates = allowed.map { mask in logits.indices.filter { !logits[$0].isNaN && Self.isAllowed($0, mask) } }
            ?? logits.indices.filter { !logits[$0].isNaN }
        var sorted = false
        if p.topK > 0 && candidates.count > p.topK {
            candidates = Self.best(p.topK, of: candidates, logits)
            sorted = true
        }
        guard let top = candidates.lazy.map({ logits[$0] }).max(), top > -.infinity else { return nil }

        // Probabilities at temperature 1 for top-p and min-p (llama.cpp's default chain applies
        // the temperature last).
        func probabilities(_ ids: [Int], temperature: Float) -> [Float] {
            let best = (ids.lazy.map { logits[$0] }.max() ?? 0) / temperature
            let exps = ids.map { expf(logits[$0] / temperature - best) }
            let total = exps.reduce(0, +)
            return exps.map { $0 / total }
        }
        guard p.topP < 1 || p.minP > 0 else { return (candidates, probabilities(candidates, temperature: p.temperature)) }
        var probs = probabilities(candidates, temperature: 1)
        if p.topP < 1 {
            if !sorted {
                // Only a prefix of the descending order can matter: the tokens below
                // (1 - topP) / n each hold less than 1 - topP together, so the others hold more
                // than topP, and they are exactly the most likely ones. Sort those.
                let cut = (1 - p.topP) / Float(candidates.count)
                var kept = zip(candidates, probs).filter { $0.1 >= cut }
                kept.sort { logits[$0.0] != logits[$1.0] ? logits[$0.0] > logits[$1.0] : $0.0 < $1.0 }
                candidates = kept.map(\.0)
                probs = kept.map(\.1)
            }
            var cumulative: Float = 0
            var keep = candidates.count
            for (i, q) in probs.enumerated() {
                cumulative += q
                if cumulative >= p.topP {
                    keep = i + 1
                    break
                }
            }
            candidates = Array(candidates.prefix(keep))
            probs = Array(probs.prefix(keep))
        }
        if p.minP > 0, let most = probs.max() {
            // The tokens at least minP times as likely as the most likely one (a prefix of the
            // descending order, so the same set in any order).
            let kept = zip(candidates, probs).filter { $0.1 >= p.minP * most }.map(\.0)
            candidates = kept.isEmpty ? [candidates[probs.firstIndex(of: most) ?? 0]] : kept
        }
        return (candidates, probabilities(candidates, temperature: p.temperature))
    }

    /// The next token given the logits, the tokens so far (for the repetition penalty) and the
    /// generated tokens (for the presence and frequency penalties). With `allowed` (a bitset over
    /// the vocabulary: a grammar's mask), only allowed tokens are candidates: the others are
    /// removed after the penalties, before greedy choice or top-k/top-p/min-p.
    public mutating func sample(_ logits: [Float], previous: [Int] = [], generated: [Int] = [], allowed: [UInt64]? = nil) -> Int {
        var logits = logits
        let p = parameters
        if p.repetitionPenalty != 1, p.repeatWindow > 0 {
            for id in Set(previous.suffix(p.repeatWindow)) where id >= 0 && id < logits.count {
                logits[id] = logits[id] > 0 ? logits[id] / p.repetitionPenalty : logits[id] * p.repetitionPenalty
            }
        }
        if p.presencePenalty != 0 || p.frequencyPenalty != 0 {
            Self.applyPenalties(&logits, generated: generated, presence: p.presencePenalty, frequency: p.frequencyPenalty)
        }
        if p.temperature == 0 { return Self.argmax(logits, allowed: allowed) }

        guard let d = Self.distribution(logits, p, allowed: allowed) else { return Self.argmax(logits, allowed: allowed) }
        let r = random.nextUnit()
        var cumulative: Float = 0
        for (i, q) in d.probabilities.enumerated() {
            cumulative += q
            if r < cumulative { return d.ids[i] }
        }
        return d.ids[d.ids.count - 1]
    }
}
