import Kernels
import ModelFormat
import Testing
@testable import Inference

/// Which path a BLAS prompt pass (`PrefillMode.blas`) gives K-quant projections: with the exact
/// AVX512-VNNI Q4_K/Q6_K GEMM (`FastKernels.hasExactPromptGEMM`) they stay exact, so the
/// projection's results are the exact kernels' bits, except that Q4_K takes the faster grouped
/// integer products where they exist (`Q4KGroups`, the same machines), which sends its projection
/// to `projectInFloat`; without VNNI (or with `CPUBackend.keepsExactPromptGEMMs` false) they go to BLAS.
@Suite(.serialized) struct KQuantPrefillTests {
    @Test func blasPassKeepsQ4KAndQ6KProjectionsExactWhereTheGEMMExists() throws {
        let columns = 512, rows = 12, tokens = 20
        let types: [(GGMLType, BlockType)] = [(.q4_k, .q4_K), (.q6_k, .q6_K)]
        let bytes = types.enumerated().map { i, t in KQuantModelTests.blocks(t.0, columns: columns, rows: rows, seed: UInt64(40 + i)) }
        let bases = bytes.map { b in UnsafeMutableRawBufferPointer.allocate(byteCount: b.count, alignment: 64) }
        defer { bases.forEach { $0.deallocate() } }
        for (base, b) in zip(bases, bytes) { base.copyBytes(from: b) }
        let matrices = try zip(types, bases).map { t, base in
            try #require(WeightMatrix(type: t.1, rows: rows, columns: columns, base: UnsafeRawPointer(base.baseAddress!)))
        }
        let outputs = matrices.map { _ in UnsafeMutablePointer<Float>.allocate(capacity: rows * tokens) }
        defer { outputs.forEach { $0.deallocate() } }
        let projection = try #require(Projection(matrices, outputs: outputs))
        var input = [Float](repeating: 0, count: columns * tokens)
        for i in input.indices { input[i] = Float((i * 7919) % 257) / 64 - 2 }
        let backend = CPUBackend(threads: 2)
        for keepsExact in [false, true] {
            backend.keepsExactPromptGEMMs = keepsExact
            // With VNNI the Q4_K matrix takes the groups (Q4KGroups) in a BLAS pass: the projection goes there.
            let gemm = keepsExact && FastKernels.hasExactPromptGEMM(.q4_K) && !Q4KGroups.available
            for o in outputs { o.initialize(repeating: .nan, count: rows * tokens) }
            let tookBLAS = backend.projectInFloat(projection, input: input, count: tokens)
            #expect(tookBLAS == !gemm, "keepsExactPromptGEMMs \(keepsExact)")
            if !tookBLAS {
                // What the engine then runs: the exact kernels, equal to the reference dot products.
                let scratch = UnsafeMutableRawPointer.allocate(byteCount: BlockType.q8_K.rowBytes(columns)! * tokens, alignment: 64)
                defer { scratch.deallocate() }
                backend.project(projection, input: input, count: tokens, scratch: scratch)
                for (j, m) in matrices.enumerated() {
                    for t in 0 ..< tokens {
                        for r in 0 ..< rows {
                            let expected = RowKernels.dot(m.type, m.base + r * m.rowBytes, scratch + t * BlockType.q8_K.rowBytes(columns)!, count: columns)
                            #expect(outputs[j][t * rows + r].bitPattern == expected.bitPattern, "\(m.type) row \(r) token \(t)")
                        }
                    }
                }
            }
        }
    }
}
