/// `block_q2_K`: 256 weights in 16 sub-blocks of 16, 2-bit quants, a 4-bit scale and a 4-bit
/// minimum per sub-block and F16 super-block scales: `x = d * sc[s] * q - dmin * m[s]`.
///
/// Layout (84 bytes): `scales: [16 x u8]` (sub-block `s`: scale in the low nibble of `scales[s]`,
/// minimum in the high nibble), `qs: [64 x u8]`, `d: f16`, `dmin: f16`. Element `i = 128n + 32j + l`
/// (l < 32) is bits `2j, 2j+1` of `qs[32n + l]`, in sub-block `i / 16`.
/// Dot products take Q8_K activations.
public enum Q2_K {
    public static let blockSize = 256
    public static let blockBytes = 84

    /// Quant `i` (0..<256, 0...3) of the block at `block`.
    @inline(__always)
    static func quant(_ block: UnsafeRawPointer, _ i: Int) -> Int32 {
        let byte = block.load(fromByteOffset: 16 + 32 * (i / 128) + i % 32, as: UInt8.self)
        return Int32((byte >> UInt8(2 * ((i % 128) / 32))) & 3)
    }

    @inline(__always)
    static func scaleByte(_ block: UnsafeRawPointer, _ s: Int) -> UInt8 {
        block.load(fromByteOffset: s, as: UInt8.self)
    }

    /// Reference dequantizer (ggml's `dequantize_row_q2_K`): `blocks` blocks at `source` into
    /// `256 * blocks` floats, `(d * sc) * q - dmin * m` per element.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block, 80)
            let dmin = Half.load(block, 82)
            let y = out + b * blockSize
            for s in 0 ..< 16 {
                let sc = scaleByte(block, s)
                let dl = d * Float(sc & 0x0f), ml = dmin * Float(sc >> 4)
                for i in 16 * s ..< 16 * s + 16 { y[i] = dl * Float(quant(block, i)) - ml }
            }
        }
    }

    /// Reference dot product of `blocks` Q2_K blocks with as many Q8_K blocks, in the operation
    /// order of ggml's AVX2 `ggml_vec_dot_q2_K_q8_K` (see `KQuant`): per block, first lane `k` of
    /// the minimums, `m[2k] bsums[2k] + m[2k+1] bsums[2k+1]`, goes into `fma(-d_a dmin_w, lane,
    /// acc)`, then eight lanes of `sc[i / 16] * q_i * a_i` into `fma(d_a d_w, lane, acc)`; the
    /// result is `hsum8(acc)`.
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_K.blockBytes
            let da = Q8_K.scale(a)
            let d = da * Half.load(w, 80)
            let dmin = -da * Half.load(w, 82)
            let mins = KQuant.maddBlockSums(a) { Int32(scaleByte(w, $0) >> 4) }
            KQuant.accumulate(dmin, mins, into: &acc)
            var lanes = SIMD8<Int32>()
            for i in 0 ..< 256 {
                let sc = Int32(scaleByte(w, i / 16) & 0x0f)
                lanes[KQuant.lane(i)] &+= sc &* quant(w, i) &* KQuant.q8(a, i)
            }
            KQuant.accumulate(d, lanes, into: &acc)
        }
        return GGMLMath.hsum8(acc)
    }
}
