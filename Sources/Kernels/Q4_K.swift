/// `block_q4_K`: 256 weights in 8 sub-blocks of 32, 4-bit quants, with 6-bit scales and minimums
/// per sub-block and F16 super-block scales: `x = d * sc[s] * q - dmin * m[s]`.
///
/// Layout (144 bytes): `d: f16`, `dmin: f16`, `scales: [12 x u8]` (eight 6-bit scales and eight
/// 6-bit minimums, packed as ggml's `get_scale_min_k4` reads them), `qs: [128 x u8]`. Within each
/// 64-element chunk `c`, elements `64c ..< 64c+32` are the low nibbles of `qs[32c ..< 32c+32]`
/// (sub-block `2c`) and the next 32 their high nibbles (sub-block `2c+1`).
/// Dot products take Q8_K activations.
public enum Q4_K {
    public static let blockSize = 256
    public static let blockBytes = 144

    /// Scale and minimum of sub-block `j` (0..<8) from the 12 packed bytes at `scales`.
    @inline(__always)
    public static func scaleMin(_ j: Int, _ scales: UnsafeRawPointer) -> (scale: UInt8, min: UInt8) {
        func q(_ i: Int) -> UInt8 { scales.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 {
            return (q(j) & 63, q(j + 4) & 63)
        }
        return ((q(j + 4) & 0x0f) | ((q(j - 4) >> 6) << 4), (q(j + 4) >> 4) | ((q(j) >> 6) << 4))
    }

    /// Reference dequantizer: `blocks` blocks at `source` into `256 * blocks` floats.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block)
            let dmin = Half.load(block, 2)
            let scales = block + 4
            let qs = block + 16
            var y = out + b * blockSize
            for chunk in 0 ..< 4 {
                let (sc1, m1) = scaleMin(2 * chunk, scales)
                let (sc2, m2) = scaleMin(2 * chunk + 1, scales)
                let d1 = d * Float(sc1), min1 = dmin * Float(m1)
                let d2 = d * Float(sc2), min2 = dmin * Float(m2)
                let q = qs + 32 * chunk
                for l in 0 ..< 32 { y[l] = d1 * Float(q.load(fromByteOffset: l, as: UInt8.self) & 0x0f) - min1 }
                for l in 0 ..< 32 { y[32 + l] = d2 * Float(q.load(fromByteOffset: l, as: UInt8.self) >> 4) - min2 }
                y += 64
            }
        }
    }

    /// Quant `i` (0..<256, 0...15) of the block at `block`.
    @inline(__always)
    static func quant(_ block: UnsafeRawPointer, _ i: Int) -> Int32 {
        let byte = block.load(fromByteOffset: 16 + 32 * (i / 64) + i % 32, as: UInt8.self)
        return Int32(i % 64 < 32 ? byte & 0x0f : byte >> 4)
    }

    /// Reference dot product of `blocks` Q4_K blocks with as many Q8_K blocks, in the operation
    /// order of ggml's AVX2 `ggml_vec_dot_q4_K_q8_K` (see `KQuant`): per block, eight integer lanes
    /// of `sc[i / 32] * q_i * a_i` go into `fma(d_w d_a, lane, acc)`, and four lanes
    /// `p` of minimums, `m[2p] * s[2p] + m[2p+1] * s[2p+1]` (`s[j]`: the Q8_K sums of elements
    /// `32j ..< 32j + 32`, added in 16 bits), into `fma(-d_a dmin_w, lane, accM)`; the result is
    /// `hsum8(acc) + ((accM0 + accM2) + (accM1 + accM3))`.
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        var accM = SIMD4<Float>()
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_K.blockBytes
            let da = Q8_K.scale(a)
            let d = da * Half.load(w)
            let dmin = -da * Half.load(w, 2)
            var lanes = SIMD8<Int32>()
            for sub in 0 ..< 8 {
                let sc = Int32(scaleMin(sub, w + 4).scale)
                for i in 32 * sub ..< 32 * sub + 32 {
                    lanes[KQuant.lane(i)] &+= sc &* quant(w, i) &* KQuant.q8(a, i)
                }
            }
            for p in 0 ..< 4 {
                var prod: Int32 = 0
                for j in 2 * p ..< 2 * p + 2 {
                    let s = Q8_K.blockSum(a, 2 * j) &+ Q8_K.blockSum(a, 2 * j + 1)
                    prod &+= Int32(scaleMin(j, w + 4).min) &* Int32(s)
                }
                accM[p] = accM[p].addingProduct(dmin, Float(prod))
            }
            KQuant.accumulate(d, lanes, into: &acc)
        }
        return GGMLMath.hsum8(acc) + ((accM[0] + accM[2]) + (accM[1] + accM[3]))
    }
}
