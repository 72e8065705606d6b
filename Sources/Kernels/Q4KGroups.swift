import CKernels

/// Q4_K prompt products in groups of sixteen rows (`q4k_groups.c`): the integer products of the
/// exact kernels, scaled per 32-element sub-block in F32 instead of in ggml's eight integer lanes, so
/// within a tolerance of `RowKernels.dot`, not its bits (about 1e-7 of the largest output on random
/// 1B-shaped matrices). Only the tolerance prompt path (`Inference.PrefillMode.blas`) uses them, in
/// place of dequantizing to F32 for `sgemm`: 1.5x the exact GEMM at 64 activations and 2x at 320
/// (`bench/kernels/q4k_groups.sh`, `bench/results/q4k-groups.md`).
///
/// A group is repacked from the matrix's ggml rows, call by call, into a buffer its caller owns
/// (`groupBytes`): the model stays mapped once, and the repacking (one pass over the weights) is
/// paid back over the prompt's activations.
public enum Q4KGroups {
    /// Rows per group.
    public static let rows = 16

    /// Whether this machine has the kernels (AVX512-VNNI). Decided on `FastKernels.machineInstructionSet`,
    /// not on a test's forced one, like `FastKernels.hasExactPromptGEMM`.
    public static var available: Bool { FastKernels.machineInstructionSet == .avx512VNNI }

    /// Bytes of one repacked group of `columns` columns (a multiple of 256).
    public static func groupBytes(columns: Int) -> Int { sn_q4k_group_bytes(Int32(columns / 256)) }

    /// Floats of sub-block sums per activation of `columns` columns (`activationSums`).
    public static func sumsPerActivation(columns: Int) -> Int { columns / 32 }

    /// Rows `first ..< first + count` (`count <= rows`) of the Q4_K `matrix` into `group`.
    public static func repack(_ matrix: WeightMatrix, first: Int, count: Int, into group: UnsafeMutableRawPointer) {
        precondition(matrix.type == .q4_K && count > 0 && count <= rows && first + count <= matrix.rows)
        sn_q4k_repack_group((matrix.base + first * matrix.rowBytes).assumingMemoryBound(to: UInt8.self), matrix.rowBytes,
                            Int32(count), Int32(matrix.columns / 256), group.assumingMemoryBound(to: UInt8.self))
    }

    /// The sub-block sums of one Q8_K activation row of `columns` columns into `sums`.
    public static func activationSums(_ activation: UnsafeRawPointer, columns: Int, into sums: UnsafeMutablePointer<Float>) {
        sn_q4k_activation_sums(activation.assumingMemoryBound(to: UInt8.self), Int32(columns / 256), sums)
    }

    /// `out[t * outStride + r] = dot(row r of group, activation t)` for `r < rowCount`, `t < count`:
    /// Q8_K activations `activationStride` bytes apart with their sums (`sumsPerActivation` apart).
    public static func multiply(_ group: UnsafeRawPointer, columns: Int, rowCount: Int, activations: UnsafeRawPointer,
                                activationStride: Int, sums: UnsafePointer<Float>, count: Int,
                                into out: UnsafeMutablePointer<Float>, outStride: Int) {
        sn_q4k_group_gemm(group.assumingMemoryBound(to: UInt8.self), Int32(columns / 256), Int32(rowCount),
                          activations.assumingMemoryBound(to: UInt8.self), activationStride, sums,
                          sumsPerActivation(columns: columns), Int32(count), out, outStride)
    }
}
