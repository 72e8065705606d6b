import Foundation

/// The exact floating-point operation order of ggml's x86 CPU kernels (AVX2 / AVX-512 builds of
/// llama.cpp), so that our results are bit-for-bit, not just approximately, what llama.cpp
/// computes. This matters: the model's activations are re-quantized to 8 bits before every matrix
/// product, so a last-bit difference can flip a rounding and grow into a different token later.
///
/// Fused multiply-add is emulated in double precision (`a * b` is exact in a double, the sum is
/// rounded to double then to float): equal to a true FMA except in the astronomically rare case
/// where double rounding matters; it needs no FMA instruction. (Where both factors are F16
/// values the product is exact in F32 and a multiply and an add are used instead.)
public enum GGMLMath {
    /// `a * b + c` with one rounding (see above).
    @inlinable @inline(__always)
    public static func fma(_ a: Float, _ b: Float, _ c: Float) -> Float {
        Float(Double(a) * Double(b) + Double(c))
    }

    /// Lane-wise `a * b + c` with one rounding.
    @inlinable @inline(__always)
    public static func fma(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8<Float>(SIMD8<Double>(a) * SIMD8<Double>(b) + SIMD8<Double>(c))
    }

    /// ggml's `hsum_float_8` (and llamafile's `hsum(__m256)`): `((x0+x4) + (x2+x6)) + ((x1+x5) + (x3+x7))`.
    @inlinable @inline(__always)
    public static func hsum8(_ x: SIMD8<Float>) -> Float {
        let r0 = x[0] + x[4], r1 = x[1] + x[5], r2 = x[2] + x[6], r3 = x[3] + x[7]
        return (r0 + r2) + (r1 + r3)
    }

    /// ggml's AVX2 `ggml_v_expf` for one lane (ARM's optimized-routines polynomial, max error about
    /// 1.5 ulp): `n = round(x / ln 2)`, `b = x - n ln 2` (two-part constant), `k = 2^n` built from
    /// the bits of the rounding constant, a polynomial `j ≈ exp(b) - 1`, result `fma(j, k, k)`;
    /// |n| > 126 takes ggml's two-step scaling, |n| > 192 saturates.
    @inlinable
    public static func expf(_ x: Float) -> Float {
        let r: Float = 0x1.8p23
        let z = fma(x, 0x1.715476p+0, r)
        let n = z - r
        let b = fma(-n, 0x1.7f7d1cp-20, fma(-n, 0x1.62e4p-1, x))
        let e = z.bitPattern &<< 23
        let k = Float(bitPattern: e &+ Float(1).bitPattern)
        let u = b * b
        let j = fma(fma(fma(0x1.0e4020p-7, b, 0x1.573e2ep-5), u, fma(0x1.555e66p-3, b, 0x1.fffdb6p-2)), u,
                    0x1.ffffecp-1 * b)
        guard abs(n) > 126 else { return fma(j, k, k) }
        let g: UInt32 = n <= 0 ? 0x8200_0000 : 0
        let s1 = Float(bitPattern: g &+ 0x7f00_0000)
        let s2 = Float(bitPattern: e &- g)
        if abs(n) > 192 { return s1 * s1 }
        return fma(s2, j, s2) * s1
    }

    /// ggml's AVX-512 `ggml_v_expf` for one lane: the same polynomial with the 1 folded in,
    /// `j ≈ exp(b)`, result `scalef(j, n) = j * 2^n` (one rounding); |n| > 192 saturates.
    @inlinable
    public static func expf512(_ x: Float) -> Float {
        let r: Float = 0x1.8p23
        let z = fma(x, 0x1.715476p+0, r)
        let n = z - r
        guard abs(n) <= 192 else { return x.isNaN ? x : (n > 0 ? .infinity : 0) }
        let b = fma(-n, 0x1.7f7d1cp-20, fma(-n, 0x1.62e4p-1, x))
        let u = b * b
        let j = fma(fma(fma(0x1.0e4020p-7, b, 0x1.573e2ep-5), u, fma(0x1.555e66p-3, b, 0x1.fffdb6p-2)), u,
                    fma(0x1.ffffecp-1, b, 1))
        return Float(sign: .plus, exponent: Int(n), significand: j)
    }

    /// `_mm512_reduce_add_ps` as GCC expands it: `a_i = x_{i+8} + x_i`, `t_i = a_{i+4} + a_i`,
    /// then `(t0 + t2) + (t1 + t3)`.
    @inlinable @inline(__always)
    public static func reduce16(_ x: UnsafePointer<Float>) -> Float {
        let a0 = x[8] + x[0], a1 = x[9] + x[1], a2 = x[10] + x[2], a3 = x[11] + x[3]
        let a4 = x[12] + x[4], a5 = x[13] + x[5], a6 = x[14] + x[6], a7 = x[15] + x[7]
        let t0 = a4 + a0, t1 = a5 + a1, t2 = a6 + a2, t3 = a7 + a3
        return (t0 + t2) + (t1 + t3)
    }
}

/// Which of ggml's x86 code paths to reproduce: they round differently (exp polynomial, vector
/// width, reduction trees), and a model whose activations are re-quantized at every layer turns
/// those last-bit differences into different tokens after a few dozen steps.
public enum SIMDProfile: String, Sendable, CaseIterable {
    /// llama.cpp built for AVX2 + FMA + F16C (what `GGML_NATIVE` gives on a CPU without AVX-512).
    case avx2
    /// llama.cpp built with AVX-512 F/DQ (what `GGML_NATIVE` gives on an AVX-512 CPU; the committed
    /// reference outputs were made so).
    case avx512

    /// Vector width in floats (8 or 16).
    public var width: Int { self == .avx2 ? 8 : 16 }

    /// The profile's `ggml_v_expf`.
    @inlinable @inline(__always)
    public func expf(_ x: Float) -> Float { self == .avx2 ? GGMLMath.expf(x) : GGMLMath.expf512(x) }

    /// The profile's horizontal sum of one vector of `width` floats.
    @inlinable @inline(__always)
    public func hsum(_ x: UnsafePointer<Float>) -> Float {
        self == .avx2 ? GGMLMath.hsum8(UnsafeRawPointer(x).loadUnaligned(as: SIMD8<Float>.self)) : GGMLMath.reduce16(x)
    }

    /// The default: the committed llama.cpp references were made with AVX-512 kernels.
    public static let `default` = SIMDProfile.avx512
}
