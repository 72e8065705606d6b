/// `block_q8_0`: 32 values as signed 8-bit integers with one F16 scale; `x = q * d`.
///
/// Layout (34 bytes): `d: f16`, `qs: [32 x i8]`. Used for weights (the SmolLM2 embedding) and as
/// the activation format for Q4_0 and Q8_0 dot products.
public enum Q8_0 {
    public static let blockSize = 32
    public static let blockBytes = 34

    /// Reference dequantizer: `blocks` blocks at `source` into `32 * blocks` floats.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block)
            for j in 0 ..< 32 {
                out[b * blockSize + j] = Float(block.load(fromByteOffset: 2 + j, as: Int8.self)) * d
            }
        }
    }

    /// Quantizes `32 * blocks` floats the way ggml's x86 `quantize_row_q8_0` does: per block
    /// `amax = max |x|`, `d = amax / 127` (stored as F16), `q = round_to_nearest_even(x * 127 / amax)`.
    public static func quantize(_ x: UnsafePointer<Float>, blocks: Int, into out: UnsafeMutableRawPointer) {
        for b in 0 ..< blocks {
            let block = out + b * blockBytes
            let v = x + b * blockSize
            var amax: Float = 0
            for j in 0 ..< 32 { amax = max(amax, abs(v[j])) }
            let d = amax / 127
            let id: Float = amax != 0 ? 127 / amax : 0
            block.storeBytes(of: Half.bits(d).littleEndian, as: UInt16.self)
            for j in 0 ..< 32 {
                block.storeBytes(of: nearestInt8(v[j] * id), toByteOffset: 2 + j, as: Int8.self)
            }
        }
    }

    /// Reference dot product of `blocks` Q8_0 blocks with as many Q8_0 blocks.
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * blockBytes
            var isum: Int32 = 0
            for j in 0 ..< 32 {
                isum += Int32(w.load(fromByteOffset: 2 + j, as: Int8.self)) * Int32(a.load(fromByteOffset: 2 + j, as: Int8.self))
            }
            sum += Float(isum) * (Half.load(w) * Half.load(a))
        }
        return sum
    }

    /// The same dot product in ggml's AVX2 operation order
    /// (bit-identical to `ggml_vec_dot_q8_0_q8_0` and llamafile's `tinyBLAS_Q0_AVX`): eight lanes,
    /// lane `k` accumulating `fma(d_w d_a, sum of products of elements 4k..4k+3, acc_k)`, then `hsum8`.
    @inlinable @inline(__always)
    public static func dotSIMD(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        var w = weights
        var a = activations
        for _ in 0 ..< blocks {
            let d = Half.load(w) * Half.load(a)
            for k in 0 ..< 8 {
                var sum: Int32 = 0
                for j in 4 * k ..< 4 * k + 4 {
                    sum &+= Int32(w.load(fromByteOffset: 2 + j, as: Int8.self)) &* Int32(a.load(fromByteOffset: 2 + j, as: Int8.self))
                }
                acc[k] = Float(Double(d) * Double(sum) + Double(acc[k]))
            }
            w += blockBytes
            a += blockBytes
        }
        return GGMLMath.hsum8(acc)
    }
}
