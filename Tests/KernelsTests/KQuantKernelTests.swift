import Testing
@testable import Kernels

/// The C K-quant kernels (kquants.c) against the Swift references, bit for bit: random blocks
/// with ordinary and extreme F16 scales (subnormal, zero, negative, 65504), activations from the
/// Q8_K quantizer and raw random Q8_K bytes (any quant, any 16-element sum, extreme scales), one
/// activation (decode) and several (prompt tiles of 8, 4 and single leftovers), on one and two
/// threads.
@Suite(.enabled(if: FastKernels.available, FastKernelSupport.unavailable))
struct KQuantKernelTests {
    static let types: [BlockType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K]
    static let extremeScales: [Float] = [6e-8, 0, -0.75, 65504, -65504, 3e-5, 1, 1e-3]

    /// `blocks` random blocks of `type`; every third block gets extreme super-block scales.
    static func weights(_ type: BlockType, rows: Int, columns: Int, _ random: inout TestRandom) -> [UInt8] {
        var bytes = (0 ..< rows).flatMap { _ in randomRow(type, count: columns, &random) }
        let halves: [Int] = switch type {
        case .q2_K: [80, 82]
        case .q3_K: [108]
        case .q6_K: [208]
        default: [0, 2]
        }
        for b in 0 ..< bytes.count / type.blockBytes where b % 3 == 2 {
            for (k, offset) in halves.enumerated() {
                let v = Self.extremeScales[(b + 3 * k) % Self.extremeScales.count]
                let bits = Half.bits(v)
                bytes[b * type.blockBytes + offset] = UInt8(bits & 0xff)
                bytes[b * type.blockBytes + offset + 1] = UInt8(bits >> 8)
            }
        }
        return bytes
    }

    /// Q8_K activations: quantized floats, or (`raw`) random bytes with a finite scale.
    static func activations(columns: Int, tokens: Int, raw: Bool, _ random: inout TestRandom) -> [UInt8] {
        let stride = BlockType.q8_K.rowBytes(columns)!
        if raw {
            var a = random.bytes(stride * tokens)
            for b in 0 ..< a.count / Q8_K.blockBytes {
                let d: Float = [1e-3, -2.5, 1e30, 1e-38, 0][b % 5]
                withUnsafeBytes(of: d.bitPattern.littleEndian) { for k in 0 ..< 4 { a[b * Q8_K.blockBytes + k] = $0[k] } }
            }
            return a
        }
        let x = FastKernelTests.activations(columns * tokens, &random)
        var a = [UInt8](repeating: 0, count: stride * tokens)
        x.withUnsafeBufferPointer { FastKernels.quantize($0.baseAddress!, columns: columns, count: tokens, to: .q8_K, into: &a) }
        return a
    }

