import CKernels

extension FastKernels {
    /// The instruction sets the Q4_1 and Q8_0 matrix products have kernels for.
    public enum InstructionSet: Int32, Sendable {
        /// vpmaddubsw + vpmaddwd (kernels.c): every x86-64 CPU the C kernels run on.
        case avx2 = 1
        /// vpdpbusd on 256-bit registers (vnni.c), for several activations at once: CPUs with
        /// AVX-512 F, BW, VL and VNNI. Bit-identical to `.avx2`.
        case avx512VNNI = 2
    }

    /// The instruction set the matrix products use now (`sn_kernels_isa`): `.avx512VNNI` on a CPU
    /// that has it unless `setInstructionSetForTesting(.avx2)` is in force, else `.avx2`; nil
    /// when the C kernels are not available.
    public static var instructionSet: InstructionSet? {
        available ? InstructionSet(rawValue: sn_kernels_isa()) : nil
    }

    /// Whether prompt batches (several activations) of `type` take a register-blocked exact GEMM
    /// that is faster than dequantizing for OpenBLAS: Q4_K and Q6_K with `.avx512VNNI` (kquants.c,
    /// `sn_kquant_gemm_vnni`), Q4_1 (vnni.c's multi-row tiles: SmolLM2 prompt processing
    /// 1.3-1.9x at 64-512 tokens with them instead of dequantize + sgemm, `bench-engine` A/B, and
    /// bench/results/scale-135m-q4_1-{blas,exact}.md) and Q4_0 (q32.c's packed eight-row kernel:
    /// SmolLM2 Q4_0 1.1-2.3x at 64-512 tokens, bench/results/blas-threshold-q4_0.md), each
    /// bit-identical to its row kernels, so to llama.cpp's.
    public static func hasExactPromptGEMM(_ type: BlockType) -> Bool {
        (type == .q4_K || type == .q6_K || type == .q4_1 || type == .q4_0) && instructionSet == .avx512VNNI
    }

    /// For tests and benchmarks that compare the two paths on one machine: `.avx2` keeps every
    /// matrix product on the AVX2 kernels, `.avx512VNNI` (the default) lets the CPU decide.
    /// Process-wide, for the products that start after it returns.
    public static func setInstructionSetForTesting(_ isa: InstructionSet) {
        sn_set_isa_for_testing(isa.rawValue)
    }
}
