import Foundation
import Testing
@testable import Kernels

/// Q4_0, Q5_0 and Q5_1: the C kernels (q32.c) against the Swift references, bit for bit, on random
/// blocks with edge values: the largest and smallest F16 scales, negative scales, zero scales,
/// all-zero blocks, every quant at its extreme. Nothing here makes a NaN or an infinity.
@Suite(.enabled(if: FastKernels.available, FastKernelSupport.unavailable))
struct Q32KernelTests {
    static let types: [BlockType] = [.q4_0, .q5_0, .q5_1]
    /// F16 bit patterns of edge scales: 65504, -65504, the smallest subnormal (+-), 0, 1, -1, the smallest normal.
    static let edgeHalves: [UInt16] = [0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x0000, 0x3C00, 0xBC00, 0x0400]

    /// Random blocks of `type`: every seventh block's scale an edge value, every eleventh block all
    /// zero, every thirteenth all ones (quants and high bits at their maximum).
    static func blocks(_ type: BlockType, count: Int, _ random: inout TestRandom) -> [UInt8] {
        var bytes = random.bytes(type.rowBytes(count)!)
        func put(_ offset: Int, _ bits: UInt16) { bytes[offset] = UInt8(bits & 0xff); bytes[offset + 1] = UInt8(bits >> 8) }
        for b in 0 ..< count / 32 {
            let o = b * type.blockBytes
            if b % 11 == 10 {
                for i in 0 ..< type.blockBytes { bytes[o + i] = 0 }
                continue
            }
            if b % 13 == 12 { for i in 2 ..< type.blockBytes { bytes[o + i] = 0xff } }
            if b % 7 == 3 {
                put(o, edgeHalves[(b / 7) % edgeHalves.count])
                if type == .q5_1 { put(o + 2, edgeHalves[(b / 7 + 3) % edgeHalves.count]) }
            } else {
                put(o, Half.bits(0.02 * random.float()))
                if type == .q5_1 { put(o + 2, Half.bits(0.1 * random.float())) }
            }
        }
        return bytes
    }

    /// Activations of several magnitudes (kept so that no F16 scale or sum overflows).
    static func activations(_ count: Int, _ random: inout TestRandom) -> [Float] {
        (0 ..< count).map { i in
            if (i / 32) % 9 == 8 { return 0 }
            return random.float() * [0.001, 0.1, 1, 10][(i / 32) % 4]
        }
    }

    @Test(arguments: types)
    func matrixProductEqualsReference(type: BlockType) {
        var random = TestRandom(state: 0x5150 + UInt64(type.blockBytes))
        let pool = ThreadPool(threads: 2)
        for (rows, columns, tokens) in [(1, 32, 1), (3, 64, 1), (8, 96, 1), (13, 256, 1), (5, 96, 2), (7, 160, 3),
                                        (11, 576, 4), (13, 256, 5), (64, 1536, 9), (9, 32, 1), (17, 64, 7)] {
            let weights = Self.blocks(type, count: rows * columns, &random)
            let x = Self.activations(columns * tokens, &random)
            let format = type.dotType
            let stride = format.rowBytes(columns)!
            var a = [UInt8](repeating: 0, count: stride * tokens)
            x.withUnsafeBufferPointer { FastKernels.quantize($0.baseAddress!, columns: columns, count: tokens, to: format, into: &a) }
            var out = [Float](repeating: .nan, count: rows * tokens)
            weights.withUnsafeBytes { w in
                let matrix = WeightMatrix(type: type, rows: rows, columns: columns, base: w.baseAddress!)!
                out.withUnsafeMutableBufferPointer { o in
                    pool.multiply(MatMulPlan([MatMulJob(matrix, out: o.baseAddress!)])!, activations: a, activationStride: stride, count: tokens)
                }
                a.withUnsafeBytes { ap in
                    for t in 0 ..< tokens {
                        for r in 0 ..< rows {
                            let expected = RowKernels.referenceDot(type, w.baseAddress! + r * matrix.rowBytes, ap.baseAddress! + t * stride, count: columns)
                            #expect(expected.isFinite)
                            #expect(out[t * rows + r].bitPattern == expected.bitPattern,
                                    "\(type) \(rows)x\(columns), token \(t), row \(r): \(out[t * rows + r]) != \(expected)")
                        }
                    }
                }
                // Packing permutes Q4_0's whole groups of eight rows in place (Q5_0 and Q5_1 stay
                // ggml rows: it leaves their bytes); unpacking gives back every row as it was.
                var copy = Array(w)
                copy.withUnsafeMutableBytes { FastKernels.pack(matrix, in: $0.baseAddress!) }
                #expect((copy == Array(w)) == (type != .q4_0 || rows < 8), "\(type) \(rows) rows: packed bytes")
                copy.withUnsafeBytes { packed in
                    var view = WeightMatrix(type: type, rows: rows, columns: columns, base: packed.baseAddress!)!
                    view.isPacked = true
                    for r in 0 ..< rows {
                        var row = [UInt8](repeating: 0, count: matrix.rowBytes)
                        row.withUnsafeMutableBytes { FastKernels.unpackRow(view, r, into: $0.baseAddress!) }
                        #expect(row == Array(w[r * matrix.rowBytes ..< (r + 1) * matrix.rowBytes]), "\(type) row \(r) of \(rows)")
                    }
                }
            }
        }
    }

    @Test(arguments: types)
    func fastDequantizerEqualsReference(type: BlockType) {
        var random = TestRandom(state: 0xDE0 + UInt64(type.blockBytes))
        let count = 32 * 40
        let bytes = Self.blocks(type, count: count, &random)
        var fast = [Float](repeating: .nan, count: count), reference = fast
        bytes.withUnsafeBytes { w in
            FastKernels.dequantize(type, w.baseAddress!, count: count, into: &fast)
            RowKernels.dequantize(type, w.baseAddress!, count: count, into: &reference)
        }
        #expect(fast.map(\.bitPattern) == reference.map(\.bitPattern))
        #expect(reference.allSatisfy { $0.isFinite })
    }

    /// Q5_0's fifth bit: element j's high bit is bit j of `qh`; a block whose nibbles are all zero
    /// and whose `qh` has exactly bit j set dequantizes to 0 at j and to -16 d elsewhere.
    @Test func fifthBitLandsOnItsElement() {
        for j in [0, 1, 15, 16, 17, 31] {
            var block = [UInt8](repeating: 0, count: Q5_0.blockBytes)
            block[0] = 0x00; block[1] = 0x3C  // d = 1
            let qh = UInt32(1) << UInt32(j)
            for k in 0 ..< 4 { block[2 + k] = UInt8((qh >> UInt32(8 * k)) & 0xff) }
            var y = [Float](repeating: .nan, count: 32)
            block.withUnsafeBytes { Q5_0.dequantize($0.baseAddress!, blocks: 1, into: &y) }
            #expect(y == (0 ..< 32).map { $0 == j ? 0 : -16 }, "bit \(j)")
        }
    }
}
