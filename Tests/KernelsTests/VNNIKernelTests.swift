import CKernels
import Foundation
import Testing
@testable import Kernels

/// The AVX512-VNNI matrix products (vnni.c; q32.c's for Q4_0, Q5_0 and Q5_1) against the AVX2 ones
/// (kernels.c, q32.c), bit for bit, on this machine: random packed Q4_1, Q8_0 and Q4_0 matrices and
/// ggml-row Q5_0/Q5_1 ones of awkward shapes (rows not a multiple of four or eight, row ranges that start or end
/// inside a group, 1 to 20 activations, so partial tiles of every kernel), and both against the
/// Swift reference dot products.
enum VNNISupport {
    /// Whether /proc/cpuinfo lists the AVX-512 subsets the VNNI kernels need.
    static let cpuHasVNNI: Bool = {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return false }
        let flags = Set(line.split(separator: " ").map(String.init))
        return ["avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx2", "fma", "f16c"].allSatisfy(flags.contains)
    }()
    static let unavailable: Comment = "this CPU has no AVX512-VNNI: only the AVX2 kernels run"
}

@Suite(.enabled(if: FastKernels.available, FastKernelSupport.unavailable), .serialized)
struct VNNIKernelTests {
    /// On a CPU with AVX-512 F/BW/VL/VNNI the matrix products take the VNNI kernels (so the
    /// comparisons below compare two different paths), and the testing switch turns them off.
    @Test func cpuWithVNNITakesTheVNNIKernelsAndTheSwitchForcesAVX2() {
        let machine: FastKernels.InstructionSet = VNNISupport.cpuHasVNNI ? .avx512VNNI : .avx2
        FastKernels.withInstructionSetForTesting(.avx512VNNI) {
            #expect(FastKernels.instructionSet == machine)
            FastKernels.withInstructionSetForTesting(.avx2) {
                #expect(FastKernels.instructionSet == .avx2)
                // What decides results (which prompt products stay exact) does not follow the switch.
                #expect(FastKernels.machineInstructionSet == machine)
            }
            #expect(FastKernels.instructionSet == machine)
        }
    }

