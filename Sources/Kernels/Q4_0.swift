/// `block_q4_0`: 32 weights as 4-bit integers with one F16 scale; `x = (q - 8) * d`.
///
/// Layout (18 bytes): `d: f16`, `qs: [16 x u8]`; element `j < 16` is the low nibble of `qs[j]`,
/// element `j + 16` its high nibble. Dot products take Q8_0 activations.
public enum Q4_0 {
    public static let blockSize = 32
    public static let blockBytes = 18

    /// Reference dequantizer: `blocks` blocks at `source` into `32 * blocks` floats.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block)
            let y = out + b * blockSize
            for j in 0 ..< 16 {
                let byte = block.load(fromByteOffset: 2 + j, as: UInt8.self)
                y[j] = Float(Int32(byte & 0x0f) - 8) * d
                y[j + 16] = Float(Int32(byte >> 4) - 8) * d
            }
        }
    }

    /// Reference dot product of `blocks` Q4_0 blocks with as many Q8_0 blocks:
    /// `sum over blocks of d_w * d_a * sum_j (q_w[j] - 8) * q_a[j]`, block after block as
    /// `sum = fma(isum, d_w * d_a, sum)`: the order of llama.cpp's repacked Q4_0 kernels
    /// (`q4_0_8x8_q8_0` gemv/gemm), which llama.cpp runs on AVX2 CPUs for every Q4_0 matrix whose
    /// row count is a multiple of 8 (ggml's `vec_dot_q4_0_q8_0`, eight lanes, is not used then).
    public static func dot(_ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0 ..< blocks {
            let w = weights + b * blockBytes
            let a = activations + b * Q8_0.blockBytes
            var isum: Int32 = 0
            for j in 0 ..< 16 {
                let byte = w.load(fromByteOffset: 2 + j, as: UInt8.self)
                isum += (Int32(byte & 0x0f) - 8) * Int32(a.load(fromByteOffset: 2 + j, as: Int8.self))
                isum += (Int32(byte >> 4) - 8) * Int32(a.load(fromByteOffset: 2 + j + 16, as: Int8.self))
            }
            sum = GGMLMath.fma(Float(isum), Half.load(w) * Half.load(a), sum)
        }
        return sum
    }
}
