import CKernels
import Testing
@testable import Kernels

/// The register-blocked AVX512-VNNI Q4_K/Q6_K prompt GEMM (kquants.c, `sn_kquant_gemm_vnni`)
/// against the exact row kernel (`sn_kquant_rows`, ggml's `vec_dot` order), bit for bit: awkward
/// shapes (rows not a multiple of the 4-row tile, row ranges that cut tiles, 1 to 20 activations
/// and 67, past one 64-activation chunk), extreme F16 scales, raw Q8_K bytes (any quant, any
/// 16-element sum), and llama.cpp's own fixture matrices (`Fixtures/kquants.json`).
@Suite(.enabled(if: FastKernels.available, FastKernelSupport.unavailable), .serialized)
struct KQuantGEMMTests {
    /// `sn_kquant_gemm_vnni` (or, `avx2`, `sn_matmul_rows` with the AVX2 kernels forced: the row
    /// kernel) on rows `first ..< last` of `w`; NaN where nothing was written.
    static func run(_ type: BlockType, _ w: [UInt8], rows: Int, columns: Int, _ a: [UInt8], tokens: Int,
                    first: Int, last: Int, avx2: Bool) -> [UInt32] {
        var out = [Float](repeating: .nan, count: rows * tokens)
        let stride = BlockType.q8_K.rowBytes(columns)!
        w.withUnsafeBytes { wb in
            a.withUnsafeBytes { ab in
                out.withUnsafeMutableBufferPointer { o in
                    var job = sn_matmul_job(type: FastKernels.kernelType(type), w: wb.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                            row_bytes: type.rowBytes(columns)!, rows: Int32(rows), blocks: Int32(columns / 32),
                                            out: o.baseAddress!, out_stride: rows)
                    let acts = ab.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    if avx2 {
                        FastKernels.withInstructionSetForTesting(.avx2) {
                            sn_matmul_rows(&job, Int32(first), Int32(last), acts, stride, Int32(tokens))
                        }
                    } else {
                        sn_kquant_gemm_vnni(&job, Int32(first), Int32(last), acts, stride, Int32(tokens))
                    }
                }
            }
        }
        return out.map(\.bitPattern)
    }

    @Test(.enabled(if: VNNISupport.cpuHasVNNI, VNNISupport.unavailable), arguments: [BlockType.q4_K, .q6_K])
    func gemmEqualsRowKernelBitForBitOnAwkwardShapes(type: BlockType) {
        var random = TestRandom(state: type == .q4_K ? 0x4B4 : 0x4B6)
        for (rows, columns, raw) in [(1, 256, false), (3, 512, true), (5, 256, false), (7, 768, false),
                                     (13, 1024, true), (33, 256, false), (9, 2048, false)] {
            let w = KQuantKernelTests.weights(type, rows: rows, columns: columns, &random)
            let maxTokens = 67
            let a = KQuantKernelTests.activations(columns: columns, tokens: maxTokens, raw: raw, &random)
            var ranges = [(0, rows)]
            if rows > 2 { ranges.append((1, rows - 1)) }
            if rows > 6 { ranges.append((2, 7)) }
            for tokens in Array(1 ... 20) + [67] {
                for (first, last) in ranges {
                    let exact = Self.run(type, w, rows: rows, columns: columns, a, tokens: tokens, first: first, last: last, avx2: true)
                    let gemm = Self.run(type, w, rows: rows, columns: columns, a, tokens: tokens, first: first, last: last, avx2: false)
                    // NaN results (raw activations with extreme scales) must carry the same bits too.
                    #expect(gemm == exact, "\(type) \(rows)x\(columns) raw \(raw), rows \(first)..<\(last), \(tokens) tokens")
                    for t in 0 ..< tokens {
                        for r in 0 ..< rows where r < first || r >= last {
                            #expect(Float(bitPattern: gemm[t * rows + r]).isNaN, "row \(r) outside \(first)..<\(last) written")
                        }
                    }
                }
            }
        }
    }

    /// llama.cpp's fixture blocks against its four Q8_K activations: the GEMM gives ggml's
    /// `vec_dot` bits.
    @Test(.enabled(if: VNNISupport.cpuHasVNNI, VNNISupport.unavailable), arguments: ["Q4_K", "Q6_K"])
    func gemmEqualsGGMLFixture(name: String) throws {
        let type: BlockType = name == "Q4_K" ? .q4_K : .q6_K
        let entry = try #require(KQuantFixtureTests.fixture?.types[name], "fixture for \(name) missing")
        let w = KQuantFixtureTests.bytes(entry.blocks)
        let expected = entry.dots.map { KQuantFixtureTests.floatBits($0)[0] }
        let a = KQuantFixtureTests.activations()
        let rows = w.count / (2 * type.blockBytes), tokens = 4
        let gemm = Self.run(type, w, rows: rows, columns: 512, a, tokens: tokens, first: 0, last: rows, avx2: false)
        for r in 0 ..< rows {
            for t in 0 ..< tokens {
                #expect(gemm[t * rows + r] == expected[r * tokens + t], "\(name) row \(r) token \(t)")
            }
        }
    }
}
