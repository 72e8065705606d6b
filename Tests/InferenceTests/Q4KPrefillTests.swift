import Foundation
import Generation
import Kernels
import ModelFormat
import Testing
@testable import Inference

/// Q4_K models' BLAS prompt passes (`PrefillMode.blas`). With AVX512-VNNI their Q4_K products take
/// the sixteen-row integer groups (`Q4KGroups`), not the exact GEMM: the logits leave the exact
/// bits (so the groups ran) but stay at least as close to the exact pass as the F32 products of a
/// machine without them (`CPUBackend.keepsExactPromptGEMMs` false: dequantize + sgemm), with the
/// same greedy token. On llama.cpp's Q4_K_S and Q4_K_M presets of
/// the committed fixtures (Q4_K with Q5_K or Q6_K beside it).
@Suite(.serialized, .enabled(if: Q4KGroups.available, "no AVX512-VNNI: Q4_K stays exact or goes to sgemm"))
struct Q4KPrefillTests {
    @Test(arguments: ["preset-llama.Q4_K_M.gguf", "preset-llama.Q4_K_S.gguf"])
    func q4KBLASPassTakesTheGroupsWithinTheF32Tolerance(_ name: String) throws {
        let path = ArchitectureExpectations.directory.appendingPathComponent(name).path
        let model = try LlamaModel(file: GGUFFile.parse(GGUFBuffer.read(contentsOf: path)))
        let vocabulary = model.config.vocabularySize
        let tokens = (0 ..< 200).map { (1 + 7919 * $0) % vocabulary }
        let exact = try Q4_0PrefillTests.logits(model, tokens, prefill: .exact, exactGEMMs: true)
        let groups = try Q4_0PrefillTests.logits(model, tokens, prefill: .blas(minimumRows: 2), exactGEMMs: true)
        let f32 = try Q4_0PrefillTests.logits(model, tokens, prefill: .blas(minimumRows: 2), exactGEMMs: false)
        let groupsError = zip(groups, exact).map { abs($0 - $1) }.max() ?? 0
        let f32Error = zip(f32, exact).map { abs($0 - $1) }.max() ?? 0
        print("\(name): 200-token pass against exact: max |difference| Q4_K groups \(groupsError), F32 products \(f32Error)")
        #expect(groups.map(\.bitPattern) != exact.map(\.bitPattern), "\(name): the groups gave the exact bits (not taken?)")
        // Random weights make logits of 30-70 whose F32 products move by 1.3-1.5 here (llama.cpp moves
        // itself by up to 1.36 on these files: ArchitectureExpectations.tolerance); the groups must not
        // stray further than that path does.
        #expect(groupsError <= f32Error * 1.01, "\(name): the groups stray further from exact than F32 products")
        #expect(Sampler.argmax(groups) == Sampler.argmax(exact))
    }
}
