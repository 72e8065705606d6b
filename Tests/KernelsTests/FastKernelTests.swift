import Foundation
import Testing
@testable import Kernels

/// Every C kernel against its Swift reference, bit for bit, on random inputs of awkward sizes.
/// On a CPU without AVX2/FMA/F16C the fast kernels are never called, and these tests say so.
enum FastKernelSupport {
    static let unavailable: Comment = "this CPU has no AVX2/FMA/F16C: the C kernels are not used"
}

@Suite(.enabled(if: FastKernels.available, FastKernelSupport.unavailable))
struct FastKernelTests {
    static let matrixTypes: [BlockType] = [.q4_1, .q8_0]
    static let profiles: [SIMDProfile] = SIMDProfile.allCases

    /// Random floats with a spread of magnitudes (and an occasional exact zero block).
    static func activations(_ count: Int, _ random: inout TestRandom) -> [Float] {
        (0 ..< count).map { i in
            if (i / 32) % 7 == 6 { return 0 }
            return random.float() * Float(1 << (i % 5)) * 0.7
        }
    }

    @Test(arguments: matrixTypes)
    func matrixProductEqualsReferenceDotProducts(type: BlockType) {
        var random = TestRandom(state: type == .q4_1 ? 11 : 12)
        let pool = ThreadPool(threads: 2)
        for (rows, columns, tokens) in [(1, 32, 1), (3, 64, 1), (5, 96, 2), (7, 160, 3), (11, 576, 4), (13, 256, 5), (64, 1536, 9), (9, 32, 1)] {
            let weights = (0 ..< rows).flatMap { _ in randomRow(type, count: columns, &random) }
            let x = Self.activations(columns * tokens, &random)
            let format = type.dotType
            let stride = format.rowBytes(columns)!
            var fast = [UInt8](repeating: 0, count: stride * tokens)
            var slow = [UInt8](repeating: 0, count: stride * tokens)
            x.withUnsafeBufferPointer { xp in
                FastKernels.quantize(xp.baseAddress!, columns: columns, count: tokens, to: format, into: &fast)
                slow.withUnsafeMutableBytes { out in
                    for t in 0 ..< tokens {
                        RowKernels.quantize(xp.baseAddress! + t * columns, count: columns, to: format, into: out.baseAddress! + t * stride)
                    }
                }
            }
            #expect(fast == slow, "quantized activations differ (\(type), \(columns) columns)")
            var out = [Float](repeating: .nan, count: rows * tokens)
            weights.withUnsafeBytes { w in
                let matrix = WeightMatrix(type: type, rows: rows, columns: columns, base: w.baseAddress!)!
                out.withUnsafeMutableBufferPointer { o in
                    let plan = MatMulPlan([MatMulJob(matrix, out: o.baseAddress!)])!
                    pool.multiply(plan, activations: fast, activationStride: stride, count: tokens)
                }
                fast.withUnsafeBytes { a in
                    for t in 0 ..< tokens {
                        for r in 0 ..< rows {
                            let expected = RowKernels.dot(type, w.baseAddress! + r * matrix.rowBytes, a.baseAddress! + t * stride, count: columns)
                            #expect(out[t * rows + r].bitPattern == expected.bitPattern,
                                    "\(type) \(rows)x\(columns), token \(t), row \(r): \(out[t * rows + r]) != \(expected)")
                        }
                    }
                }
            }
        }
    }

    @Test func severalJobsShareActivationsAndSplitRowsAcrossThreads() {
        var random = TestRandom(state: 13)
        let columns = 576
        let sizes = [576, 192, 192]
        let mats = sizes.map { rows in (0 ..< rows).flatMap { _ in randomRow(.q4_1, count: columns, &random) } }
        let x = Self.activations(columns * 3, &random)
        let stride = BlockType.q8_1.rowBytes(columns)!
        var a = [UInt8](repeating: 0, count: stride * 3)
        x.withUnsafeBufferPointer { FastKernels.quantize($0.baseAddress!, columns: columns, count: 3, to: .q8_1, into: &a) }
        func run(threads: Int) -> [[Float]] {
            let pool = ThreadPool(threads: threads)
            let outs = sizes.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0 * 3) }
            defer { outs.forEach { $0.deallocate() } }
            for o in outs { o.initialize(repeating: .nan) }
            let bases = mats.map { m in UnsafeMutableRawBufferPointer.allocate(byteCount: m.count, alignment: 16) }
            defer { bases.forEach { $0.deallocate() } }
            for (b, m) in zip(bases, mats) { b.copyBytes(from: m) }
            let jobs = sizes.indices.map { i in
                MatMulJob(WeightMatrix(type: .q4_1, rows: sizes[i], columns: columns, base: UnsafeRawPointer(bases[i].baseAddress!))!,
                          out: outs[i].baseAddress!)
            }
            pool.multiply(MatMulPlan(jobs)!, activations: a, activationStride: stride, count: 3)
            return outs.map { Array($0) }
        }
        let one = run(threads: 1), two = run(threads: 2), three = run(threads: 3)
        #expect(one.allSatisfy { $0.allSatisfy { !$0.isNaN } }, "every output written")
        #expect(one == two && one == three, "the split among threads does not change any result")
    }

    /// A matrix packed in place (as the model loader does) unpacks to its rows, dequantizes as
    /// before, and multiplies exactly as a plan's own packed copy of the ggml rows; odd row counts
    /// keep their last rows unpacked.
    @Test(arguments: matrixTypes)
    func packedMatrixMatchesItsRows(type: BlockType) {
        var random = TestRandom(state: type == .q4_1 ? 41 : 42)
        let pool = ThreadPool(threads: 2)
        for (rows, columns, tokens) in [(10, 96, 1), (8, 64, 5), (13, 576, 9), (4, 32, 3)] {
            let original = (0 ..< rows).flatMap { _ in randomRow(type, count: columns, &random) }
            var packed = original
            let x = Self.activations(columns * tokens, &random)
            let stride = type.dotType.rowBytes(columns)!
            var a = [UInt8](repeating: 0, count: stride * tokens)
            x.withUnsafeBufferPointer { FastKernels.quantize($0.baseAddress!, columns: columns, count: tokens, to: type.dotType, into: &a) }
            var fromRows = [Float](repeating: .nan, count: rows * tokens)
            var fromPacked = [Float](repeating: .nan, count: rows * tokens)
            original.withUnsafeBytes { w in
                let m = WeightMatrix(type: type, rows: rows, columns: columns, base: w.baseAddress!)!
                fromRows.withUnsafeMutableBufferPointer { o in
                    pool.multiply(MatMulPlan([MatMulJob(m, out: o.baseAddress!)])!, activations: a, activationStride: stride, count: tokens)
                }
            }
            packed.withUnsafeMutableBytes { w in
                var m = WeightMatrix(type: type, rows: rows, columns: columns, base: w.baseAddress!)!
                FastKernels.pack(m, in: w.baseAddress!)
                m.isPacked = true
                #expect(Array(w) != original || rows < 4, "packing moved bytes")
                var row = [UInt8](repeating: 0, count: m.rowBytes)
                var values = [Float](repeating: 0, count: columns), expected = values
                for r in 0 ..< rows {
                    row.withUnsafeMutableBytes { FastKernels.unpackRow(m, r, into: $0.baseAddress!) }
                    #expect(row == Array(original[r * m.rowBytes ..< (r + 1) * m.rowBytes]), "\(type) row \(r) of \(rows)")
                    m.dequantizeRow(r, into: &values)
                    original.withUnsafeBytes { RowKernels.dequantize(type, $0.baseAddress! + r * m.rowBytes, count: columns, into: &expected) }
                    #expect(values.map(\.bitPattern) == expected.map(\.bitPattern))
                }
                fromPacked.withUnsafeMutableBufferPointer { o in
                    pool.multiply(MatMulPlan([MatMulJob(m, out: o.baseAddress!)])!, activations: a, activationStride: stride, count: tokens)
                }
            }
            #expect(fromRows.map(\.bitPattern) == fromPacked.map(\.bitPattern), "\(type) \(rows)x\(columns), \(tokens) tokens")
        }
    }

    @Test func planRefusesMixedOrUnsupportedJobs() {
        var out = [Float](repeating: 0, count: 4)
        let w = [UInt8](repeating: 0, count: 4 * 32 * 4)
        w.withUnsafeBytes { base in
            out.withUnsafeMutableBufferPointer { o in
                let f32 = WeightMatrix(type: .f32, rows: 1, columns: 32, base: base.baseAddress!)!
                #expect(MatMulPlan([MatMulJob(f32, out: o.baseAddress!)]) == nil)
                let a = WeightMatrix(type: .q4_1, rows: 1, columns: 32, base: base.baseAddress!)!
                let b = WeightMatrix(type: .q8_0, rows: 1, columns: 32, base: base.baseAddress!)!
                #expect(MatMulPlan([MatMulJob(a, out: o.baseAddress!), MatMulJob(b, out: o.baseAddress!)]) == nil)
                #expect(MatMulPlan([]) == nil)
            }
        }
    }

    @Test(arguments: profiles)
    func attentionEqualsReference(profile: SIMDProfile) {
        var random = TestRandom(state: profile == .avx2 ? 21 : 22)
        for headDim in [64, 48, 24] {
            let stride = 3 * headDim
            let maxPositions = 133
            let keys = (0 ..< maxPositions * stride).map { _ in Half.bits(random.float() * 2) }
            let values = (0 ..< maxPositions * stride).map { _ in Half.bits(random.float() * 3) }
            let query = (0 ..< headDim).map { _ in random.float() * 4 }
            var scratch = [Float](repeating: 0, count: Attention.scratchCount(positions: maxPositions, headDim: headDim))
            var scratch2 = scratch
            for positions in [1, 2, 7, 31, 32, 33, 64, 65, 100, 133] {
                for order in [Attention.DotOrder.tinyBLAS, .vecDotF16] {
                    var fast = [Float](repeating: .nan, count: headDim)
                    var slow = [Float](repeating: .nan, count: headDim)
                    keys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { v in
                        let offset = headDim  // the second KV head
                        FastKernels.attentionHead(query: query, keys: k.baseAddress! + offset, values: v.baseAddress! + offset,
                                                  stride: stride, positions: positions, headDim: headDim, scale: 0.125,
                                                  order: order, profile: profile, scratch: &scratch, out: &fast)
                        Attention.head(query: query, keys: k.baseAddress! + offset, values: v.baseAddress! + offset,
                                       stride: stride, positions: positions, headDim: headDim, scale: 0.125,
                                       order: order, profile: profile, scratch: &scratch2, out: &slow)
                    }}
                    #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern),
                            "\(profile) \(order) headDim \(headDim) positions \(positions)")
                }
            }
        }
    }

    @Test(arguments: profiles)
    func swigluEqualsReference(profile: SIMDProfile) {
        var random = TestRandom(state: 31)
        for count in [1536, 40, 7] {
            // Wide range, including arguments where exp saturates (|x| > 88) and the two-step scaling of |n| > 126.
            let gate = (0 ..< count).map { i in random.float() * (i % 9 == 0 ? 200 : 12) }
            let up = (0 ..< count).map { _ in random.float() }
            var fast = gate, slow = gate
            FastKernels.swiglu(&fast, up, count: count, profile: profile)
            VectorOps.swiglu(&slow, up, count: count, profile: profile)
            #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern), "\(profile), \(count) values")
        }
    }

    @Test func halfConversionsEqualReference() {
        var random = TestRandom(state: 41)
        let x = (0 ..< 77).map { i in random.float() * Float(1 << (i % 20)) } + [70000, -70000, 1e-8, 0, -0.0]
        var bits = [UInt16](repeating: 0, count: x.count)
        FastKernels.toHalf(x, &bits, count: x.count)
        #expect(bits == x.map(Half.bits))
        var back = [Float](repeating: 0, count: x.count)
        FastKernels.fromHalf(bits, &back, count: x.count)
        #expect(back.map(\.bitPattern) == bits.map { Half.toFloat($0).bitPattern })
    }
}
