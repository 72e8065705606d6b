import CKernels
import Foundation

/// Q4_1 prompt rows in groups of sixteen rows (`q4_1_groups.c`): the exact kernels' integer products
/// against the same Q8_1 activations, each block's dot scaled once in F32 instead of in ggml's eight
/// float lanes, so within a tolerance of `RowKernels.dot` (2-8e-7 of the largest output), not its
/// bits. Each output is the same whatever the number of activations and wherever its row sits, so a
/// prompt row's result depends only on its own input, as with the exact kernels. Only the tolerance
/// prompt path uses them (the engine's prompt rows under `Inference.PrefillMode.blas`, never decoding
/// rows, never `--exact`).
///
/// A group is repacked from the matrix's rows (packed for the exact kernels, or ggml's), call by
/// call, into a buffer its caller owns (`groupBytes`): the model stays in memory once.
public enum Q4_1Groups {
    /// Rows per group.
    public static let rows = 16

    /// Whether this machine has the kernels (AVX512-VNNI), decided on `FastKernels.machineInstructionSet`
    /// (not on a test's forced one), like `KQuantGroups.available`.
    public static var available: Bool { FastKernels.machineInstructionSet == .avx512VNNI }

    /// Whether engines group prompt rows unless told otherwise (`CPUBackend.groupsPromptRows`): where
    /// the machine has the kernels, unless the environment sets `SECURENODE_PROMPT_ROW_GROUPS=0` (the
    /// exact kernels instead, for A/B benchmarks of one binary, like `SECURENODE_KERNEL_ISA`).
    public static var enabledByDefault: Bool {
        available && ProcessInfo.processInfo.environment["SECURENODE_PROMPT_ROW_GROUPS"] != "0"
    }

    /// Whether `matrix` can be grouped here.
    public static func supports(_ matrix: WeightMatrix) -> Bool {
        available && matrix.type == .q4_1 && matrix.columns % 32 == 0
    }

    /// Bytes of one repacked group of a matrix with `columns` columns.
    public static func groupBytes(columns: Int) -> Int { sn_q4_1_group_bytes(Int32(columns / 32)) }

    /// Floats of activation scales per activation row of `columns` columns (`prepare`).
    public static func scalesPerActivation(columns: Int) -> Int { 2 * (columns / 32) }

    /// Rows `first ..< first + count` (`count <= rows`) of the Q4_1 `matrix` into `group`.
    public static func repack(_ matrix: WeightMatrix, first: Int, count: Int, into group: UnsafeMutableRawPointer) {
        precondition(matrix.type == .q4_1 && matrix.columns % 32 == 0)
        precondition(count > 0 && count <= rows && first >= 0 && first + count <= matrix.rows)
        sn_q4_1_repack_group(matrix.base.assumingMemoryBound(to: UInt8.self), matrix.rowBytes, Int32(matrix.rows),
                             matrix.isPacked ? 1 : 0, Int32(first), Int32(count), Int32(matrix.columns / 32),
                             group.assumingMemoryBound(to: UInt8.self))
    }

    /// One Q8_1 activation row's scales (`scalesPerActivation` floats) into `scales`.
    public static func prepare(_ activation: UnsafeRawPointer, columns: Int, into scales: UnsafeMutablePointer<Float>) {
        sn_q4_1_activation_scales(activation.assumingMemoryBound(to: UInt8.self), Int32(columns / 32), scales)
    }

    /// Fewer activations than this take `multiplyDirect` (a repacking is not paid back by one:
    /// direct 0.91-0.97x the exact kernels, the groups 0.47-0.77x; from two the groups win on
    /// SmolLM2's shapes; `bench/results/q4_1-groups.md`).
    public static let directBelow = 2

    /// Rows `first ..< first + count` of the Q4_1 `matrix` against `count` activations without
    /// repacking, `out[t * outStride + r - first]`: the same bits as `repack` and `multiply` (the
    /// integer dots are exact in any order; the float operations are the same, in the same order).
    public static func multiplyDirect(_ matrix: WeightMatrix, first: Int, rowCount: Int, activations: UnsafeRawPointer,
                                      activationStride: Int, scales: UnsafePointer<Float>, count: Int,
                                      into out: UnsafeMutablePointer<Float>, outStride: Int) {
        precondition(matrix.type == .q4_1 && matrix.columns % 32 == 0)
        precondition(rowCount > 0 && first >= 0 && first + rowCount <= matrix.rows)
        sn_q4_1_rows_direct(matrix.base.assumingMemoryBound(to: UInt8.self), matrix.rowBytes, Int32(matrix.rows),
                            matrix.isPacked ? 1 : 0, Int32(first), Int32(rowCount), Int32(matrix.columns / 32),
                            activations.assumingMemoryBound(to: UInt8.self), activationStride, scales,
                            scalesPerActivation(columns: matrix.columns), Int32(count), out, outStride)
    }

    /// `out[t * outStride + r] = dot(row r of group, activation t)` for `r < rowCount`, `t < count`:
    /// Q8_1 activations `activationStride` bytes apart with their `prepare`d scales
    /// (`scalesPerActivation` apart).
    public static func multiply(_ group: UnsafeRawPointer, columns: Int, rowCount: Int, activations: UnsafeRawPointer,
                                activationStride: Int, scales: UnsafePointer<Float>, count: Int,
                                into out: UnsafeMutablePointer<Float>, outStride: Int) {
        precondition(rowCount > 0 && rowCount <= rows)
        sn_q4_1_group_gemm(group.assumingMemoryBound(to: UInt8.self), Int32(columns / 32), Int32(rowCount),
                           activations.assumingMemoryBound(to: UInt8.self), activationStride, scales,
                           scalesPerActivation(columns: columns), Int32(count), out, outStride)
    }
}
