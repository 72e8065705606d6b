import Testing
@testable import Kernels

/// Hand-built blocks of every format with values worked out by hand from the format's definition
/// (the comments show the arithmetic), for the reference dequantizers and dot products.
@Suite struct BlockFormatTests {
    /// F16 bits of some exact values: 1.0 = 0x3C00, 0.5 = 0x3800, 0.25 = 0x3400, 2.0 = 0x4000,
    /// -1.0 = 0xBC00, 0.125 = 0x3000.
    static func half(_ bits: UInt16) -> [UInt8] { [UInt8(bits & 0xff), UInt8(bits >> 8)] }

    func dequantize(_ type: BlockType, _ bytes: [UInt8], count: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: count)
        bytes.withUnsafeBytes { RowKernels.dequantize(type, $0.baseAddress!, count: count, into: &out) }
        return out
    }

    func dot(_ type: BlockType, _ w: [UInt8], _ a: [UInt8], count: Int) -> (Float, Float) {
        w.withUnsafeBytes { wb in
            a.withUnsafeBytes { ab in
                (RowKernels.referenceDot(type, wb.baseAddress!, ab.baseAddress!, count: count),
                 RowKernels.dot(type, wb.baseAddress!, ab.baseAddress!, count: count))
            }
        }
    }

    @Test func blockSizesMatchGGML() {
        let expected: [BlockType: (Int, Int)] = [
            .f32: (1, 4), .f16: (1, 2), .bf16: (1, 2), .q4_0: (32, 18), .q4_1: (32, 20), .q8_0: (32, 34),
            .q8_1: (32, 36), .q4_K: (256, 144), .q6_K: (256, 210), .q8_K: (256, 292),
            .q2_K: (256, 84), .q3_K: (256, 110), .q5_K: (256, 176), .q5_0: (32, 22), .q5_1: (32, 24),
        ]
        for type in BlockType.allCases {
            #expect(type.blockSize == expected[type]!.0 && type.blockBytes == expected[type]!.1, "\(type)")
        }
        #expect(BlockType.q4_1.rowBytes(576) == 18 * 20)
        #expect(BlockType.q4_1.rowBytes(100) == nil)
    }

    @Test func halfAndBFloat16() {
        #expect(Half.toFloat(0x3C00) == 1 && Half.toFloat(0xC000) == -2 && Half.toFloat(0x0001) == 0x1p-24)
        #expect(Half.bits(0.1) == 0x2E66) // 0.0999755859375, nearest to 0.1
        #expect(Half.bits(65520) == 0x7C00) // rounds up to infinity
        #expect(BFloat16.toFloat(0x3F80) == 1 && BFloat16.bits(1.00390625) == 0x3F80) // a tie, to even
        #expect(BFloat16.bits(1.01171875) == 0x3F82) // tie rounds up to the even 0x3F82
    }

    /// Q4_0 with d = 0.5: q = 0..15 low nibbles, 15..0 high nibbles: x = (q - 8) * 0.5.
    @Test func q4_0() {
        let qs = (0 ..< 16).map { UInt8($0) | UInt8(15 - $0) << 4 }
        let block = Self.half(0x3800) + qs
        let x = dequantize(.q4_0, block, count: 32)
        #expect(x[0] == -4 && x[15] == 3.5 && x[16] == 3.5 && x[31] == -4)
        // With Q8_0 activations all 1 (d = 1): sum (q - 8) * 0.5 over 32 = 0.5 * (sum_{0..15}(q-8) * 2) = 0.5 * (-8 * 2) = -8.
        let ones = Self.half(0x3C00) + [UInt8](repeating: 1, count: 32)
        let (reference, fast) = dot(.q4_0, block, ones, count: 32)
        #expect(reference == -8 && fast == -8)
    }

    /// Q4_1 with d = 0.25, m = -1: x = q * 0.25 - 1.
    @Test func q4_1() {
        let qs = (0 ..< 16).map { UInt8($0) | UInt8(15 - $0) << 4 }
        let block = Self.half(0x3400) + Self.half(0xBC00) + qs
        let x = dequantize(.q4_1, block, count: 32)
        #expect(x[0] == -1 && x[1] == -0.75 && x[15] == 2.75 && x[16] == 2.75 && x[31] == -1)
        // Q8_1 activations: d = 1, all q = 2, s = d * sum(q) = 64:
        // d_w d_a sum q_w q_a + m s = 0.25 * 2 * (2 * 120) + (-1) * 64 = 120 - 64 = 56.
        let act = Self.half(0x3C00) + Self.half(0x5400) + [UInt8](repeating: 2, count: 32)
        let (reference, fast) = dot(.q4_1, block, act, count: 32)
        #expect(reference == 56 && fast == 56)
        // Equal to the dot of the dequantized values with the activations: sum (x_j * 2) = 2 * 28 = 56.
        #expect(x.reduce(0, +) * 2 == 56)
    }

    /// Q8_0 with d = 0.125: x = q / 8; dot with itself = d^2 sum q^2.
    @Test func q8_0() {
        let qs: [Int8] = (0 ..< 32).map { Int8($0 - 16) }
        let block = Self.half(0x3000) + qs.map { UInt8(bitPattern: $0) }
        let x = dequantize(.q8_0, block, count: 32)
        #expect(x[0] == -2 && x[16] == 0 && x[31] == 1.875)
        // sum_{k=-16}^{15} k^2 = 2 * (1 + ... + 15^2) + 256 = 2 * 1240 + 256 = 2736; times 1/64 = 42.75.
        let (reference, fast) = dot(.q8_0, block, block, count: 32)
        #expect(reference == 42.75 && fast == 42.75)
    }

    /// Quantizing activations: the largest magnitude maps to +-127, d = amax / 127 (F16), ties to even.
    @Test func activationQuantizers() {
        var x = [Float](repeating: 0, count: 32)
        x[0] = 127; x[1] = -63.5; x[2] = 0.5; x[3] = 1.5; x[4] = -2.5
        var q8_0 = [UInt8](repeating: 0, count: 34)
        var q8_1 = [UInt8](repeating: 0, count: 36)
        q8_0.withUnsafeMutableBytes { RowKernels.quantize(x, count: 32, to: .q8_0, into: $0.baseAddress!) }
        q8_1.withUnsafeMutableBytes { RowKernels.quantize(x, count: 32, to: .q8_1, into: $0.baseAddress!) }
        // d = 1 (0x3C00); q = 127, -64 (-63.5 ties to even), 0, 2, -2.
        #expect(Array(q8_0[0 ..< 7]) == [0x00, 0x3C, 127, UInt8(bitPattern: -64), 0, 2, UInt8(bitPattern: -2)])
        // Q8_1: s = d * sum(q) = 127 - 64 + 2 - 2 = 63 = 0x53E0 in F16.
        #expect(Array(q8_1[0 ..< 4]) == [0x00, 0x3C, 0xE0, 0x53])
        #expect(Array(q8_1[4 ..< 9]) == [127, UInt8(bitPattern: -64), 0, 2, UInt8(bitPattern: -2)])
        // Q8_K: iscale = -127 / max where max is the signed element of largest magnitude (127):
        // q = nearest(-x): -127, 64 (63.5 to even), 0 (-0.5 to even), -2, 2; d = 1 / iscale = -1.
        var x256 = [Float](repeating: 0, count: 256)
        for i in 0 ..< 5 { x256[i] = x[i] }
        var q8_K = [UInt8](repeating: 0, count: 292)
        q8_K.withUnsafeMutableBytes { RowKernels.quantize(x256, count: 256, to: .q8_K, into: $0.baseAddress!) }
        q8_K.withUnsafeBytes { #expect(Q8_K.scale($0.baseAddress!) == -1) }
        #expect(Array(q8_K[4 ..< 9]) == [UInt8(bitPattern: -127), 64, 0, UInt8(bitPattern: -2), 2])
        // bsums[0] = -127 + 64 - 2 + 2 = -63.
        q8_K.withUnsafeBytes { #expect(Q8_K.blockSum($0.baseAddress!, 0) == -63) }
    }

    /// Q4_K: d = 1, dmin = 0.5; sub-block scales 1..8 and minimums 0..7 (6-bit, packed as
    /// ggml's get_scale_min_k4 reads them); every quant 3: x = d * sc[s] * 3 - dmin * m[s].
    @Test func q4_K() {
        let sc: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8], mn: [UInt8] = [0, 1, 2, 3, 4, 5, 6, 7]
        var scales = [UInt8](repeating: 0, count: 12)
        for j in 0 ..< 4 { scales[j] = sc[j]; scales[j + 4] = mn[j] }
        for j in 4 ..< 8 { scales[j + 4] = (sc[j] & 0x0f) | ((mn[j] & 0x0f) << 4) } // high 2 bits are 0
        let block = Self.half(0x3C00) + Self.half(0x3800) + scales + [UInt8](repeating: 0x33, count: 128)
        let x = dequantize(.q4_K, block, count: 256)
        for s in 0 ..< 8 {
            #expect(x[32 * s] == Float(3 * Int(sc[s])) - 0.5 * Float(mn[s]), "sub-block \(s)")
            #expect(x[32 * s + 31] == x[32 * s])
        }
        // Q8_K activations all 1, d = 1: sum over s of 32 * (3 sc[s] - 0.5 m[s]) = 32 * (3 * 36 - 0.5 * 28) = 32 * 94 = 3008.
        var act = [UInt8](repeating: 0, count: 292)
        withUnsafeBytes(of: Float(1).bitPattern.littleEndian) { for k in 0 ..< 4 { act[k] = $0[k] } }
        for j in 0 ..< 256 { act[4 + j] = 1 }
        for g in 0 ..< 16 { act[260 + 2 * g] = 16 }
        let (reference, fast) = dot(.q4_K, block, act, count: 256)
        #expect(reference == 3008 && fast == 3008)
    }

    /// Q6_K: d = 0.5, scales[s] = s + 1; every 6-bit quant 33 (low nibble 1, high bits 2), so
    /// x = 0.5 * scale * (33 - 32) = 0.5 * scale, scale index as ggml lays it out.
    @Test func q6_K() {
        let ql = [UInt8](repeating: 0x11, count: 128)
        let qh = [UInt8](repeating: 0xAA, count: 64) // 2 in every 2-bit field
        let scales = (0 ..< 16).map { UInt8($0 + 1) }
        let block = ql + qh + scales + Self.half(0x3800)
        let x = dequantize(.q6_K, block, count: 256)
        // Element l + 32k of half n has scale index 8n + l/16 + 2k.
        for n in 0 ..< 2 {
            for k in 0 ..< 4 {
                for l in [0, 15, 16, 31] {
                    #expect(x[128 * n + 32 * k + l] == 0.5 * Float(8 * n + l / 16 + 2 * k + 1))
                }
            }
        }
        // Dot with Q8_K all 1, d = 1 (16-element sums 16, which ggml's Q6_K kernel uses for the - 32):
        // 0.5 * 16 * sum(scales) = 0.5 * 16 * 136 = 1088.
        var act = [UInt8](repeating: 0, count: 292)
        withUnsafeBytes(of: Float(1).bitPattern.littleEndian) { for k in 0 ..< 4 { act[k] = $0[k] } }
        for j in 0 ..< 256 { act[4 + j] = 1 }
        for g in 0 ..< 16 { act[260 + 2 * g] = 16 }
        let (reference, fast) = dot(.q6_K, block, act, count: 256)
        #expect(reference == 1088 && fast == 1088)
    }

    /// F16, BF16 and F32 rows: dequantized exactly; dot products with activations in the same type.
    @Test func floatTypes() {
        let f16 = Self.half(0x3C00) + Self.half(0xC000) + Self.half(0x3800) + Self.half(0x0000)
        #expect(dequantize(.f16, f16, count: 4) == [1, -2, 0.5, 0])
        let bf16: [UInt8] = [0x80, 0x3F, 0x00, 0xC0, 0x00, 0x3F, 0x00, 0x00]
        #expect(dequantize(.bf16, bf16, count: 4) == [1, -2, 0.5, 0])
        #expect(dot(.f16, f16, f16, count: 4).0 == 1 + 4 + 0.25)
        #expect(dot(.bf16, bf16, bf16, count: 4).0 == 5.25)
        let f32 = [Float(1), -2, 0.5, 0].flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
        #expect(dot(.f32, f32, f32, count: 4).0 == 5.25)
    }
}
