/// `block_q5_1`: 32 weights as 5-bit integers with an F16 scale and an F16 minimum; `x = q * d + m`.
///
/// Layout (24 bytes): `d: f16`, `m: f16`, `qh: u32` (little-endian), `qs: [16 x u8]`; element
/// `j < 16` is the low nibble of `qs[j]` with bit `j` of `qh` above it, element `j + 16` the high
/// nibble of `qs[j]` with bit `j + 16`. Dot products take Q8_1 activations, whose `s`
/// (= `d_a * sum q_a`) carries the minimum's contribution: `d_w d_a sum q_w q_a + m_w s_a`.
public enum Q5_1 {
    public static let blockSize = 32
    public static let blockBytes = 24

    /// Element `j` of the block at `block` (0...31).
    @inline(__always)
    static func quant(_ block: UnsafeRawPointer, _ qh: UInt32, _ j: Int) -> Int32 {
        let byte = block.load(fromByteOffset: 8 + (j & 15), as: UInt8.self)
        let nibble = j < 16 ? byte & 0x0f : byte >> 4
        return Int32(nibble) | Int32((qh >> UInt32(j)) & 1) << 4
    }

    @inline(__always)
    static func highBits(_ block: UnsafeRawPointer) -> UInt32 {
        UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    }

    /// Reference dequantizer (ggml's `dequantize_row_q5_1`: `q * d + m`, two roundings): `blocks`
    /// blocks at `source` into `32 * blocks` floats.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block)
            let m = Half.load(block, 2)
            let qh = highBits(block)
            let y = out + b * blockSize
            for j in 0 ..< 32 { y[j] = Float(quant(block, qh, j)) * d + m }
        }
    }

    /// Reference dot product of `blocks` Q5_1 blocks with as many Q8_1 blocks, in ggml's AVX2
    /// operation order (`ggml_vec_dot_q5_1_q8_1`): eight lanes, lane `k` accumulating
    /// `fma(sum of the products of elements 4k..4k+3, d_w * d_a, acc_k)` block after block, then
    /// `hsum8(acc) + sum over blocks of m_w s_a` (the latter summed in order; each product of two
    /// F16 values is exact).
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        var summs: Float = 0
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_1.blockBytes
            summs += Half.load(w, 2) * Half.load(a, 2)
            let d = Half.load(w) * Half.load(a)
            let qh = highBits(w)
            for k in 0 ..< 8 {
                var lane: Int32 = 0
                for j in 4 * k ..< 4 * k + 4 {
                    lane += quant(w, qh, j) * Int32(a.load(fromByteOffset: 4 + j, as: Int8.self))
                }
                acc[k] = GGMLMath.fma(Float(lane), d, acc[k])
            }
        }
        return GGMLMath.hsum8(acc) + summs
    }
}
