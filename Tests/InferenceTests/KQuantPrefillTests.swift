import Kernels
import ModelFormat
import Testing
@testable import Inference

/// Which path a BLAS prompt pass (`PrefillMode.blas`) gives K-quant projections: with the exact
/// AVX512-VNNI Q4_K/Q6_K GEMM (`FastKernels.hasExactPromptGEMM`) they stay exact, so the
/// projection's results are the exact kernels' bits, except that both take the faster grouped
/// integer products where they exist (`KQuantGroups`, the same machines): the projection then goes
/// to `projectInFloat` and its results are within 1e-4 of the exact ones; without VNNI (or with
/// `CPUBackend.keepsExactPromptGEMMs` false) they go to dequantize + sgemm.
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
        let stride = BlockType.q8_K.rowBytes(columns)!
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: stride * tokens, alignment: 64)
        defer { scratch.deallocate() }
        FastKernels.quantize(input, columns: columns, count: tokens, to: .q8_K, into: scratch)
        for keepsExact in [false, true] {
            backend.keepsExactPromptGEMMs = keepsExact
            // With VNNI both matrices take the groups (KQuantGroups) in a BLAS pass: the projection goes there.
            let groups = keepsExact && KQuantGroups.available
            let gemm = keepsExact && FastKernels.hasExactPromptGEMM(.q4_K) && !groups
            for o in outputs { o.initialize(repeating: .nan, count: rows * tokens) }
            let tookBLAS = backend.projectInFloat(projection, input: input, count: tokens)
            #expect(tookBLAS == !gemm, "keepsExactPromptGEMMs \(keepsExact)")
            if !tookBLAS {
                // What the engine then runs: the exact kernels, equal to the reference dot products.
                backend.project(projection, input: input, count: tokens, scratch: scratch)
            }
            for (j, m) in matrices.enumerated() {
                for t in 0 ..< tokens {
                    for r in 0 ..< rows {
                        let expected = RowKernels.dot(m.type, m.base + r * m.rowBytes, scratch + t * stride, count: columns)
                        let value = outputs[j][t * rows + r]
                        if !tookBLAS {
                            #expect(value.bitPattern == expected.bitPattern, "\(m.type) row \(r) token \(t)")
                        } else if groups {
                            // The groups quantize the input as the exact kernels do: only the summation differs.
                            #expect(abs(value - expected) <= 1e-4 * (1 + abs(expected)), "\(m.type) row \(r) token \(t): \(value) against \(expected)")
                        } else {
                            #expect(value.isFinite, "\(m.type) row \(r) token \(t) not written")
                        }
                    }
                }
            }
        }
    }
}
