import Foundation
import Testing
import Generation
import Kernels
@testable import Inference

/// The BLAS prompt path (`PrefillMode.blas`: weights dequantized to F32, OpenBLAS sgemm, activations
/// never quantized) against llama.cpp on the real model. Its results are within a tolerance of
/// llama.cpp's, not equal: the exact path (`ReferenceModelTests`) stays bit for bit.
@Suite("SmolLM2-135M BLAS prefill against llama.cpp", .enabled(if: TestPaths.runReferenceTests, TestPaths.referenceMissing))
struct BLASPrefillTests {
    /// Largest |ours - llama.cpp| allowed over the reference top-10 logits when every matrix product
    /// of the prompt runs in F32 (llama.cpp rounds activations to 8 bits; F32 does not).
    static let blasPrefillTolerance: Float = 0.25
    /// Perplexity on the bundled text within 0.5% of llama.cpp's (issue 19).
    static let blasPerplexityTolerance = 0.005

    /// Every forward pass through BLAS (minimum 1 row, the decoding steps included): final logits
    /// within `blasPrefillTolerance` of llama.cpp's top 10 and the same top token.
    @Test func blasPrefillStaysWithinToleranceOfLlamaCpp() throws {
        let model = try RealModel.model()
        let reference: LogitsReference = try loadJSON(TestPaths.referenceFile("smollm2-135m-q4_1-logits-top10.json"))
        var worst: Float = 0
        for result in reference.results {
            let session = try model.makeSession(contextLength: 64, prefill: .blas(minimumRows: 1))
            let logits = try session.evaluate(result.prompt_ids)
            for entry in result.top10 { worst = max(worst, abs(logits[entry.id] - entry.logit)) }
            #expect(Sampler.argmax(logits) == result.top10[0].id, "prompt \(result.prompt)")
        }
        print("BLAS prefill: max |ours - llama.cpp| over the top 10 = \(worst) (tolerance \(Self.blasPrefillTolerance)); OpenBLAS \(BLAS.coreName), \(BLAS.threads) thread(s)")
        #expect(worst < Self.blasPrefillTolerance)
        #expect(BLAS.threads == 1, "OpenBLAS must not start threads of its own beside the engine's pool")
    }

    /// As the CLI runs it (prompt through BLAS, decoding exact): llama.cpp's 64 greedy tokens on
    /// every reference prompt.
    @Test func blasPrefillKeepsLlamaCppsGreedyTokens() throws {
        let model = try RealModel.model()
        let reference: GreedyReference = try loadJSON(TestPaths.referenceFile("smollm2-135m-q4_1-greedy.json"))
        #expect(!reference.results.isEmpty)
        for result in reference.results {
            let session = try model.makeSession(contextLength: result.prompt_ids.count + reference.n_gen, prefill: .blas(minimumRows: 2))
            var logits = try session.evaluate(result.prompt_ids)
            var output: [Int] = []
            for _ in 0 ..< reference.n_gen {
                let next = Sampler.argmax(logits)
                output.append(next)
                logits = try session.evaluate([next])
            }
            let agreeing = zip(output, result.output_ids).prefix { $0 == $1 }.count
            print("BLAS greedy \(result.prompt.debugDescription): \(agreeing) of \(reference.n_gen) tokens equal llama.cpp's")
            #expect(agreeing == reference.n_gen, "prompt \(result.prompt.debugDescription): only \(agreeing) tokens agree")
        }
    }

    /// Perplexity with every chunk (256 tokens, all logits) through BLAS: within 0.5% of llama.cpp's.
    @Test func blasPerplexityWithinHalfAPercentOfLlamaCpp() throws {
        let fixture: PerplexityFixture = try loadJSON(TestPaths.fixtures.appendingPathComponent("perplexity.json"))
        let model = try RealModel.model()
        let vocab = model.config.vocabularySize
        let tokens = fixture.token_ids
        var nll: Double = 0
        var scored = 0
        for c in 0 ..< tokens.count / fixture.n_ctx {
            let chunk = Array(tokens[c * fixture.n_ctx ..< (c + 1) * fixture.n_ctx])
            let session = try model.makeSession(contextLength: fixture.n_ctx, prefill: .blas(minimumRows: 2))
            let logits = try session.evaluate(chunk, logits: .all)
            for i in 1 ..< chunk.count {
                let row = logits[(i - 1) * vocab ..< i * vocab]
                let top = Double(row.max()!)
                let lse = top + log(row.reduce(0.0) { $0 + exp(Double($1) - top) })
                nll += lse - Double(row[row.startIndex + chunk[i]])
                scored += 1
            }
        }
        let perplexity = exp(nll / Double(scored))
        print("BLAS perplexity: ours \(perplexity), llama.cpp \(fixture.perplexity)")
        #expect(abs(perplexity - fixture.perplexity) / fixture.perplexity < Self.blasPerplexityTolerance)
    }

    /// A BLAS engine still decodes bit for bit exactly: decoding rows batched together (each item
    /// one token, below the threshold) give the logits each gives alone on the exact path, so no
    /// one's answer depends on who shares the step.
    @Test func blasEngineNeverChangesBatchedDecoding() throws {
        let model = try RealModel.model()
        let prompts = [[504, 3458, 282, 4649, 314], [1, 2, 3]]
        var alone: [[Float]] = []
        for prompt in prompts {
            let session = try model.makeSession(contextLength: 64)
            let logits = try session.evaluate(prompt)
            alone.append(try session.evaluate([Sampler.argmax(logits)]))
        }
        let engine = LlamaEngine(model: model, backend: CPUBackend(threads: 2), contextCapacity: 64, batchCapacity: 8,
                                 prefill: .blas(minimumRows: 8))
        let sessions = try prompts.map { _ in try engine.makeSession(contextLength: 64) }
        let first = try zip(sessions, prompts).map { session, prompt in try session.evaluate(prompt) }
        let next = try engine.decode(sessions, tokens: first.map(Sampler.argmax))
        for i in sessions.indices {
            #expect(next[i].map(\.bitPattern) == alone[i].map(\.bitPattern), "sequence \(i)")
        }
    }
}
