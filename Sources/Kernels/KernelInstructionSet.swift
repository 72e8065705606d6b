import CKernels
import Foundation

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
    /// that has it unless `withInstructionSetForTesting(.avx2)` is in force, else `.avx2`; nil
    /// when the C kernels are not available.
    public static var instructionSet: InstructionSet? {
        available ? InstructionSet(rawValue: sn_kernels_isa()) : nil
    }

    /// Whether prompt batches (several activations) of `type` take a register-blocked exact GEMM
    /// that is faster than dequantizing for OpenBLAS, each bit-identical to its row kernels, so to
    /// llama.cpp's:
    /// - with `.avx512VNNI`, Q4_K and Q6_K (kquants.c, `sn_kquant_gemm_vnni`) and Q4_1 (vnni.c's
    ///   multi-row tiles: SmolLM2 prompts 1.3-1.9x at 64-512 tokens against dequantize + sgemm,
    ///   bench/results/scale-135m-q4_1-{blas,exact}.md);
    /// - with either instruction set, Q4_0 (q32.c's packed eight-row kernel: 1.1-2.3x at 64-512
    ///   tokens with VNNI, bench/results/blas-threshold-q4_0.md; sgemm at 0.46-0.85x of it from 32
    ///   to 512 tokens on an AVX2-only EPYC, blas-threshold-avx2-q4_0.md).
    /// Decided on `machineInstructionSet`, not on a test's forced one: both kernel sets give the same
    /// bits but this choice does not, so a test forcing AVX2 must not change it under a concurrent test.
    public static func hasExactPromptGEMM(_ type: BlockType) -> Bool {
        switch type {
        case .q4_K, .q6_K, .q4_1: return machineInstructionSet == .avx512VNNI
        case .q4_0: return machineInstructionSet != nil
        default: return false
        }
    }

    /// The instruction set this machine's products take when no test forces one
    /// (`sn_machine_isa`): what the CPU has and `SECURENODE_KERNEL_ISA` allows.
    public static var machineInstructionSet: InstructionSet? {
        available ? InstructionSet(rawValue: sn_machine_isa()) : nil
    }

    /// Serializes the tests that force or read `instructionSet`: they run in one process, suites
    /// in parallel, and the switch is process-wide. Recursive, so a forced body can nest.
    private static let testingLock = NSRecursiveLock()

    /// For tests and benchmarks that compare the two paths on one machine: runs `body` with every
    /// matrix product on the AVX2 kernels (`.avx2`) or on what the CPU has (`.avx512VNNI`, the
    /// default), then restores the one in force before. Holds a process-wide lock for the whole
    /// body, so two such bodies never interleave.
    public static func withInstructionSetForTesting<T>(_ isa: InstructionSet, _ body: () throws -> T) rethrows -> T {
        testingLock.lock()
        let previous = sn_kernels_isa()
        defer {
            sn_set_isa_for_testing(previous)
            testingLock.unlock()
        }
        sn_set_isa_for_testing(isa.rawValue)
        return try body()
    }
}
