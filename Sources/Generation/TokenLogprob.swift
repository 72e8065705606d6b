import Foundation

/// The log-probability of one generated token and of the most likely alternatives at that step.
///
/// Values are the log-softmax of the model's raw logits at that position, before the sampler's
/// penalties, temperature and truncation (top-k, top-p, min-p): the model's own distribution, as
/// OpenAI reports it. They do not depend on the sampling parameters, so the same text gets the
/// same log-probabilities at any temperature.
public struct TokenLogprob: Sendable, Equatable {
    public struct Candidate: Sendable, Equatable {
        public let id: Int
        public let logprob: Float
    }

    /// The token that was generated.
    public let id: Int
    public let logprob: Float
    /// The `k` most likely tokens, most likely first (ties: lower id first).
    public let top: [Candidate]

    /// Most alternatives a request may ask for (OpenAI's `top_logprobs` bound).
    public static let maxTop = 20

    /// The entry for `chosen` given the raw logits: one pass for the log-sum-exp, one partial
    /// selection of the `top` largest (at most `maxTop`). NaN logits count as impossible.
    public init(logits: [Float], chosen: Int, top: Int) {
        var maxLogit = -Float.infinity
        for x in logits where x > maxLogit { maxLogit = x }
        var sum: Double = 0
        if maxLogit.isFinite {
            for x in logits where !x.isNaN { sum += Double(expf(x - maxLogit)) }
        }
        let logZ = maxLogit.isFinite ? maxLogit + Float(log(sum)) : 0
        func lp(_ i: Int) -> Float {
            guard i >= 0, i < logits.count, !logits[i].isNaN, maxLogit.isFinite else { return -.infinity }
            return logits[i] - logZ
        }
        id = chosen
        logprob = lp(chosen)
        let k = min(max(top, 0), Self.maxTop, logits.count)
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        if k > 0 {
            func better(_ a: Int, _ b: Int) -> Bool { logits[a] != logits[b] ? logits[a] > logits[b] : a < b }
            for i in logits.indices where !logits[i].isNaN {
                if best.count == k, !better(i, best[k - 1]) { continue }
                var at = best.count
                while at > 0, better(i, best[at - 1]) { at -= 1 }
                best.insert(i, at: at)
                if best.count > k { best.removeLast() }
            }
        }
        self.top = best.map { Candidate(id: $0, logprob: lp($0)) }
    }
}
