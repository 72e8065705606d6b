/// The tensor element types the kernels compute with: one table of traits, like ggml's
/// `type_traits`. Every case but `q8_1` and `q8_K` may be a weight type; `q8_1` and `q8_K` are only
/// the formats that activations are quantized to before a dot product with `q4_1`/`q5_1` and the
/// K-quants (`q2_K`, `q3_K`, `q4_K`, `q5_K`, `q6_K`).
///
/// `Kernels` does not depend on the GGUF reader: `Inference` maps `GGMLType` to this enum.
public enum BlockType: Sendable, CaseIterable, CustomStringConvertible {
    case f32, f16, bf16, q4_0, q4_1, q8_0, q8_1, q4_K, q6_K, q8_K
    case q2_K, q3_K, q5_K
    case q5_0, q5_1

    /// Elements per block (1 for the float types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1: 32
        case .q4_K, .q6_K, .q8_K, .q2_K, .q3_K, .q5_K: 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: Q4_0.blockBytes
        case .q4_1: Q4_1.blockBytes
        case .q5_0: Q5_0.blockBytes
        case .q5_1: Q5_1.blockBytes
        case .q8_0: Q8_0.blockBytes
        case .q8_1: Q8_1.blockBytes
        case .q4_K: Q4_K.blockBytes
        case .q6_K: Q6_K.blockBytes
        case .q8_K: Q8_K.blockBytes
        case .q2_K: Q2_K.blockBytes
        case .q3_K: Q3_K.blockBytes
        case .q5_K: Q5_K.blockBytes
        }
    }

    /// The format activations are converted to before a dot product with a row of this type
    /// (ggml's `vec_dot_type`): Q4_0, Q5_0 and Q8_0 take Q8_0, Q4_1 and Q5_1 take Q8_1, the K-quants take Q8_K,
    /// F16 and BF16 take their own type, F32 stays F32.
    public var dotType: BlockType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        case .q4_0, .q5_0, .q8_0: .q8_0
        case .q4_1, .q5_1: .q8_1
        case .q8_1: .q8_1
        case .q4_K, .q6_K, .q8_K, .q2_K, .q3_K, .q5_K: .q8_K
        }
    }

    /// Whether a weight matrix may have this type (the activation-only formats may not).
    public var isWeightType: Bool { self != .q8_1 && self != .q8_K }

    /// Bytes taken by `count` elements, or nil when `count` is not a multiple of the block size.
    public func rowBytes(_ count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : bytes
    }

    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q8_1: "Q8_1"
        case .q4_K: "Q4_K"
        case .q6_K: "Q6_K"
        case .q8_K: "Q8_K"
        case .q2_K: "Q2_K"
        case .q3_K: "Q3_K"
        case .q5_K: "Q5_K"
        }
    }
}
