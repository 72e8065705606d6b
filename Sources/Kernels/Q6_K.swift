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

    /// Reference dot product of `blocks` Q6_K blocks with as many Q8_K blocks:
    /// `sum over blocks of d_w d_a sum_s scales[s] sum_{j in s} (q_w - 32) q_a`.
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_K.blockBytes
            var isum: Int32 = 0
            // Sub-block s = 16 elements starting at element 16 * s; its scale index is `element`'s.
            for s in 0 ..< 16 {
                var sub: Int32 = 0
                var scaleIndex = 0
                for i in 16 * s ..< 16 * s + 16 {
                    let (q, si) = element(w, i)
                    scaleIndex = si
                    sub += q * Int32(a.load(fromByteOffset: 4 + i, as: Int8.self))
                }
                isum += scale(w, scaleIndex) * sub
            }
            sum += Half.load(w, 208) * Q8_K.scale(a) * Float(isum)
        }
        return sum
    }
}
