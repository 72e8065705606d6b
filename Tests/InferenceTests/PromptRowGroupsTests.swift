import Foundation
import Testing
import Generation
import Kernels
@testable import Inference

/// The default engine's prompt rows on the real model (SmolLM2-135M Q4_1) with AVX512-VNNI: they
/// take the sixteen-row integer groups (`Q4_1Groups`, `ComputeBackend.projectPromptRows`), not the
/// exact kernels, so their logits leave llama.cpp's bits; they must stay within the tolerance the
/// F32 BLAS path is held to, keep llama.cpp's next token and its perplexity within 0.5%, and still
/// depend only on the prompt (not on how it is cut into chunks). Decoding rows stay exact
/// (`BLASPrefillTests.blasEngineNeverChangesBatchedDecoding`); `--exact` stays bit for bit
/// (`ReferenceModelTests`).
@Suite("SmolLM2-135M prompt-row groups against llama.cpp", .serialized,
       .enabled(if: TestPaths.runReferenceTests && Q4_1Groups.available, "needs the reference model and AVX512-VNNI"))
struct PromptRowGroupsTests {
    /// Short prompts (all rows through the groups, below the BLAS threshold) and a 200-token one (a
    /// BLAS pass whose Q4_1 products stay integer, attention exact below 512 positions): against
    /// llama.cpp's top-10 logits within the F32 path's tolerance and the same top token; against the
    /// exact session as close as the F32 products are, the same top token, and not equal (the groups ran).
    @Test func promptRowGroupsStayWithinToleranceOfLlamaCpp() throws {
        let model = try RealModel.model()
        let reference: LogitsReference = try loadJSON(TestPaths.referenceFile("smollm2-135m-q4_1-logits-top10.json"))
        var worst: Float = 0
        for result in reference.results {
            let logits = try model.makeSession(contextLength: 64, prefill: .default).evaluate(result.prompt_ids)
            for entry in result.top10 { worst = max(worst, abs(logits[entry.id] - entry.logit)) }
            #expect(Sampler.argmax(logits) == result.top10[0].id, "prompt \(result.prompt)")
        }
        print("prompt-row groups: max |ours - llama.cpp| over the top 10 = \(worst) (tolerance \(BLASPrefillTests.blasPrefillTolerance))")
        #expect(worst < BLASPrefillTests.blasPrefillTolerance)
        let fixture: PerplexityFixture = try loadJSON(TestPaths.fixtures.appendingPathComponent("perplexity.json"))
        for count in [63, 200] {
            let tokens = Array(fixture.token_ids.prefix(count))
            let groups = try model.makeSession(contextLength: 256, prefill: .default).evaluate(tokens)
            let exact = try model.makeSession(contextLength: 256, prefill: .exact).evaluate(tokens)
            let f32 = try BLASPrefillTests.f32Session(model, contextLength: 256, prefill: .blas(minimumRows: 2)).evaluate(tokens)
            let difference = zip(groups, exact).map { abs($0 - $1) }.max()!
            let f32Difference = zip(f32, exact).map { abs($0 - $1) }.max()!
            print("prompt-row groups, \(count)-token prompt: max |groups - exact| over every logit = \(difference), F32 products \(f32Difference)")
            #expect(groups.map(\.bitPattern) != exact.map(\.bitPattern), "\(count) tokens: the exact bits (the groups did not run?)")
            // Any change of arithmetic moves some activation across an 8-bit rounding boundary, and
            // 30 layers carry that on: the groups' logits move as far from exact as the F32 products'
            // (measured 0.53 and 0.99 against 0.52 and 0.79), far more than their own products differ
            // (about 1e-7). Bound: 1.5x the F32 path's distance, measured in the same run.
            #expect(difference <= 1.5 * f32Difference, "\(count) tokens: groups \(difference) from exact, F32 \(f32Difference)")
            #expect(Sampler.argmax(groups) == Sampler.argmax(exact))
        }
    }

    /// As the CLI and the service run it: the token after each reference prompt is llama.cpp's. The
    /// continuation is reported, not required (as for the F32 path: decoding from a cache that differs
    /// in the last bits leaves llama.cpp's greedy path at its first near-tie).
    @Test func promptRowGroupsKeepLlamaCppsFirstToken() throws {
        let model = try RealModel.model()
        for run in try BLASPrefillTests.greedyAgreement(label: "prompt-row groups", { try model.makeSession(contextLength: $0, prefill: .default) }) {
            #expect(run.agreeing >= 1, "prompt \(run.prompt.debugDescription): the first token is not llama.cpp's")
        }
    }

