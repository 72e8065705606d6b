/// What the K-quant dot products (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K with Q8_K activations) share: the
/// float operation order of llama.cpp's x86 AVX2 kernels (`ggml_vec_dot_q*_K_q8_K` in
/// ggml-cpu/arch/x86/quants.c), which none of them has an AVX-512 variant of.
///
/// Each of those kernels turns a 256-element block into eight 32-bit integer lanes: lane `k` holds
/// the scaled products of the elements `i` with `(i % 32) / 4 == k` (four consecutive elements of
/// each 32-element group), plus a type-specific correction. The integers are exact (no lane can
/// overflow), so only their lane assignment matters. Each block then adds
/// `fma(d_w * d_a, Float(lane_k), acc_k)` to eight float accumulators, and the result is
/// `GGMLMath.hsum8(acc)` plus, for the types with minimums, their separately accumulated term.
/// The fused multiply-adds are true FMAs (`addingProduct`), as `vfmadd` computes them.
public enum KQuant {
    /// The integer lane (0..<8) that element `i` (0..<256) of a block is summed into.
    @inline(__always)
    public static func lane(_ i: Int) -> Int { (i & 31) >> 2 }

    /// `acc_k = fma(d, Float(lanes_k), acc_k)` for the eight lanes.
    @inline(__always)
    public static func accumulate(_ d: Float, _ lanes: SIMD8<Int32>, into acc: inout SIMD8<Float>) {
        for k in 0 ..< 8 { acc[k] = acc[k].addingProduct(d, Float(lanes[k])) }
    }

    /// Quant `i` of the Q8_K block at `a`.
    @inline(__always)
    static func q8(_ a: UnsafeRawPointer, _ i: Int) -> Int32 {
        Int32(a.load(fromByteOffset: 4 + i, as: Int8.self))
    }

    /// `m[2k] * bsums[2k] + m[2k+1] * bsums[2k+1]` for each lane k (`_mm256_madd_epi16` of sixteen
    /// 16-bit factors with the Q8_K block's sixteen 16-element sums).
    @inline(__always)
    static func maddBlockSums(_ a: UnsafeRawPointer, _ m: (Int) -> Int32) -> SIMD8<Int32> {
        var out = SIMD8<Int32>()
        for k in 0 ..< 8 {
            out[k] = m(2 * k) &* Int32(Q8_K.blockSum(a, 2 * k)) &+ m(2 * k + 1) &* Int32(Q8_K.blockSum(a, 2 * k + 1))
        }
        return out
    }

    /// Scale `s` (0..<16) of the twelve 6-bit-scale bytes at `scales` as Q3_K packs them (before
    /// the `- 32`): low four bits from byte `s` (s < 8) or the high nibble of byte `s - 8`, high two
    /// bits from byte `8 + s % 4`, bits `2 (s / 4)`.
    @inline(__always)
    static func scale6(_ s: Int, _ scales: UnsafeRawPointer) -> Int32 {
        func b(_ i: Int) -> UInt8 { scales.load(fromByteOffset: i, as: UInt8.self) }
        let low = s < 8 ? b(s) & 15 : b(s - 8) >> 4
        let high = (b(8 + s % 4) >> UInt8(2 * (s / 4))) & 3
        return Int32(low | high << 4)
    }
}
