/// `block_q6_K`: 256 weights in 16 sub-blocks of 16, 6-bit quants (4 low bits in `ql`, 2 high bits
/// in `qh`), an 8-bit signed scale per sub-block and an F16 super-block scale:
/// `x = d * scales[s] * (q - 32)`.
///
/// Layout (210 bytes): `ql: [128 x u8]`, `qh: [64 x u8]`, `scales: [16 x i8]`, `d: f16`.
/// Each half (128 elements) `n` uses `ql[64n ..< 64n+64]`, `qh[32n ..< 32n+32]`,
/// `scales[8n ..< 8n+8]`; element `l + 32k` (l < 32, k < 4) takes nibble `k / 2` of
/// `ql[l + 32 (k % 2)]` and bits `2k, 2k+1` of `qh[l]`, with scale `scales[l / 16 + 2k]`.
/// Dot products take Q8_K activations.
public enum Q6_K {
    public static let blockSize = 256
    public static let blockBytes = 210

    /// The quant (already minus 32) and scale index of element `i` (0..<256) of the block at `block`.
    @inline(__always)
    static func element(_ block: UnsafeRawPointer, _ i: Int) -> (q: Int32, scale: Int) {
        let n = i / 128, r = i % 128, k = r / 32, l = r % 32
        let lowByte = block.load(fromByteOffset: 64 * n + l + 32 * (k % 2), as: UInt8.self)
        let low = k < 2 ? lowByte & 0x0f : lowByte >> 4
        let high = (block.load(fromByteOffset: 128 + 32 * n + l, as: UInt8.self) >> UInt8(2 * k)) & 3
        return (Int32(low | (high << 4)) - 32, 8 * n + l / 16 + 2 * k)
    }

    @inline(__always)
    static func scale(_ block: UnsafeRawPointer, _ s: Int) -> Int32 {
        Int32(block.load(fromByteOffset: 192 + s, as: Int8.self))
    }

    /// Reference dequantizer: `blocks` blocks at `source` into `256 * blocks` floats.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block, 208)
            for i in 0 ..< 256 {
                let (q, s) = element(block, i)
                out[b * blockSize + i] = d * Float(scale(block, s)) * Float(q)
            }
        }
    }

    /// Reference dot product of `blocks` Q6_K blocks with as many Q8_K blocks, in the operation
    /// order of ggml's AVX2 `ggml_vec_dot_q6_K_q8_K` (see `KQuant`): per block, eight integer
    /// lanes of `scales[i / 16] * q_i * a_i` with the unsigned quants `q_i` (0...63), lane `k`
    /// less `32 (scales[2k] bsums[2k] + scales[2k+1] bsums[2k+1])` (the Q8_K block's sums), go into
    /// `fma(d_w d_a, lane, acc)`; the result is `hsum8(acc)`.
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_K.blockBytes
            var lanes = SIMD8<Int32>()
            for i in 0 ..< 256 {
                let (q, s) = element(w, i)
                lanes[KQuant.lane(i)] &+= scale(w, s) &* (q &+ 32) &* KQuant.q8(a, i)
            }
            lanes &-= KQuant.maddBlockSums(a) { scale(w, $0) } &<< 5
            KQuant.accumulate(Q8_K.scale(a) * Half.load(w, 208), lanes, into: &acc)
        }
        return GGMLMath.hsum8(acc)
    }
}