    /// Perplexity as the default engine computes it (every 256-token chunk one BLAS pass whose Q4_1
    /// products take the groups): within 0.5% of llama.cpp's (issue 19's bound for the tolerance path).
    @Test func promptRowGroupsPerplexityWithinHalfAPercentOfLlamaCpp() throws {
        let fixture: PerplexityFixture = try loadJSON(TestPaths.fixtures.appendingPathComponent("perplexity.json"))
        let model = try RealModel.model()
        let session = try model.makeSession(contextLength: fixture.n_ctx, prefill: .blas(minimumRows: 2))
        let measured = try Perplexity(session: session, tokens: fixture.token_ids, chunkLength: fixture.n_ctx)
        #expect(measured.scored == fixture.scored)
        print("prompt-row groups perplexity: ours \(measured.value), llama.cpp \(fixture.perplexity)")
        #expect(abs(measured.value - fixture.perplexity) / fixture.perplexity < BLASPrefillTests.blasPerplexityTolerance)
    }

    /// A prompt's rows depend only on the prompt: evaluated at once, in chunks of any size (1, 3, 16
    /// and 63 tokens: what the service's scheduler and prompt cache cut), the logits after it are the
    /// same bits, and so are those of a decoding step after it.
    @Test func promptRowsDoNotDependOnHowThePromptIsCut() throws {
        let model = try RealModel.model()
        let fixture: PerplexityFixture = try loadJSON(TestPaths.fixtures.appendingPathComponent("perplexity.json"))
        let tokens = Array(fixture.token_ids.prefix(63))
        var results: [[Float]] = []
        for chunk in [63, 1, 3, 16] {
            let session = try model.makeSession(contextLength: 64, prefill: .default)
            var logits: [Float] = []
            for start in stride(from: 0, to: tokens.count, by: chunk) {
                logits = try session.evaluate(Array(tokens[start ..< min(tokens.count, start + chunk)]), partOfPrompt: tokens.count)
            }
            results.append(logits + (try session.evaluate([Sampler.argmax(logits)])))
        }
        for (i, chunk) in [1, 3, 16].enumerated() {
            #expect(results[i + 1].map(\.bitPattern) == results[0].map(\.bitPattern), "chunks of \(chunk)")
        }
    }

    /// Decoding as prompt rows (`LlamaSession.decodesAsPromptRows`, `--decoding prompt-rows`): each
    /// decoded token's logits are the bits of that token's row when the whole text is evaluated again
    /// as one prompt with every row's logits, so an answer depends only on its text. A one-token
    /// session's differ (llama.cpp's one-token kernels ran), and a session that decodes as prompt rows
    /// still evaluates a first, lone token (a one-token prompt) with the one-token kernels, as a
    /// recomputation of that one-token text does.
    @Test func decodingAsPromptRowsEqualsTheTextsOnePromptRows() throws {
        let model = try RealModel.model()
        let fixture: PerplexityFixture = try loadJSON(TestPaths.fixtures.appendingPathComponent("perplexity.json"))
        let prompt = Array(fixture.token_ids.prefix(20))
        let v = model.config.vocabularySize
        let decoding = try model.makeSession(contextLength: 64, prefill: .default)
        decoding.decodesAsPromptRows = true
        let oneToken = try model.makeSession(contextLength: 64, prefill: .default)
        var text = prompt
        var logits = try decoding.evaluate(prompt)
        _ = try oneToken.evaluate(prompt)
        var decoded: [[Float]] = [], oneTokenDecoded: [[Float]] = []
        for _ in 0 ..< 12 {
            let next = Sampler.argmax(logits)
            text.append(next)
            logits = try decoding.evaluate([next])
            decoded.append(logits)
            oneTokenDecoded.append(try oneToken.evaluate([next]))
        }
        let again = try model.makeSession(contextLength: 64, prefill: .default).evaluate(text, logits: .all)
        for (i, row) in decoded.enumerated() {
            let start = (prompt.count + i) * v
            #expect(row.map(\.bitPattern) == again[start ..< start + v].map(\.bitPattern), "decoded token \(i)")
        }
        #expect(decoded.map { $0.map(\.bitPattern) } != oneTokenDecoded.map { $0.map(\.bitPattern) }, "one-token decoding gave prompt rows' bits")
        let lone = try model.makeSession(contextLength: 8, prefill: .default)
        lone.decodesAsPromptRows = true
        let first = try lone.evaluate([prompt[0]])
        let plain = try model.makeSession(contextLength: 8, prefill: .default).evaluate([prompt[0]])
        #expect(first.map(\.bitPattern) == plain.map(\.bitPattern))
    }
}
