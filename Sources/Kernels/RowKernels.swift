/// Row-level entry points that dispatch on `BlockType`: dequantize a row, quantize activations
/// into a row's dot-product format, and take the dot product of a weight row with such activations.
///
/// Every pointer is to `count` elements in the named format (`type.rowBytes(count)` bytes);
/// `count` must be a multiple of the type's block size (callers validate shapes once, when a
/// model is loaded).
public enum RowKernels {
    /// Dequantizes `count` elements of type `type` at `source` into `out` (`count` floats).
    /// `type` may be any `BlockType`, the activation formats included.
    public static func dequantize(_ type: BlockType, _ source: UnsafeRawPointer, count: Int,
                                  into out: UnsafeMutablePointer<Float>) {
        let blocks = count / type.blockSize
        switch type {
        case .f32:
            UnsafeMutableRawPointer(out).copyMemory(from: source, byteCount: 4 * count)
        case .f16:
            for i in 0 ..< count { out[i] = Half.load(source, 2 * i) }
        case .bf16:
            for i in 0 ..< count {
                out[i] = BFloat16.toFloat(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .q4_0: Q4_0.dequantize(source, blocks: blocks, into: out)
        case .q4_1: Q4_1.dequantize(source, blocks: blocks, into: out)
        case .q5_0: Q5_0.dequantize(source, blocks: blocks, into: out)
        case .q5_1: Q5_1.dequantize(source, blocks: blocks, into: out)
        case .q8_0: Q8_0.dequantize(source, blocks: blocks, into: out)
        case .q8_1: Q8_1.dequantize(source, blocks: blocks, into: out)
        case .q4_K: Q4_K.dequantize(source, blocks: blocks, into: out)
        case .q6_K: Q6_K.dequantize(source, blocks: blocks, into: out)
        case .q8_K: Q8_K.dequantize(source, blocks: blocks, into: out)
        case .q2_K: Q2_K.dequantize(source, blocks: blocks, into: out)
        case .q3_K: Q3_K.dequantize(source, blocks: blocks, into: out)
        case .q5_K: Q5_K.dequantize(source, blocks: blocks, into: out)
        }
    }

    /// Converts `count` floats into `format` (a `dotType`: F32, F16, BF16, Q8_0, Q8_1 or Q8_K),
    /// writing `format.rowBytes(count)` bytes at `out`.
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, to format: BlockType,
                                into out: UnsafeMutableRawPointer) {
        let blocks = count / format.blockSize
        switch format {
        case .f32:
            out.copyMemory(from: x, byteCount: 4 * count)
        case .f16:
            for i in 0 ..< count { out.storeBytes(of: Half.bits(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        case .bf16:
            for i in 0 ..< count { out.storeBytes(of: BFloat16.bits(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        case .q8_0: Q8_0.quantize(x, blocks: blocks, into: out)
        case .q8_1: Q8_1.quantize(x, blocks: blocks, into: out)
        case .q8_K: Q8_K.quantize(x, blocks: blocks, into: out)
        case .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q6_K, .q2_K, .q3_K, .q5_K:
            preconditionFailure("\(format) is not an activation format")
        }
    }

    /// The dot product of a row of `count` weights of type `type` with `count` activations already
    /// in `type.dotType`. Q4_1 and Q8_0 use their llama.cpp-order paths (`dotSIMD`); the other types
    /// their references.
    @inlinable @inline(__always)
    public static func dot(_ type: BlockType, _ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer,
                           count: Int) -> Float {
        let blocks = count / type.blockSize
        switch type {
        case .q4_1: return Q4_1.dotSIMD(weights, activations, blocks: blocks)
        case .q8_0: return Q8_0.dotSIMD(weights, activations, blocks: blocks)
        case .q4_0: return Q4_0.dot(weights, activations, blocks: blocks)
        case .q5_0: return Q5_0.dot(weights, activations, blocks: blocks)
        case .q5_1: return Q5_1.dot(weights, activations, blocks: blocks)
        case .q4_K: return Q4_K.dot(weights, activations, blocks: blocks)
        case .q6_K: return Q6_K.dot(weights, activations, blocks: blocks)
        case .q2_K: return Q2_K.dot(weights, activations, blocks: blocks)
        case .q3_K: return Q3_K.dot(weights, activations, blocks: blocks)
        case .q5_K: return Q5_K.dot(weights, activations, blocks: blocks)
        case .f32:
            return VectorOps.dot(weights.assumingMemoryBound(to: Float.self),
                                 activations.assumingMemoryBound(to: Float.self), count: count)
        case .f16:
            var sum: Float = 0
            for i in 0 ..< count { sum += Half.load(weights, 2 * i) * Half.load(activations, 2 * i) }
            return sum
        case .bf16:
            var sum: Float = 0
            for i in 0 ..< count {
                let w = UInt16(littleEndian: weights.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                let a = UInt16(littleEndian: activations.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                sum += BFloat16.toFloat(w) * BFloat16.toFloat(a)
            }
            return sum
        case .q8_1, .q8_K:
            preconditionFailure("\(type) is not a weight format")
        }
    }

    /// The reference (scalar, block-by-block) dot product for every weight type; the tests compare
    /// `dot` with it.
    public static func referenceDot(_ type: BlockType, _ weights: UnsafeRawPointer, _ activations: UnsafeRawPointer,
                                    count: Int) -> Float {
        let blocks = count / type.blockSize
        switch type {
        case .q4_1: return Q4_1.dot(weights, activations, blocks: blocks)
        case .q8_0: return Q8_0.dot(weights, activations, blocks: blocks)
        default: return dot(type, weights, activations, count: count)
        }
    }
}
