/// `block_q5_0`: 32 weights as 5-bit integers with one F16 scale; `x = (q - 16) * d`.
///
/// Layout (22 bytes): `d: f16`, `qh: u32` (little-endian), `qs: [16 x u8]`; element `j < 16` is
/// the low nibble of `qs[j]` with bit `j` of `qh` above it, element `j + 16` the high nibble of
/// `qs[j]` with bit `j + 16`. Dot products take Q8_0 activations.
public enum Q5_0 {
    public static let blockSize = 32
    public static let blockBytes = 22

    /// Element `j` of the block at `block` as its unsigned 5-bit value `q` (0...31).
    @inline(__always)
    static func quant(_ block: UnsafeRawPointer, _ qh: UInt32, _ j: Int) -> Int32 {
        let byte = block.load(fromByteOffset: 6 + (j & 15), as: UInt8.self)
        let nibble = j < 16 ? byte & 0x0f : byte >> 4
        return Int32(nibble) | Int32((qh >> UInt32(j)) & 1) << 4
    }

    @inline(__always)
    static func highBits(_ block: UnsafeRawPointer) -> UInt32 {
        UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
    }

    /// Reference dequantizer (ggml's `dequantize_row_q5_0`): `blocks` blocks at `source` into
    /// `32 * blocks` floats.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block)
            let qh = highBits(block)
            let y = out + b * blockSize
            for j in 0 ..< 32 { y[j] = Float(quant(block, qh, j) - 16) * d }
        }
    }

    /// Reference dot product of `blocks` Q5_0 blocks with as many Q8_0 blocks, in ggml's AVX2
    /// operation order (`ggml_vec_dot_q5_0_q8_0`): eight lanes, lane `k` accumulating
    /// `fma(d_w * d_a, sum of the products of elements 4k..4k+3, acc_k)` block after block, then
    /// `hsum8(acc)`. The integer products are exact (ggml's `sign_epi8` trick differs only for an
    /// activation of -128, which no Q8_0 quantizer writes).
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_0.blockBytes
            let d = Half.load(w) * Half.load(a)
            let qh = highBits(w)
            for k in 0 ..< 8 {
                var lane: Int32 = 0
                for j in 4 * k ..< 4 * k + 4 {
                    lane += (quant(w, qh, j) - 16) * Int32(a.load(fromByteOffset: 2 + j, as: Int8.self))
                }
                acc[k] = GGMLMath.fma(d, Float(lane), acc[k])
            }
        }
        return GGMLMath.hsum8(acc)
    }
}
