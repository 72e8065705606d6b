import Foundation
import Testing
@testable import Generation

/// OpenAI's presence and frequency penalties, and the log-probabilities reported for `logprobs`.
@Suite struct PenaltyAndLogprobTests {
    @Test func appliesPenaltiesAsOpenAIDefinesThem() {
        // logit[t] -= count[t] * frequency + (count[t] > 0) * presence, over the generated tokens.
        var logits: [Float] = [1, 2, 3, 4]
        Sampler.applyPenalties(&logits, generated: [3, 3, 1, 99, -1], presence: 0.5, frequency: 0.25)
        #expect(logits == [1, 2 - 0.25 - 0.5, 3, 4 - 2 * 0.25 - 0.5])
        // Negative values encourage repetition.
        var more: [Float] = [0, 0]
        Sampler.applyPenalties(&more, generated: [1], presence: -1, frequency: -2)
        #expect(more == [0, 3])
    }

    @Test func penaltiesChangeTheGreedyChoiceOnlyForGeneratedTokens() throws {
        let logits: [Float] = [0, 1, 3, 3.5]
        var plain = try Sampler(SamplingParameters(temperature: 0))
        #expect(plain.sample(logits, generated: [3]) == 3)
        var presence = try Sampler(SamplingParameters(temperature: 0, presencePenalty: 1))
        #expect(presence.sample(logits, previous: [3, 3], generated: []) == 3, "prompt tokens are not penalized")
        #expect(presence.sample(logits, generated: [3]) == 2)
        var frequency = try Sampler(SamplingParameters(temperature: 0, frequencyPenalty: 0.3))
        #expect(frequency.sample(logits, generated: [3]) == 3)
        #expect(frequency.sample(logits, generated: [3, 3]) == 2)
    }

    @Test func refusesPenaltiesBeyondTwo() {
        #expect(throws: InferenceError.self) { try SamplingParameters(presencePenalty: 2.5).validate() }
        #expect(throws: InferenceError.self) { try SamplingParameters(frequencyPenalty: -2.01).validate() }
        #expect(throws: InferenceError.self) { try SamplingParameters(frequencyPenalty: .nan).validate() }
        #expect((try? SamplingParameters(presencePenalty: -2, frequencyPenalty: 2).validate()) != nil)
    }

    @Test func logprobsAreALogSoftmaxWhoseProbabilitiesSumToOne() {
        var random = Xoshiro256(seed: 7)
        let logits = (0 ..< 5000).map { _ in random.nextUnit() * 30 - 15 }
        let entry = TokenLogprob(logits: logits, chosen: 17, top: 0)
        let all = (0 ..< logits.count).map { TokenLogprob(logits: logits, chosen: $0, top: 0).logprob }
        let total = all.reduce(0.0) { $0 + exp(Double($1)) }
        #expect(abs(total - 1) < 1e-3)
        #expect(entry.logprob == all[17])
        #expect(entry.top.isEmpty)
        // Differences of log-probabilities are differences of logits.
        #expect(abs((all[3] - all[4]) - (logits[3] - logits[4])) < 1e-3)
    }

    @Test func topLogprobsAreTheMostLikelySortedDescending() {
        var random = Xoshiro256(seed: 11)
        var logits = (0 ..< 3000).map { _ in random.nextUnit() * 10 }
        logits[42] = 20
        logits[43] = 20
        logits[7] = .nan
        let entry = TokenLogprob(logits: logits, chosen: 5, top: 20)
        #expect(entry.top.count == 20)
        #expect(entry.top[0].id == 42 && entry.top[1].id == 43, "ties by lower id")
        #expect(zip(entry.top, entry.top.dropFirst()).allSatisfy { $0.logprob >= $1.logprob })
        let expected = logits.indices.filter { !logits[$0].isNaN }.sorted { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }.prefix(20)
        #expect(entry.top.map(\.id) == Array(expected))
        #expect(!entry.top.contains { $0.id == 7 })
        // Asking for more than the bound gives the bound.
        #expect(TokenLogprob(logits: logits, chosen: 5, top: 1000).top.count == TokenLogprob.maxTop)
    }

    @Test func survivesLogprobsOfAllNaNLogits() {
        let entry = TokenLogprob(logits: [.nan, .nan, .nan], chosen: 1, top: 3)
        #expect(entry.logprob == -.infinity)
        #expect(entry.top.isEmpty)
    }
}
