import Foundation

/// Causal attention for one query head over an F16 key/value cache, computed in the order of
/// llama.cpp's CPU path without flash attention (`kq = K q`, `softmax(kq * scale)`, `kqv = V p`),
/// so that the result is bit-identical to the `SIMDProfile`'s build of llama.cpp:
///
/// - the query is rounded to F16 (K is F16, and ggml converts the other operand to K's type);
/// - with several query tokens (`DotOrder.tinyBLAS`, a prompt batch) each dot is llamafile's
///   `tinyBLAS`: `width` lanes, lane `i % width`, then the profile's horizontal sum; with one
///   token (`DotOrder.vecDotF16`) it is `ggml_vec_dot_f16`: four accumulators of `width` lanes
///   over steps of `4 * width`, combined `(s0 + s2) + (s1 + s3)`, summed horizontally into a
///   double, the elements past the last full step added one by one in double;
/// - softmax as `ggml_vec_soft_max_f32`: max, chunks of `width` exponentials (the profile's
///   `expf`) each summed horizontally into a double, every weight times `Float(1 / sum)`;
/// - the weights are rounded to F16, and `kqv` runs over llama.cpp's cache length, the
///   positions rounded up to 32 (the extra ones are masked: zero weight).
///
/// Every product here is of two F16 values, hence exact in F32, so the SIMD code's FMAs are
/// reproduced exactly by a multiply and an add.
public enum Attention {
    /// How one dot product is accumulated (see the type's documentation).
    public enum DotOrder: Sendable {
        case tinyBLAS
        case vecDotF16
    }

    /// Scratch floats `head` needs for `positions` positions.
    public static func scratchCount(positions: Int, headDim: Int) -> Int {
        (positions + 63) / 64 * 64 + headDim + 64 * headDim + 64
    }

    /// `out[0..<headDim]` = attention of `query` over positions `0..<positions`, whose keys and values
    /// are F16 at `keys + p * stride` and `values + p * stride`. Positions before `first` are masked
    /// (a sliding window: weight exactly 0, as ggml's `-inf` mask gives); `softCap` > 0 caps each
    /// score as `tanh(kq * (1 / softCap)) * softCap` before the scale, as Gemma 2's graph does.
    public static func head(query: UnsafePointer<Float>, keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>,
                            stride: Int, positions: Int, first: Int = 0, headDim: Int, scale: Float, softCap: Float = 0,
                            order: DotOrder, profile: SIMDProfile = .default,
                            scratch: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let cacheLength = (positions + 31) / 32 * 32
        let w = profile.width
        let scores = scratch                              // [cacheLength rounded to 64]
        let q = scratch + (positions + 63) / 64 * 64      // [headDim], the query rounded to F16
        let lanes = q + headDim                           // [headDim][64] accumulators of kqv
        let row = lanes + 64 * headDim                    // [64] one key's accumulators
        for i in 0 ..< headDim { q[i] = Half.round(query[i]) }
        let table = Half.table

        // kq[p] * scale.
        let tiny = order == .tinyBLAS && headDim % w == 0
        let slotsKQ = tiny ? w : 4 * w
        let fullKQ = tiny ? headDim : headDim / (4 * w) * (4 * w)
        for p in 0 ..< positions {
            if p < first {
                scores[p] = -.infinity
                continue
            }
            let k = keys + p * stride
            row.initialize(repeating: 0, count: slotsKQ)
            for i in 0 ..< fullKQ { row[i % slotsKQ] += table[Int(k[i])] * q[i] }
            var dot: Float
            if tiny {
                dot = profile.hsum(row)
            } else {
                var tail = Double(reduceVecDot(row, profile))
                for i in fullKQ ..< headDim { tail += Double(table[Int(k[i])] * q[i]) }
                dot = Float(tail)
            }
            if softCap > 0 { dot = tanhf(dot * (1 / softCap)) * softCap }
            scores[p] = dot * scale
        }

        // Softmax over the cache length (masked positions are exactly 0).
        var maximum = -Float.infinity
        for p in 0 ..< positions { maximum = max(maximum, scores[p]) }
        for p in 0 ..< positions { scores[p] = p < first ? 0 : profile.expf(scores[p] - maximum) }
        for p in positions ..< (positions + w - 1) / w * w { scores[p] = 0 }
        var sum: Double = 0
        var chunk = 0
        while chunk < positions {
            sum += Double(profile.hsum(scores + chunk))
            chunk += w
        }
        let inverse = Float(1 / sum)
        for p in 0 ..< positions { scores[p] = Half.round(scores[p] * inverse) }

        // out[i] = sum_p p16[p] * v[p][i].
        let slots = order == .tinyBLAS ? w : 4 * w
        let full = order == .tinyBLAS ? cacheLength : cacheLength / (4 * w) * (4 * w)
        lanes.initialize(repeating: 0, count: 64 * headDim)
        for p in 0 ..< min(positions, full) {
            let weight = scores[p]
            let v = values + p * stride
            let slot = p % slots
            for i in 0 ..< headDim { lanes[64 * i + slot] += weight * table[Int(v[i])] }
        }
        for i in 0 ..< headDim {
            let l = lanes + 64 * i
            if order == .tinyBLAS {
                out[i] = profile.hsum(l)
            } else {
                var total = Double(reduceVecDot(l, profile))
                if full < positions {
                    for p in full ..< positions { total += Double(scores[p] * table[Int(values[p * stride + i])]) }
                }
                out[i] = Float(total)
            }
        }
    }

    /// `ggml_vec_dot_f16`'s reduction of four `width`-lane accumulators stored one after another:
    /// `c = (s0 + s2) + (s1 + s3)`, then the profile's horizontal sum (AVX2's is
    /// `((c0+c4) + (c1+c5)) + ((c2+c6) + (c3+c7))`).
    @inline(__always)
    static func reduceVecDot(_ s: UnsafeMutablePointer<Float>, _ profile: SIMDProfile) -> Float {
        let w = profile.width
        for l in 0 ..< w { s[l] = (s[l] + s[2 * w + l]) + (s[w + l] + s[3 * w + l]) }
        if profile == .avx2 {
            return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
        }
        return GGMLMath.reduce16(s)
    }
}
