import Foundation
import Generation
import Kernels
import ModelFormat
import Testing
@testable import Inference

/// K-quant models' BLAS prompt passes (`PrefillMode.blas`). With AVX512-VNNI their Q4_K and Q6_K
/// products take the sixteen-row integer groups (`KQuantGroups`), not the exact GEMM: the logits leave the exact
/// bits (so the groups ran) but stay at least as close to the exact pass as the F32 products of a
/// machine without them (`CPUBackend.keepsExactPromptGEMMs` false: dequantize + sgemm), with the
/// same greedy token unless exact's top two tie within that path's difference. On llama.cpp's Q4_K_S,
/// Q4_K_M and Q6_K presets of
/// the committed fixtures (Q4_K with Q5_K or Q6_K beside it; Q6_K alone).
@Suite(.serialized, .enabled(if: KQuantGroups.available, "no AVX512-VNNI: Q4_K and Q6_K stay exact or go to sgemm"))
struct KQuantGroupsPrefillTests {
    @Test(arguments: ["preset-llama.Q4_K_M.gguf", "preset-llama.Q4_K_S.gguf", "preset-llama.Q6_K.gguf"])
    func kQuantBLASPassTakesTheGroupsWithinTheF32Tolerance(_ name: String) throws {
        let path = ArchitectureExpectations.directory.appendingPathComponent(name).path
        let model = try LlamaModel(file: GGUFFile.parse(GGUFBuffer.read(contentsOf: path)))
        let vocabulary = model.config.vocabularySize
        let tokens = (0 ..< 200).map { (1 + 7919 * $0) % vocabulary }
        let exact = try Q4_0PrefillTests.logits(model, tokens, prefill: .exact, exactGEMMs: true)
        let groups = try Q4_0PrefillTests.logits(model, tokens, prefill: .blas(minimumRows: 2), exactGEMMs: true)
        let f32 = try Q4_0PrefillTests.logits(model, tokens, prefill: .blas(minimumRows: 2), exactGEMMs: false)
        let groupsError = zip(groups, exact).map { abs($0 - $1) }.max() ?? 0
        let f32Error = zip(f32, exact).map { abs($0 - $1) }.max() ?? 0
        print("\(name): 200-token pass against exact: max |difference| K-quant groups \(groupsError), F32 products \(f32Error)")
        #expect(groups.map(\.bitPattern) != exact.map(\.bitPattern), "\(name): the groups gave the exact bits (not taken?)")
        // Random weights make logits of 30-70 whose F32 products move by 1.3-1.5 here (llama.cpp moves
        // itself by up to 1.36 on these files: ArchitectureExpectations.tolerance); the groups must not
        // stray further than that path does.
        #expect(groupsError <= f32Error * 1.01, "\(name): the groups stray further from exact than F32 products")
        let best = Sampler.argmax(exact), chosen = Sampler.argmax(groups)
        print("\(name): exact's best \(best) (\(exact[best])), groups' \(chosen) (exact \(exact[chosen]), groups \(groups[chosen]) against \(groups[best])); F32's \(Sampler.argmax(f32))")
        // The same greedy token, unless exact's logits tie the two within what the F32 products move
        // them (seen on the Q6_K preset: 34.87 against 34.78, both paths within 1 of exact).
        #expect(chosen == best || exact[best] - exact[chosen] <= f32Error, "\(name): greedy token \(chosen), exact's \(best)")
    }
}