    @Test(arguments: types)
    func matrixProductEqualsReferenceDotProducts(type: BlockType) {
        var random = TestRandom(state: 100 &+ UInt64(Self.types.firstIndex(of: type)!))
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            for (rows, columns, tokens, raw) in [(1, 256, 1, false), (5, 512, 1, true), (7, 768, 2, false), (33, 256, 13, true),
                                                 (17, 1024, 8, false), (64, 2048, 1, false), (9, 256, 4, true), (40, 512, 21, false)] {
                let w = Self.weights(type, rows: rows, columns: columns, &random)
                let a = Self.activations(columns: columns, tokens: tokens, raw: raw, &random)
                let stride = BlockType.q8_K.rowBytes(columns)!
                var out = [Float](repeating: .nan, count: rows * tokens)
                w.withUnsafeBytes { wb in
                    let matrix = WeightMatrix(type: type, rows: rows, columns: columns, base: wb.baseAddress!)!
                    out.withUnsafeMutableBufferPointer { o in
                        let plan = MatMulPlan([MatMulJob(matrix, out: o.baseAddress!)])!
                        pool.multiply(plan, activations: a, activationStride: stride, count: tokens)
                    }
                    a.withUnsafeBytes { ab in
                        for t in 0 ..< tokens {
                            for r in 0 ..< rows {
                                let expected = RowKernels.dot(type, wb.baseAddress! + r * matrix.rowBytes, ab.baseAddress! + t * stride, count: columns)
                                #expect(out[t * rows + r].bitPattern == expected.bitPattern || (out[t * rows + r].isNaN && expected.isNaN),
                                        "\(type) \(rows)x\(columns) raw \(raw), token \(t), row \(r): \(out[t * rows + r]) != \(expected)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Q8_K quantization in C equals the Swift quantizer on floats of every magnitude, including
    /// all-zero blocks, ties of opposite sign, infinities and NaN.
    @Test func q8KQuantizerEqualsReference() {
        var random = TestRandom(state: 7)
        var x = FastKernelTests.activations(256 * 6, &random)
        x[3] = 5; x[9] = -5  // equal magnitudes: the first one sets the sign
        x[256 + 7] = .infinity
        x[512 + 1] = .nan
        x[768 + 4] = 1e38; x[768 + 5] = -1e-45
        for i in 1024 ..< 1280 { x[i] = 0 }
        var fast = [UInt8](repeating: 0xAA, count: 6 * Q8_K.blockBytes)
        var slow = [UInt8](repeating: 0x55, count: 6 * Q8_K.blockBytes)
        x.withUnsafeBufferPointer { FastKernels.quantize($0.baseAddress!, columns: 256 * 6, count: 1, to: .q8_K, into: &fast) }
        slow.withUnsafeMutableBytes { Q8_K.quantize(x, blocks: 6, into: $0.baseAddress!) }
        #expect(fast == slow)
    }

    /// A projection that mixes K-quant types with the same input width (Q4_K_M's Q4_K and Q6_K
    /// matrices) runs as one plan, every output equal to its reference.
    @Test func mixedKQuantPlanEqualsReference() {
        var random = TestRandom(state: 77)
        let columns = 512, tokens = 3
        let types: [BlockType] = [.q4_K, .q6_K, .q5_K, .q3_K, .q2_K]
        let rows = [12, 8, 4, 9, 16]
        let mats = zip(types, rows).map { Self.weights($0, rows: $1, columns: columns, &random) }
        let a = Self.activations(columns: columns, tokens: tokens, raw: false, &random)
        let stride = BlockType.q8_K.rowBytes(columns)!
        let outs = rows.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0 * tokens) }
        defer { outs.forEach { $0.deallocate() } }
        let bases = mats.map { m in UnsafeMutableRawBufferPointer.allocate(byteCount: m.count, alignment: 16) }
        defer { bases.forEach { $0.deallocate() } }
        for (b, m) in zip(bases, mats) { b.copyBytes(from: m) }
        let matrices = (0 ..< types.count).map { WeightMatrix(type: types[$0], rows: rows[$0], columns: columns, base: UnsafeRawPointer(bases[$0].baseAddress!))! }
        let plan = MatMulPlan(zip(matrices, outs).map { MatMulJob($0, out: $1.baseAddress!) })!
        ThreadPool(threads: 2).multiply(plan, activations: a, activationStride: stride, count: tokens)
        a.withUnsafeBytes { ab in
            for (j, m) in matrices.enumerated() {
                for t in 0 ..< tokens {
                    for r in 0 ..< m.rows {
                        let expected = RowKernels.dot(m.type, m.base + r * m.rowBytes, ab.baseAddress! + t * stride, count: columns)
                        #expect(outs[j][t * m.rows + r].bitPattern == expected.bitPattern, "\(m.type) row \(r) token \(t)")
                    }
                }
            }
        }
    }
}

extension KQuantKernelTests {
    /// The C dequantizer (BLAS prompt tiles, embedding rows) equals the Swift reference bit for
    /// bit, extreme scales included.
    @Test(arguments: types)
    func dequantizerEqualsReference(type: BlockType) {
        var random = TestRandom(state: 300 &+ UInt64(Self.types.firstIndex(of: type)!))
        let w = Self.weights(type, rows: 4, columns: 1024, &random)
        let count = 4 * 1024
        var fast = [Float](repeating: .nan, count: count)
        var slow = [Float](repeating: .nan, count: count)
        w.withUnsafeBytes { wb in
            #expect(FastKernels.dequantize(type, wb.baseAddress!, count: count, into: &fast))
            RowKernels.dequantize(type, wb.baseAddress!, count: count, into: &slow)
        }
        let differ = (0 ..< count).filter { fast[$0].bitPattern != slow[$0].bitPattern }
        #expect(differ.isEmpty, "\(type): \(differ.count) values differ, first at \(differ.first ?? -1)")
    }
}
