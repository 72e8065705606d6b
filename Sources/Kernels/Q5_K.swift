/// `block_q5_K`: 256 weights in 8 sub-blocks of 32, 5-bit quants (4 low bits in `qs` as Q4_K
/// packs them, the fifth in `qh`), with 6-bit scales and minimums per sub-block and F16 super-block
/// scales: `x = d * sc[s] * q - dmin * m[s]`.
///
/// Layout (176 bytes): `d: f16`, `dmin: f16`, `scales: [12 x u8]` (as Q4_K's, `Q4_K.scaleMin`),
/// `qh: [32 x u8]`, `qs: [128 x u8]`. Element `i` (sub-block `s = i / 32`, `l = i % 32`) is nibble
/// `s % 2` of `qs[32 (s / 2) + l]` plus 16 times bit `s` of `qh[l]`.
/// Dot products take Q8_K activations.
public enum Q5_K {
    public static let blockSize = 256
    public static let blockBytes = 176

    /// Quant `i` (0..<256, 0...31) of the block at `block`.
    @inline(__always)
    static func quant(_ block: UnsafeRawPointer, _ i: Int) -> Int32 {
        let s = i / 32, l = i % 32
        let byte = block.load(fromByteOffset: 48 + 32 * (s / 2) + l, as: UInt8.self)
        let low = s % 2 == 0 ? byte & 0x0f : byte >> 4
        let high = (block.load(fromByteOffset: 16 + l, as: UInt8.self) >> UInt8(s)) & 1
        return Int32(low + 16 * high)
    }

    /// Reference dequantizer (ggml's `dequantize_row_q5_K`): `blocks` blocks at `source` into
    /// `256 * blocks` floats, `(d * sc) * q - dmin * m` per element.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block)
            let dmin = Half.load(block, 2)
            let y = out + b * blockSize
            for s in 0 ..< 8 {
                let (sc, m) = Q4_K.scaleMin(s, block + 4)
                let d1 = d * Float(sc), m1 = dmin * Float(m)
                for i in 32 * s ..< 32 * s + 32 { y[i] = d1 * Float(quant(block, i)) - m1 }
            }
        }
    }

    /// Reference dot product of `blocks` Q5_K blocks with as many Q8_K blocks, in the operation
    /// order of ggml's AVX2 `ggml_vec_dot_q5_K_q8_K` (see `KQuant`): per block, eight integer lanes
    /// of `sc[i / 32] * q_i * a_i` go into `fma(d_a d_w, lane, acc)`, and the minimums' integer
    /// `((p0 + p1) + (p2 + p3))`, `p_j = m[2j] s[2j] + m[2j+1] s[2j+1]` (`s[j]`: the Q8_K sums of
    /// elements `32j ..< 32j + 32`, added in 16 bits), into `summs = fma(-d_a dmin_w, Float(that), summs)`;
    /// the result is `hsum8(acc) + summs`. (ggml's source writes `summs += dmin * x`; GCC contracts
    /// it into one `vfmadd231ss` in the llama.cpp build here, as its disassembly shows.)
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        var summs: Float = 0
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_K.blockBytes
            let da = Q8_K.scale(a)
            let d = da * Half.load(w)
            let dmin = -da * Half.load(w, 2)
            var lanes = SIMD8<Int32>()
            var mins: Int32 = 0
            for s in 0 ..< 8 {
                let (sc, m) = Q4_K.scaleMin(s, w + 4)
                for i in 32 * s ..< 32 * s + 32 {
                    lanes[KQuant.lane(i)] &+= Int32(sc) &* quant(w, i) &* KQuant.q8(a, i)
                }
                mins &+= Int32(m) &* Int32(Q8_K.blockSum(a, 2 * s) &+ Q8_K.blockSum(a, 2 * s + 1))
            }
            summs = summs.addingProduct(dmin, Float(mins))
            KQuant.accumulate(d, lanes, into: &acc)
        }
        return GGMLMath.hsum8(acc) + summs
    }
}
