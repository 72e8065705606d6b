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

    /// Reference dot product of `blocks` Q4_K blocks with as many Q8_K blocks:
    /// `sum over blocks of d_w d_a sum_s sc[s] sum_{j in s} q_w q_a - dmin_w d_a sum_s m[s] sum_{j in s} q_a`
    /// (the second sum uses the Q8_K block's 16-element sums, as ggml does).
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_K.blockBytes
            let scales = w + 4
            let qs = w + 16
            let aq = a + 4
            var scaled: Int32 = 0
            var mins: Int32 = 0
            for sub in 0 ..< 8 {
                let (sc, m) = scaleMin(sub, scales)
                let chunk = sub / 2
                let shift: UInt8 = sub % 2 == 0 ? 0 : 4
                var isum: Int32 = 0
                for l in 0 ..< 32 {
                    let q = Int32((qs.load(fromByteOffset: 32 * chunk + l, as: UInt8.self) >> shift) & 0x0f)
                    isum += q * Int32(aq.load(fromByteOffset: 32 * sub + l, as: Int8.self))
                }
                scaled += Int32(sc) * isum
                let bsum = Int32(Q8_K.blockSum(a, 2 * sub)) + Int32(Q8_K.blockSum(a, 2 * sub + 1))
                mins += Int32(m) * bsum
            }
            let da = Q8_K.scale(a)
            sum += Half.load(w) * da * Float(scaled) - Half.load(w, 2) * da * Float(mins)
        }
        return sum
    }
}
