/// `block_q8_K`: the activation format for K-quant dot products: 256 signed 8-bit integers, an
/// F32 scale, and the sums of each 16 consecutive quants.
///
/// Layout (292 bytes): `d: f32`, `qs: [256 x i8]`, `bsums: [16 x i16]`.
public enum Q8_K {
    public static let blockSize = 256
    public static let blockBytes = 292

    /// Quantizes `256 * blocks` floats as ggml's `quantize_row_q8_K_ref`: `max` is the element of
    /// largest magnitude (with its sign), `iscale = -127 / max`, `q = min(127, nearest(iscale * x))`,
    /// `d = 1 / iscale`; an all-zero block gets `d = 0` and zero quants.
    public static func quantize(_ x: UnsafePointer<Float>, blocks: Int, into out: UnsafeMutableRawPointer) {
        for b in 0 ..< blocks {
            let block = out + b * blockBytes
            let v = x + b * blockSize
            var amax: Float = 0
            var signedMax: Float = 0
            for j in 0 ..< 256 where abs(v[j]) > amax {
                amax = abs(v[j])
                signedMax = v[j]
            }
            guard amax != 0 else {
                block.initializeMemory(as: UInt8.self, repeating: 0, count: blockBytes)
                continue
            }
            let iscale = -127 / signedMax
            for j in 0 ..< 256 {
                block.storeBytes(of: min(127, nearestInt8(iscale * v[j])), toByteOffset: 4 + j, as: Int8.self)
            }
            for group in 0 ..< 16 {
                var sum: Int16 = 0
                for j in 0 ..< 16 { sum += Int16(block.load(fromByteOffset: 4 + 16 * group + j, as: Int8.self)) }
                block.storeBytes(of: sum.littleEndian, toByteOffset: 260 + 2 * group, as: Int16.self)
            }
            block.storeBytes(of: (1 / iscale).bitPattern.littleEndian, as: UInt32.self)
        }
    }

    /// The block's F32 scale.
    @inline(__always)
    public static func scale(_ block: UnsafeRawPointer) -> Float {
        Float(bitPattern: UInt32(littleEndian: block.loadUnaligned(as: UInt32.self)))
    }

    /// The sum of quants `16 g ..< 16 g + 16` (g < 16).
    @inline(__always)
    public static func blockSum(_ block: UnsafeRawPointer, _ g: Int) -> Int16 {
        Int16(littleEndian: block.loadUnaligned(fromByteOffset: 260 + 2 * g, as: Int16.self))
    }

    /// Reference dequantizer (for tests): `q * d`.
    public static func dequantize(_ source: UnsafeRawPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = source + b * blockBytes
            let d = scale(block)
            for j in 0 ..< 256 {
                out[b * blockSize + j] = Float(block.load(fromByteOffset: 4 + j, as: Int8.self)) * d
            }
        }
    }
}
