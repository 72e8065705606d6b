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
        let measured = try Perplexity(session: model.makeSession(contextLength: fixture.n_ctx), tokens: tokens, chunkLength: fixture.n_ctx)
        let scored = measured.scored, perplexity = measured.value
        #expect(scored == fixture.scored)
        print("perplexity: ours \(perplexity), llama.cpp \(fixture.perplexity) (\(scored) tokens, n_ctx \(fixture.n_ctx))")
        #expect(abs(perplexity - fixture.perplexity) / fixture.perplexity < 0.01)
    }
}
