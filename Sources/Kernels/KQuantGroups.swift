import CKernels

/// Q4_K and Q6_K prompt products in groups of sixteen rows (`kquant_groups.c`): the integer products
/// of the exact kernels, scaled per sub-block in F32 instead of in ggml's eight integer lanes, so
/// within a tolerance of `RowKernels.dot`, not its bits (about 1e-7 of the largest output on random
/// 1B-shaped matrices). Only the tolerance prompt path (`Inference.PrefillMode.blas`) uses them, in
/// place of the exact GEMM or of dequantizing to F32 for `sgemm`: Q4_K 1.5x the exact GEMM at 64
/// activations and 2x at 320 (`bench/kernels/kquant_groups.sh`, `bench/results/kquant-groups.md`).
///
/// A group is repacked from the matrix's ggml rows, call by call, into a buffer its caller owns
/// (`groupBytes`): the model stays mapped once, and the repacking (one pass over the weights) is
/// paid back over the prompt's activations.
public enum KQuantGroups {
    /// Rows per group.
    public static let rows = 16

    /// Whether this machine has the kernels (AVX512-VNNI). Decided on `FastKernels.machineInstructionSet`,
    /// not on a test's forced one, like `FastKernels.hasExactPromptGEMM`.
    public static var available: Bool { FastKernels.machineInstructionSet == .avx512VNNI }

    /// Whether `type` has grouped products here.
    public static func supports(_ type: BlockType) -> Bool { available && (type == .q4_K || type == .q6_K) }

    /// Bytes of one repacked group of a `type` matrix with `columns` columns (a multiple of 256).
    public static func groupBytes(_ type: BlockType, columns: Int) -> Int {
        sn_kquant_group_bytes(FastKernels.kernelType(type), Int32(columns / 256))
    }

    /// Q4_K's activation side data: floats per activation of `columns` columns (`prepareQ4_K`).
    public static func sumsPerActivation(columns: Int) -> Int { columns / 32 }

    /// Rows `first ..< first + count` (`count <= rows`) of the Q4_K or Q6_K `matrix` into `group`.
    public static func repack(_ matrix: WeightMatrix, first: Int, count: Int, into group: UnsafeMutableRawPointer) {
        precondition((matrix.type == .q4_K || matrix.type == .q6_K) && !matrix.isPacked)
        precondition(count > 0 && count <= rows && first >= 0 && first + count <= matrix.rows)
        sn_kquant_repack_group(FastKernels.kernelType(matrix.type), (matrix.base + first * matrix.rowBytes).assumingMemoryBound(to: UInt8.self),
                               matrix.rowBytes, Int32(count), Int32(matrix.columns / 256), group.assumingMemoryBound(to: UInt8.self))
    }

    /// For Q4_K: the sub-block sums of one Q8_K activation row of `columns` columns into `sums`.
    public static func prepareQ4_K(_ activation: UnsafeRawPointer, columns: Int, into sums: UnsafeMutablePointer<Float>) {
        sn_q4k_activation_sums(activation.assumingMemoryBound(to: UInt8.self), Int32(columns / 256), sums)
    }

    /// For Q6_K: one Q8_K activation row of `columns` columns as unsigned bytes (+128) into `out`
    /// (`BlockType.q8_K.rowBytes(columns)` bytes).
    public static func prepareQ6_K(_ activation: UnsafeRawPointer, columns: Int, into out: UnsafeMutableRawPointer) {
        sn_q6k_activations(activation.assumingMemoryBound(to: UInt8.self), Int32(columns / 256), out.assumingMemoryBound(to: UInt8.self))
    }

    /// `out[t * outStride + r] = dot(row r of group, activation t)` for `r < rowCount`, `t < count`, for a
    /// group of a `type` matrix. Q4_K: Q8_K activations `activationStride` bytes apart with their `sums`
    /// (`prepareQ4_K`, `sumsPerActivation` apart); Q6_K: `prepareQ6_K`'s rows (`sums` unused).
    public static func multiply(_ type: BlockType, _ group: UnsafeRawPointer, columns: Int, rowCount: Int,
                                activations: UnsafeRawPointer, activationStride: Int, sums: UnsafePointer<Float>?,
                                count: Int, into out: UnsafeMutablePointer<Float>, outStride: Int) {
        precondition(type == .q4_K ? sums != nil : type == .q6_K)
        sn_kquant_group_gemm(FastKernels.kernelType(type), group.assumingMemoryBound(to: UInt8.self), Int32(columns / 256),
                             Int32(rowCount), activations.assumingMemoryBound(to: UInt8.self), activationStride, sums,
                             sumsPerActivation(columns: columns), Int32(count), out, outStride)
    }
}
