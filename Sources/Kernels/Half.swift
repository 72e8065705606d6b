/// IEEE half precision (`F16`) and bfloat16 (`BF16`) conversions, as ggml does them.
///
/// `F16 -> F32` goes through a 65,536-entry table (256 KiB, built once), like ggml's
/// `ggml_table_f32_f16`, because Swift on baseline x86-64 converts `Float16` with a library call.
/// `F32 -> F16` rounds to nearest even (what F16C's `vcvtps2ph` does in ggml).
public enum Half {
    /// `table[bits]` is the value of the half-precision number with those bits: 65,536 floats,
    /// allocated once for the life of the process (never freed, so the pointer is always valid).
    nonisolated(unsafe) public static let table: UnsafePointer<Float> = {
        let table = UnsafeMutablePointer<Float>.allocate(capacity: 65536)
        for bits in 0 ..< 65536 { table[bits] = Float(Float16(bitPattern: UInt16(bits))) }
        return UnsafePointer(table)
    }()

    /// The value of the F16 number with bits `bits`.
    @inlinable @inline(__always)
    public static func toFloat(_ bits: UInt16) -> Float {
        table[Int(bits)]
    }

    /// The F16 bits nearest to `value` (ties to even; overflow gives infinity).
    @inlinable @inline(__always)
    public static func bits(_ value: Float) -> UInt16 {
        Float16(value).bitPattern
    }

    /// `value` rounded to F16 and back: what ggml computes with when it converts an activation to F16.
    @inlinable @inline(__always)
    public static func round(_ value: Float) -> Float {
        toFloat(bits(value))
    }

    /// Reads the F16 stored little-endian at `pointer + offset` (any alignment).
    @inlinable @inline(__always)
    public static func load(_ pointer: UnsafeRawPointer, _ offset: Int = 0) -> Float {
        toFloat(UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }
}

/// bfloat16: the top 16 bits of an F32.
public enum BFloat16 {
    /// The value of the BF16 number with bits `bits` (exact).
    @inlinable @inline(__always)
    public static func toFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// The BF16 bits nearest to `value`, ties to even; NaN stays a quiet NaN (ggml's `ggml_compute_fp32_to_bf16`).
    @inlinable @inline(__always)
    public static func bits(_ value: Float) -> UInt16 {
        let u = value.bitPattern
        if u & 0x7fff_ffff > 0x7f80_0000 { // NaN
            return UInt16(truncatingIfNeeded: (u >> 16) | 64)
        }
        return UInt16(truncatingIfNeeded: (u &+ (0x7fff &+ ((u >> 16) & 1))) >> 16)
    }
}

/// `value` rounded to the nearest integer (ties to even, as `_mm256_round_ps(_MM_ROUND_NEAREST)`
/// and ggml's `nearest_int`), clamped to -128...127; NaN gives 0. Never traps.
@inlinable @inline(__always)
public func nearestInt8(_ value: Float) -> Int8 {
    let r = value.rounded(.toNearestOrEven)
    guard r == r else { return 0 }
    return Int8(min(max(r, -128), 127))
}
