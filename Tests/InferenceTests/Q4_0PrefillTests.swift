import Foundation
import Kernels
import ModelFormat
import Generation
import Testing
@testable import Inference

/// A Q4_0 model's BLAS prompt passes (`PrefillMode.blas`). With the C kernels (AVX512-VNNI or AVX2)
/// the Q4_0 products stay on the exact kernels (packed groups of eight rows; `FastKernels.hasExactPromptGEMM`), so a pass
/// under `PrefillMode.gemmAttentionMinimumPositions` gives the exact session's logits bit for bit.
/// The same pass with its products in F32 (`CPUBackend.keepsExactPromptGEMMs` false, the path of a
/// machine without the C kernels) does not: that shows the pass went through the BLAS path at all. On the
/// committed llama.cpp-quantized fixtures (every layer matrix Q4_0).
@Suite(.serialized) struct Q4_0PrefillTests {
    static func logits(_ model: LlamaModel, _ tokens: [Int], prefill: PrefillMode, exactGEMMs: Bool) throws -> [Float] {
        let backend = CPUBackend(threads: 2)
        backend.keepsExactPromptGEMMs = exactGEMMs
        let engine = LlamaEngine(model: model, backend: backend, contextCapacity: 256, batchCapacity: 256,
                                 prefill: prefill, logitRows: 1)
        return try engine.makeSession(contextLength: 256).evaluate(tokens)
    }

    @Test(arguments: ["preset-llama.Q4_0.gguf", "llama-spm.Q4_0.gguf", "qwen2.Q4_0.gguf"])
    func q4_0BLASPassIsExactBelowTheGEMMAttentionPositions(_ name: String) throws {
        let path = ArchitectureExpectations.directory.appendingPathComponent(name).path
        let model = try LlamaModel(file: GGUFFile.parse(GGUFBuffer.read(contentsOf: path)))
        let exactGEMM = FastKernels.hasExactPromptGEMM(.q4_0)
        #expect(exactGEMM == (FastKernels.machineInstructionSet != nil))
        let vocabulary = model.config.vocabularySize
        let tokens = (0 ..< 200).map { (1 + 7919 * $0) % vocabulary }
        let exact = try Self.logits(model, tokens, prefill: .exact, exactGEMMs: true)
        let blas = try Self.logits(model, tokens, prefill: .blas(minimumRows: 2), exactGEMMs: true)
        let f32 = try Self.logits(model, tokens, prefill: .blas(minimumRows: 2), exactGEMMs: false)
        if exactGEMM {
            #expect(blas.map(\.bitPattern) == exact.map(\.bitPattern), "\(name): the default BLAS pass is not exact")
        }
        #expect(f32.map(\.bitPattern) != exact.map(\.bitPattern), "\(name): the F32 pass gave the exact bits (no BLAS pass?)")
        let worst = zip(f32, exact).map { abs($0 - $1) }.max() ?? 0
        print("\(name): 200-token pass, F32 products against exact: max |difference| \(worst); exact Q4_0 GEMM: \(exactGEMM)")
    }
}