    @Test(.enabled(if: VNNISupport.cpuHasVNNI, VNNISupport.unavailable), arguments: [BlockType.q4_1, .q8_0, .q4_0, .q5_0, .q5_1])
    func vnniProductsEqualAVX2ProductsBitForBitOnAwkwardShapes(type: BlockType) {
        var random = TestRandom(state: 0x7700 + UInt64(type.blockBytes))
        let format = type.dotType
        for (rows, columns) in [(1, 32), (3, 64), (6, 96), (7, 160), (13, 576), (30, 64), (9, 1536)] {
            let original = (0 ..< rows).flatMap { _ in randomRow(type, count: columns, &random) }
            var packed = original
            let rowBytes = type.rowBytes(columns)!
            let blocks = Int32(columns / 32)
            if FastKernels.packs(type) {
                packed.withUnsafeMutableBytes { w in
                    let matrix = WeightMatrix(type: type, rows: rows, columns: columns, base: w.baseAddress!)!
                    FastKernels.pack(matrix, in: w.baseAddress!)
                }
            }
            let maxTokens = 20
            let x = FastKernelTests.activations(columns * maxTokens, &random)
            let stride = format.rowBytes(columns)!
            var a = [UInt8](repeating: 0, count: stride * maxTokens)
            x.withUnsafeBufferPointer { FastKernels.quantize($0.baseAddress!, columns: columns, count: maxTokens, to: format, into: &a) }
            // Row ranges: whole matrix, and (when there are enough rows) ones that cut groups of four.
            var ranges = [(0, rows)]
            if rows > 2 { ranges.append((1, rows - 1)) }
            if rows > 6 { ranges.append((2, 6)) }
            if rows > 11 { ranges.append((3, rows)) }
            for tokens in 1 ... maxTokens {
                for (first, last) in ranges {
                    func run(_ isa: FastKernels.InstructionSet) -> [UInt32] {
                        var out = [Float](repeating: .nan, count: rows * tokens)
                        packed.withUnsafeBytes { w in
                            a.withUnsafeBytes { ap in
                                out.withUnsafeMutableBufferPointer { o in
                                    var job = sn_matmul_job(type: FastKernels.kernelType(type),
                                                            w: w.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                            row_bytes: rowBytes, rows: Int32(rows), blocks: blocks,
                                                            out: o.baseAddress!, out_stride: rows)
                                    let acts = ap.baseAddress!.assumingMemoryBound(to: UInt8.self)
                                    FastKernels.withInstructionSetForTesting(isa) {
                                        if isa == .avx2 || tokens == 1 || !FastKernels.packs(type) || type == .q4_0 {
                                            sn_matmul_rows(&job, Int32(first), Int32(last), acts, stride, Int32(tokens))
                                        } else {
                                            sn_matmul_rows_vnni(&job, Int32(first), Int32(last), acts, stride, Int32(tokens))
                                        }
                                    }
                                }
                            }
                        }
                        return out.map(\.bitPattern)
                    }
                    let avx2 = run(.avx2), vnni = run(.avx512VNNI)
                    #expect(avx2 == vnni, "\(type) \(rows)x\(columns), rows \(first)..<\(last), \(tokens) tokens")
                    // Outside the range nothing is written; inside, both equal the reference.
                    original.withUnsafeBytes { w in
                        a.withUnsafeBytes { ap in
                            for t in 0 ..< tokens {
                                for r in 0 ..< rows {
                                    let got = vnni[t * rows + r]
                                    if r < first || r >= last {
                                        #expect(Float(bitPattern: got).isNaN, "row \(r) outside \(first)..<\(last) written")
                                        continue
                                    }
                                    let expected = RowKernels.dot(type, w.baseAddress! + r * rowBytes, ap.baseAddress! + t * stride, count: columns)
                                    #expect(got == expected.bitPattern, "\(type) \(rows)x\(columns), token \(t), row \(r)")
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A pool call of Q4_1 jobs makes the activations' scale tables once for all its members
    /// (`sn_pool_matmul`, `sn_matmul_rows_vnni_tables`): two jobs of different heights through a
    /// pool of two, 2 to 66 activations (past the 64 the tables hold, so both paths), and rows
    /// that are not a multiple of four, against the AVX2 kernels job by job, bit for bit.
    @Test(.enabled(if: VNNISupport.cpuHasVNNI, VNNISupport.unavailable))
    func pooledQ4_1ProductsWithSharedActivationTablesEqualAVX2Products() throws {
        var random = TestRandom(state: 0x7731)
        let type = BlockType.q4_1, columns = 576
        let heights = [203, 64]
        let rowBytes = type.rowBytes(columns)!
        var matrices = heights.map { rows in (0 ..< rows).flatMap { _ in randomRow(type, count: columns, &random) } }
        for k in matrices.indices {
            matrices[k].withUnsafeMutableBytes { w in
                FastKernels.pack(WeightMatrix(type: type, rows: heights[k], columns: columns, base: w.baseAddress!)!, in: w.baseAddress!)
            }
        }
        let maxTokens = 66
        let stride = type.dotType.rowBytes(columns)!
        var a = [UInt8](repeating: 0, count: stride * maxTokens)
        let x = FastKernelTests.activations(columns * maxTokens, &random)
        x.withUnsafeBufferPointer { FastKernels.quantize($0.baseAddress!, columns: columns, count: maxTokens, to: type.dotType, into: &a) }
        let pool = try #require(sn_pool_create(2))
        defer { sn_pool_destroy(pool) }
        let weights = matrices.map { m in
            let p = UnsafeMutableRawPointer.allocate(byteCount: m.count, alignment: 64)
            m.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: m.count) }
            return p
        }
        defer { weights.forEach { $0.deallocate() } }
        for tokens in [2, 7, 8, 9, 16, 17, 31, 63, 64, 65, 66] {
            let pooled = heights.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0 * tokens) }
            let alone = heights.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0 * tokens) }
            defer { (pooled + alone).forEach { $0.deallocate() } }
            (pooled + alone).forEach { $0.initialize(repeating: .nan) }
            var jobs = (0 ..< 2).map { k in
                sn_matmul_job(type: FastKernels.kernelType(type), w: UnsafePointer(weights[k].assumingMemoryBound(to: UInt8.self)),
                              row_bytes: rowBytes, rows: Int32(heights[k]), blocks: Int32(columns / 32),
                              out: pooled[k].baseAddress!, out_stride: heights[k])
            }
            a.withUnsafeBytes { ap in
                let acts = ap.baseAddress!.assumingMemoryBound(to: UInt8.self)
                sn_pool_matmul(pool, &jobs, 2, acts, stride, Int32(tokens))
                for k in 0 ..< 2 {
                    var job = jobs[k]
                    job.out = alone[k].baseAddress!
                    FastKernels.withInstructionSetForTesting(.avx2) {
                        sn_matmul_rows(&job, 0, Int32(heights[k]), acts, stride, Int32(tokens))
                    }
                }
            }
            for k in 0 ..< 2 {
                #expect(pooled[k].map(\.bitPattern) == alone[k].map(\.bitPattern), "job \(k), \(tokens) tokens")
            }
        }
    }
}
