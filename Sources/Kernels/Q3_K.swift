/// `block_q3_K`: 256 weights in 16 sub-blocks of 16, 3-bit signed quants (2 low bits in `qs`, the
/// high bit in `hmask`, set meaning "not minus 4"), a 6-bit scale (minus 32) per sub-block and an
/// F16 super-block scale: `x = d * (sc[s] - 32) * q`, `q` in -4...3.
///
/// Layout (110 bytes): `hmask: [32 x u8]`, `qs: [64 x u8]`, `scales: [12 x u8]` (sixteen 6-bit
/// values, see `KQuant.scale6`), `d: f16`. Element `i = 128n + 32j + l` (l < 32) is bits `2j, 2j+1`
/// of `qs[32n + l]` and bit `4n + j` of `hmask[l]`, in sub-block `i / 16`.
/// Dot products take Q8_K activations.
public enum Q3_K {
    public static let blockSize = 256
    public static let blockBytes = 110

    /// The two low bits (0...3) and the high-bit term (0 when the bit is set, else 4) of quant `i`;
    /// the quant is their difference.
    @inline(__always)
    static func parts(_ block: UnsafeRawPointer, _ i: Int) -> (low: Int32, high: Int32) {
        let n = i / 128, j = (i % 128) / 32, l = i % 32
        let low = (block.load(fromByteOffset: 32 + 32 * n + l, as: UInt8.self) >> UInt8(2 * j)) & 3
        let bit = (block.load(fromByteOffset: l, as: UInt8.self) >> UInt8(4 * n + j)) & 1
        return (Int32(low), bit == 0 ? 4 : 0)
    }

    /// Scale of sub-block `s` (0..<16), in -32...31.
    @inline(__always)
    static func scale(_ block: UnsafeRawPointer, _ s: Int) -> Int32 {
        KQuant.scale6(s, block + 96) - 32
    }

    /// Reference dequantizer (ggml's `dequantize_row_q3_K`): `blocks` blocks at `source` into
    /// `256 * blocks` floats, `(d * sc) * q` per element.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block, 108)
            let y = out + b * blockSize
            for s in 0 ..< 16 {
                let dl = d * Float(scale(block, s))
                for i in 16 * s ..< 16 * s + 16 {
                    let (low, high) = parts(block, i)
                    y[i] = dl * Float(low - high)
                }
            }
        }
    }

    /// Reference dot product of `blocks` Q3_K blocks with as many Q8_K blocks, in the operation
    /// order of ggml's AVX2 `ggml_vec_dot_q3_K_q8_K` (see `KQuant`): per block, eight integer lanes
    /// of `sc[i / 16] * q_i * a_i` go into `fma(d_a d_w, lane, acc)`; the result is `hsum8(acc)`.
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_K.blockBytes
            var lanes = SIMD8<Int32>()
            for s in 0 ..< 16 {
                let sc = scale(w, s)
                for i in 16 * s ..< 16 * s + 16 {
                    let (low, high) = parts(w, i)
                    lanes[KQuant.lane(i)] &+= sc &* (low &- high) &* KQuant.q8(a, i)
                }
            }
            KQuant.accumulate(Q8_K.scale(a) * Half.load(w, 108), lanes, into: &acc)
        }
        return GGMLMath.hsum8(acc)
    }
}
