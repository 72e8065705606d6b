import Testing
@testable import Kernels

/// Deterministic pseudo-random floats (SplitMix64), so failures reproduce.
struct TestRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
    mutating func bytes(_ count: Int) -> [UInt8] { (0 ..< count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

/// Random but valid blocks of `type`: random quant bytes, with small sane F16 scales patched in.
func randomRow(_ type: BlockType, count: Int, _ random: inout TestRandom) -> [UInt8] {
    var bytes = random.bytes(type.rowBytes(count)!)
    let blocks = count / type.blockSize
    func putHalf(_ offset: Int, _ value: Float) {
        let bits = Half.bits(value)
        bytes[offset] = UInt8(bits & 0xff)
        bytes[offset + 1] = UInt8(bits >> 8)
    }
    for b in 0 ..< blocks {
        let o = b * type.blockBytes
        switch type {
        case .q4_0, .q8_0, .q5_0: putHalf(o, 0.01 + 0.01 * abs(random.float()))
        case .q5_1: putHalf(o, 0.01 + 0.01 * abs(random.float())); putHalf(o + 2, -0.05 * abs(random.float()))
        case .q4_1: putHalf(o, 0.01 + 0.01 * abs(random.float())); putHalf(o + 2, -0.05 * abs(random.float()))
        case .q4_K: putHalf(o, 0.001 + 0.001 * abs(random.float())); putHalf(o + 2, 0.001 * abs(random.float()))
        case .q6_K: putHalf(o + 208, 0.001 + 0.001 * abs(random.float()))
        case .q2_K: putHalf(o + 80, 0.001 + 0.001 * abs(random.float())); putHalf(o + 82, 0.001 * abs(random.float()))
        case .q3_K: putHalf(o + 108, 0.001 + 0.001 * abs(random.float()))
        case .q5_K: putHalf(o, 0.001 + 0.001 * abs(random.float())); putHalf(o + 2, 0.001 * abs(random.float()))
        case .f16: for i in 0 ..< count { putHalf(2 * i, random.float()) }
        case .bf16:
            for i in 0 ..< count {
                let bits = BFloat16.bits(random.float())
                bytes[2 * i] = UInt8(bits & 0xff); bytes[2 * i + 1] = UInt8(bits >> 8)
            }
        case .f32:
            for i in 0 ..< count {
                withUnsafeBytes(of: random.float().bitPattern.littleEndian) { for k in 0 ..< 4 { bytes[4 * i + k] = $0[k] } }
            }
        default: break
        }
        if type == .f16 || type == .bf16 || type == .f32 { break }
    }
    return bytes
}

/// The quantized dot products agree with the float dot product of the dequantized operands: exactly
/// in real arithmetic (so within float rounding) when both sides are dequantized, and within the
/// activation quantization error when the activations are floats.
@Suite struct DotConsistencyTests {
    static let weightTypes: [BlockType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q8_0, .q4_K, .q6_K, .q2_K, .q3_K, .q5_K]

    @Test(arguments: weightTypes)
    func quantizedDotEqualsDequantizedDot(type: BlockType) {
        var random = TestRandom(state: 42 &+ UInt64(Self.weightTypes.firstIndex(of: type)!))
        let count = 512
        let weights = randomRow(type, count: count, &random)
        let x = (0 ..< count).map { _ in random.float() }
        var activations = [UInt8](repeating: 0, count: type.dotType.rowBytes(count)!)
        var w = [Float](repeating: 0, count: count)
        var a = [Float](repeating: 0, count: count)
        weights.withUnsafeBytes { wb in
            activations.withUnsafeMutableBytes { ab in
                RowKernels.quantize(x, count: count, to: type.dotType, into: ab.baseAddress!)
                RowKernels.dequantize(type, wb.baseAddress!, count: count, into: &w)
                RowKernels.dequantize(type.dotType, UnsafeRawPointer(ab.baseAddress!), count: count, into: &a)
            }
        }
        // Exact reference in double from the dequantized operands (Q8_1's `s` is F16-rounded in
        // ggml, so Q4_1 allows for that rounding too).
        var exact: Double = 0, scale: Double = 0, floatDot: Double = 0
        for i in 0 ..< count {
            exact += Double(w[i]) * Double(a[i])
            floatDot += Double(w[i]) * Double(x[i])
            scale += abs(Double(w[i]) * Double(a[i]))
        }
        let (fast, reference) = weights.withUnsafeBytes { wb in
            activations.withUnsafeBytes { ab in
                (RowKernels.dot(type, wb.baseAddress!, ab.baseAddress!, count: count),
                 RowKernels.referenceDot(type, wb.baseAddress!, ab.baseAddress!, count: count))
            }
        }
        let tolerance = type == .q4_1 ? 1e-3 * scale : 1e-5 * scale
        #expect(abs(Double(reference) - exact) <= tolerance, "\(type): reference \(reference) vs exact \(exact)")
        #expect(abs(Double(fast) - Double(reference)) <= 1e-5 * scale, "\(type): fast \(fast) vs reference \(reference)")
        // Activation quantization (8 bits, or F16/BF16) moves the result by well under 1% of the scale.
        #expect(abs(Double(fast) - floatDot) <= 1e-2 * scale, "\(type): \(fast) vs float \(floatDot)")
    }
}
