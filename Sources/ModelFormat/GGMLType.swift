/// A ggml tensor element type. The raw value is the type id stored in GGUF tensor infos.
///
/// Ids 4 and 5 (the removed Q4_2/Q4_3), 31–33 (removed Q4_0_4_4 & co.) and anything above 35
/// are not types: `GGMLType(rawValue:)` returns nil for them and the reader refuses the tensor.
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q8_1 = 9
    case q2_k = 10
    case q3_k = 11
    case q4_k = 12
    case q5_k = 13
    case q6_k = 14
    case q8_k = 15
    case iq2_xxs = 16
    case iq2_xs = 17
    case iq3_xxs = 18
    case iq1_s = 19
    case iq4_nl = 20
    case iq3_s = 21
    case iq2_s = 22
    case iq4_xs = 23
    case i8 = 24
    case i16 = 25
    case i32 = 26
    case i64 = 27
    case f64 = 28
    case iq1_m = 29
    case bf16 = 30
    case tq1_0 = 34
    case tq2_0 = 35

    /// The one table of type traits: ggml name, elements per block, bytes per block.
    private var traits: (name: String, blockSize: Int, typeSize: Int) {
        switch self {
        case .f32: ("F32", 1, 4)
        case .f16: ("F16", 1, 2)
        case .q4_0: ("Q4_0", 32, 18)
        case .q4_1: ("Q4_1", 32, 20)
        case .q5_0: ("Q5_0", 32, 22)
        case .q5_1: ("Q5_1", 32, 24)
        case .q8_0: ("Q8_0", 32, 34)
        case .q8_1: ("Q8_1", 32, 36)
        case .q2_k: ("Q2_K", 256, 84)
        case .q3_k: ("Q3_K", 256, 110)
        case .q4_k: ("Q4_K", 256, 144)
        case .q5_k: ("Q5_K", 256, 176)
        case .q6_k: ("Q6_K", 256, 210)
        case .q8_k: ("Q8_K", 256, 292)
        case .iq2_xxs: ("IQ2_XXS", 256, 66)
        case .iq2_xs: ("IQ2_XS", 256, 74)
        case .iq3_xxs: ("IQ3_XXS", 256, 98)
        case .iq1_s: ("IQ1_S", 256, 50)
        case .iq4_nl: ("IQ4_NL", 32, 18)
        case .iq3_s: ("IQ3_S", 256, 110)
        case .iq2_s: ("IQ2_S", 256, 82)
        case .iq4_xs: ("IQ4_XS", 256, 136)
        case .i8: ("I8", 1, 1)
        case .i16: ("I16", 1, 2)
        case .i32: ("I32", 1, 4)
        case .i64: ("I64", 1, 8)
        case .f64: ("F64", 1, 8)
        case .iq1_m: ("IQ1_M", 256, 56)
        case .bf16: ("BF16", 1, 2)
        case .tq1_0: ("TQ1_0", 256, 54)
        case .tq2_0: ("TQ2_0", 256, 66)
        }
    }

    /// The type id stored in the file.
    public var id: UInt32 { rawValue }
    /// The ggml name, e.g. `Q4_K`.
    public var name: String { traits.name }
    /// Elements per block; the first dimension of a tensor must be a multiple of it.
    public var blockSize: Int { traits.blockSize }
    /// Bytes per block.
    public var typeSize: Int { traits.typeSize }

    /// Bytes taken by a tensor with these dimensions (ggml order, `ne0` first):
    /// `ne0 / blockSize * typeSize * ne1 * ne2 * ne3`. Nil when `ne0` is not a multiple of the
    /// block size, a dimension is negative, or the size does not fit in `Int`.
    public func byteCount(dims: [Int]) -> Int? {
        guard let ne0 = dims.first, ne0 >= 0, ne0 % blockSize == 0 else { return nil }
        var total = (ne0 / blockSize).multipliedReportingOverflow(by: typeSize)
        for dim in dims.dropFirst() {
            guard !total.overflow, dim >= 0 else { return nil }
            total = total.partialValue.multipliedReportingOverflow(by: dim)
        }
        return total.overflow ? nil : total.partialValue
    }

    public var description: String { name }
}
