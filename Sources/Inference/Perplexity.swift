import Foundation
import Generation

/// The perplexity of a token sequence as llama.cpp's perplexity fixture computes it
/// (Tests/InferenceTests/Fixtures/make_fixtures.py): the ids cut into whole chunks of `chunkLength`
/// (a partial last chunk dropped), each evaluated from an empty context with every position's
/// logits, every token after a chunk's first scored; `exp` of the mean negative log-likelihood, in
/// float64. Used by `BLASPrefillTests` and `securenode bench-engine --perplexity-tokens`.
public struct Perplexity: Sendable {
    public let chunkLength: Int
    public let chunks: Int
    public let scored: Int
    public let value: Double

    /// Evaluates `tokens` on `session` (reset before each chunk). Needs `chunkLength >= 2`, at least
    /// one whole chunk, and a session of that many positions.
    public init(session: LlamaSession, tokens: [Int], chunkLength: Int) throws(InferenceError) {
        precondition(chunkLength >= 2 && tokens.count >= chunkLength, "perplexity needs one whole chunk of at least 2 tokens")
        let vocabulary = session.model.config.vocabularySize
        var nll = 0.0, scored = 0
        let chunks = tokens.count / chunkLength
        for c in 0 ..< chunks {
            let part = Array(tokens[c * chunkLength ..< (c + 1) * chunkLength])
            session.reset()
            let logits = try session.evaluate(part, logits: .all)
            for i in 1 ..< part.count {
                let row = logits[(i - 1) * vocabulary ..< i * vocabulary]
                let top = Double(row.max()!)
                let lse = top + log(row.reduce(0.0) { $0 + exp(Double($1) - top) })
                nll += lse - Double(row[row.startIndex + part[i]])
                scored += 1
            }
        }
        self.chunkLength = chunkLength
        self.chunks = chunks
        self.scored = scored
        value = exp(nll / Double(scored))
    }
}
