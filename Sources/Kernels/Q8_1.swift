/// `block_q8_1`: the activation format for Q4_1 dot products: 32 signed 8-bit integers, an F16
/// scale `d`, and `s = d * sum(q)` (F16), which lets a Q4_1 minimum be applied once per block.
///
/// Layout (36 bytes): `d: f16`, `s: f16`, `qs: [32 x i8]`.
public enum Q8_1 {
    public static let blockSize = 32
    public static let blockBytes = 36

    /// Quantizes `32 * blocks` floats as ggml's x86 `quantize_row_q8_1`: `amax = max |x|`,
    /// `d = amax / 127`, `q = round_to_nearest_even(x * 127 / amax)`, `s = d * sum(q)`, `d` and
    /// `s` stored as F16.
    public static func quantize(_ x: UnsafePointer<Float>, blocks: Int, into out: UnsafeMutableRawPointer) {
        for b in 0 ..< blocks {
            let block = out + b * blockBytes
            let v = x + b * blockSize
            var amax: Float = 0
            for j in 0 ..< 32 { amax = max(amax, abs(v[j])) }
            let d = amax / 127
            let id: Float = amax != 0 ? 127 / amax : 0
            var qsum: Int32 = 0
            for j in 0 ..< 32 {
                let q = nearestInt8(v[j] * id)
                qsum += Int32(q)
                block.storeBytes(of: q, toByteOffset: 4 + j, as: Int8.self)
            }
            block.storeBytes(of: Half.bits(d).littleEndian, as: UInt16.self)
            block.storeBytes(of: Half.bits(d * Float(qsum)).littleEndian, toByteOffset: 2, as: UInt16.self)
        }
    }

    /// Reference dequantizer (for tests): `q * d`.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = Half.load(block)
            for j in 0 ..< 32 {
                out[b * blockSize + j] = Float(block.load(fromByteOffset: 4 + j, as: Int8.self)) * d
            }
        }
    }
}
