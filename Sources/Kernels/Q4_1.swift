/// `block_q4_1`: 32 weights as 4-bit integers with an F16 scale and an F16 minimum; `x = q * d + m`.
///
/// Layout (20 bytes): `d: f16`, `m: f16`, `qs: [16 x u8]`; element `j < 16` is the low nibble of
/// `qs[j]`, element `j + 16` its high nibble. Dot products take Q8_1 activations, whose `s`
/// (= `d_a * sum q_a`) carries the minimum's contribution: `d_w d_a sum q_w q_a + m_w s_a`.
public enum Q4_1 {
    public static let blockSize = 32
    public static let blockBytes = 20

    /// Reference dequantizer: `blocks` blocks at `source` into `32 * blocks` floats.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block)
            let m = Half.load(block, 2)
            let y = out + b * blockSize
            for j in 0 ..< 16 {
                let byte = block.load(fromByteOffset: 4 + j, as: UInt8.self)
                y[j] = Float(byte & 0x0f) * d + m
                y[j + 16] = Float(byte >> 4) * d + m
            }
        }
    }

    /// Reference dot product of `blocks` Q4_1 blocks with as many Q8_1 blocks.
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_1.blockBytes
            var isum: Int32 = 0
            for j in 0 ..< 16 {
                let byte = w.load(fromByteOffset: 4 + j, as: UInt8.self)
                isum += Int32(byte & 0x0f) * Int32(a.load(fromByteOffset: 4 + j, as: Int8.self))
                isum += Int32(byte >> 4) * Int32(a.load(fromByteOffset: 4 + j + 16, as: Int8.self))
            }
            sum += (Half.load(w) * Half.load(a)) * Float(isum) + Half.load(w, 2) * Half.load(a, 2)
        }
        return sum
    }

    /// The same dot product in ggml's AVX2 operation order (the path the model uses; bit-identical
    /// to llama.cpp's `ggml_vec_dot_q4_1_q8_1`): eight lanes,
    /// lane `k` accumulating `fma(d_w d_a, sum of products of elements 4k..4k+3, acc_k)` over the
    /// blocks, then `hsum8(acc) + sum over blocks of m_w s_a` (the latter summed in order).
    @inlinable @inline(__always)
    public static func dotSIMD(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        var summs: Float = 0
        var w = weights
        var a = activations
        for _ in 0 ..< blocks {
            let d = Half.load(w) * Half.load(a)
            summs += Half.load(w, 2) * Half.load(a, 2)
            // Lane k: elements 4k..4k+3 (low nibbles); lane k + 4: elements 16+4k..16+4k+3 (high nibbles).
            for k in 0 ..< 4 {
                var lo: Int32 = 0, hi: Int32 = 0
                for j in 4 * k ..< 4 * k + 4 {
                    let b = w.load(fromByteOffset: 4 + j, as: UInt8.self)
                    lo &+= Int32(b & 0x0f) &* Int32(a.load(fromByteOffset: 4 + j, as: Int8.self))
                    hi &+= Int32(b >> 4) &* Int32(a.load(fromByteOffset: 20 + j, as: Int8.self))
                }
                // fma(d, xy, acc): d * xy is exact in a double.
                acc[k] = Float(Double(d) * Double(lo) + Double(acc[k]))
                acc[k + 4] = Float(Double(d) * Double(hi) + Double(acc[k + 4]))
            }
            w += blockBytes
            a += Q8_1.blockBytes
        }
        return GGMLMath.hsum8(acc) + summs
    }
}
