import Foundation
import Testing
import Generation
@testable import Inference

/// `Fixtures/perplexity.json`: llama.cpp's perplexity on `Fixtures/perplexity-text.txt`.
struct PerplexityFixture: Decodable {
    let n_ctx: Int
    let chunks: Int
    let scored: Int
    let perplexity: Double
    let token_ids: [Int]
}

@Suite("Perplexity against llama.cpp", .enabled(if: TestPaths.runModelTests, TestPaths.modelMissing))
struct PerplexityTests {
    /// Same text, same tokens, same chunking (non-overlapping chunks of `n_ctx`, each from an empty
    /// context, every token after a chunk's first scored): within 1% of llama.cpp's perplexity.
    @Test func perplexityWithinOnePercentOfLlamaCpp() throws {
        let fixture: PerplexityFixture = try loadJSON(TestPaths.fixtures.appendingPathComponent("perplexity.json"))
        let text = try String(contentsOf: TestPaths.fixtures.appendingPathComponent("perplexity-text.txt"), encoding: .utf8)
        let tokenizer = try RealModel.tokenizer()
        let tokens = try tokenizer.encode(text, addSpecial: false, maxWordBytes: Tokenizer.defaultMaxWordBytes)
        #expect(tokens == fixture.token_ids)

        let model = try RealModel.model()
        let vocab = model.config.vocabularySize
        var nll: Double = 0
        var scored = 0
        for c in 0 ..< tokens.count / fixture.n_ctx {
            let chunk = Array(tokens[c * fixture.n_ctx ..< (c + 1) * fixture.n_ctx])
            let session = try model.makeSession(contextLength: fixture.n_ctx)
            let logits = try session.evaluate(chunk, logits: .all)
            for i in 1 ..< chunk.count {
                let row = logits[(i - 1) * vocab ..< i * vocab]
                let top = Double(row.max()!)
                let lse = top + log(row.reduce(0.0) { $0 + exp(Double($1) - top) })
                nll += lse - Double(row[row.startIndex + chunk[i]])
                scored += 1
            }
        }
        #expect(scored == fixture.scored)
        let perplexity = exp(nll / Double(scored))
        print("perplexity: ours \(perplexity), llama.cpp \(fixture.perplexity) (\(scored) tokens, n_ctx \(fixture.n_ctx))")
        #expect(abs(perplexity - fixture.perplexity) / fixture.perplexity < 0.01)
    }
}
