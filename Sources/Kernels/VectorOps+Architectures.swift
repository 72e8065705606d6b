import Foundation

/// The vector steps that only some architectures take (NeoX RoPE, GELU, scaling, soft-capping),
/// each computed as ggml's CPU backend computes it.
extension VectorOps {
    /// Rotates the first `dims` elements of each of `heads` vectors of `headDim` floats in
    /// "NeoX" pairs (`x[i], x[i + dims / 2]`: ggml's `GGML_ROPE_TYPE_NEOX`, used by Qwen2/3, Phi-3
    /// and Gemma GGUFs), with a table from `ropeTable`, each output the fused multiply-add that GCC
    /// makes of ggml's `rotate_pairs`.
    public static func ropeNeox(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, dims: Int,
                                table: UnsafePointer<Float>) {
        let half = dims / 2
        for h in 0 ..< heads {
            let v = x + h * headDim
            for pair in 0 ..< half {
                let c = table[2 * pair], s = table[2 * pair + 1]
                let x0 = v[pair], x1 = v[pair + half]
                v[pair] = GGMLMath.fma(x0, c, -(x1 * s))
                v[pair + half] = GGMLMath.fma(x0, s, x1 * c)
            }
        }
    }

    /// `ggml_gelu_f32`: `0.5 x (1 + tanh(sqrt(2 / pi) x (1 + 0.044715 x^2)))` (the tanh
    /// approximation), with the fused multiply-add GCC makes of `1 + A*x*x` in an FMA build.
    @inline(__always)
    static func geluTanh(_ x: Float) -> Float {
        let sqrt2OverPi: Float = 0.79788456080286535587989211986876
        let coefA: Float = 0.044715
        return 0.5 * x * (1 + tanhf(sqrt2OverPi * x * GGMLMath.fma(coefA * x, x, 1)))
    }

    /// GELU of every F16 value, rounded to F16, as ggml's `ggml_table_gelu_f16` (65,536 entries).
    nonisolated(unsafe) static let geluTable: UnsafePointer<Float> = {
        let table = UnsafeMutablePointer<Float>.allocate(capacity: 1 << 16)
        for bits in 0 ..< 1 << 16 {
            table[bits] = Half.round(geluTanh(Half.toFloat(UInt16(bits))))
        }
        return UnsafePointer(table)
    }()

    /// GeGLU: `gate[i] = gelu(gate[i]) * up[i]`, as `ggml_vec_geglu_f32` in a build with
    /// `GGML_GELU_FP16` (ggml's default): `gate <= -10` gives 0, `gate >= 10` gives `gate * up`,
    /// otherwise the GELU of `gate` rounded to F16, looked up in the F16 table, times `up`.
    public static func geglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        let table = geluTable
        for i in 0 ..< count {
            let g = gate[i]
            if g <= -10 {
                gate[i] = 0
            } else if g >= 10 {
                gate[i] = g * up[i]
            } else {
                gate[i] = table[Int(Half.bits(g))] * up[i]
            }
        }
    }

    /// `x[i] *= factor` (`ggml_scale`).
    public static func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
        for i in 0 ..< count { x[i] *= factor }
    }

    /// Soft-capping as Gemma's graph writes it: `ggml_scale(1 / cap)`, `ggml_tanh`, `ggml_scale(cap)`.
    public static func softCap(_ x: UnsafeMutablePointer<Float>, cap: Float, count: Int) {
        let inverse = 1 / cap
        for i in 0 ..< count { x[i] = tanhf(x[i] * inverse) * cap }
    }
}
