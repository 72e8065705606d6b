import Foundation

/// Float vector operations of the transformer, each computed as ggml's CPU backend computes it
/// (where the order of operations changes the result, the doc comment says which order).
public enum VectorOps {
    /// `sum_i a[i] * b[i]` over `count` floats (eight partial sums, then added).
    @inlinable @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= count {
            let x = UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
            let y = UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            acc += x * y
            i += 8
        }
        var sum = acc.sum()
        while i < count {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// RMSNorm as `ggml_rms_norm` then `ggml_mul`: `out[i] = (x[i] * scale) * weight[i]` with
    /// `scale = 1 / sqrt(mean(x^2) + eps)`, the sum of squares taken in double precision.
    /// `out` may be `x`.
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, count: Int, epsilon: Float,
                               into out: UnsafeMutablePointer<Float>) {
        var sum: Double = 0
        for i in 0 ..< count { sum += Double(x[i] * x[i]) }
        let mean = Float(sum / Double(count))
        let scale = 1 / (mean + epsilon).squareRoot()
        for i in 0 ..< count { out[i] = (x[i] * scale) * weight[i] }
    }

    /// SwiGLU: `gate[i] = silu(gate[i]) * up[i]`, as `ggml_vec_swiglu_f32`: chunks of the profile's
    /// width with `x / (1 + expf(0 - x))` (the profile's `expf`), the remainder with the C
    /// library's `expf`. `count` is one row (the chunks restart at each row).
    public static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int,
                              profile: SIMDProfile = .default) {
        let vectorized = count / profile.width * profile.width
        for i in 0 ..< vectorized {
            let g = gate[i]
            gate[i] = (g / (1 + profile.expf(0 - g))) * up[i]
        }
        for i in vectorized ..< count {
            let g = gate[i]
            gate[i] = (g / (1 + expf(-g))) * up[i]
        }
    }

    /// `x[i] += y[i]`.
    @inline(__always)
    public static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
        for i in 0 ..< count { x[i] += y[i] }
    }

    /// Fills `table` (`dims` floats: `cos, sin` for each rotated pair) for rotary embedding at
    /// `position`, as `ggml_rope_cache_init`: `theta_0 = position * freqScale`, `theta_{i+1} =
    /// theta_i * base^(-2 / dims)` (a running product in F32), pair `i` rotated by
    /// `theta_i / factors[i]` when the model has frequency factors (`rope_freqs.weight`).
    public static func ropeTable(position: Int, dims: Int, base: Float, freqScale: Float,
                                 factors: UnsafePointer<Float>?, into table: UnsafeMutablePointer<Float>) {
        let thetaScale = powf(base, -2 / Float(dims))
        var theta = Float(position)
        for pair in 0 ..< dims / 2 {
            let factor = factors?[pair] ?? 1
            let angle = freqScale * (theta / factor)
            table[2 * pair] = cosf(angle)
            table[2 * pair + 1] = sinf(angle)
            theta *= thetaScale
        }
    }

    /// Rotates the first `dims` elements of each of `heads` vectors of `headDim` floats at `x` in
    /// adjacent pairs (`x[2i], x[2i+1]`: ggml's "normal" RoPE, used by Llama GGUFs, whose Q and K
    /// weights the converter permuted for it), with a table from `ropeTable`, each output one
    /// fused multiply-add as in llama.cpp's compiled `rope_f32`.
    public static func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, dims: Int,
                            table: UnsafePointer<Float>) {
        for h in 0 ..< heads {
            let v = x + h * headDim
            for pair in 0 ..< dims / 2 {
                let c = table[2 * pair], s = table[2 * pair + 1]
                let x0 = v[2 * pair], x1 = v[2 * pair + 1]
                // As GCC contracts ggml's `x0*cos - x1*sin` and `x0*sin + x1*cos`.
                v[2 * pair] = GGMLMath.fma(x0, c, -(x1 * s))
                v[2 * pair + 1] = GGMLMath.fma(x0, s, x1 * c)
            }
        }
    }
}
