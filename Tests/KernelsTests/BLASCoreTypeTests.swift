import Testing
@testable import Kernels

/// `BLAS.coreTypeAction`: which OpenBLAS kernel family a process starts with. OpenBLAS 0.3.21 picks
/// it when the library loads and obeys `OPENBLAS_CORETYPE` blindly, so the wrong value either slows
/// prompt processing 3-5x (an AVX-512 CPU it does not recognise) or kills the process with SIGILL at
/// its first sgemm (AVX-512 kernels on a CPU without AVX-512).
struct BLASCoreTypeTests {
    @Test func forcesSkylakeXOnAnAVX512CPUThatOpenBLASMisdetected() {
        #expect(BLAS.coreTypeAction(environment: [:], cpuHasAVX512: true, coreName: "Prescott") == .force("SkylakeX"))
        #expect(BLAS.coreTypeAction(environment: [:], cpuHasAVX512: true, coreName: "Haswell") == .force("SkylakeX"))
        #expect(BLAS.coreTypeAction(environment: [:], cpuHasAVX512: true, coreName: "SkylakeX") == .keep)
        #expect(BLAS.coreTypeAction(environment: [:], cpuHasAVX512: true, coreName: "SapphireRapids") == .keep)
    }

    @Test func leavesACPUWithoutAVX512ToOpenBLASsOwnDetection() {
        #expect(BLAS.coreTypeAction(environment: [:], cpuHasAVX512: false, coreName: "Zen") == .keep)
        #expect(BLAS.coreTypeAction(environment: [:], cpuHasAVX512: false, coreName: "Haswell") == .keep)
    }

    @Test func survivesAVX512CoreTypeOnACPUWithoutAVX512() {
        // What scripts used to export on every machine: on an AVX2-only CPU the first prompt batch died.
        #expect(BLAS.coreTypeAction(environment: ["OPENBLAS_CORETYPE": "SkylakeX"], cpuHasAVX512: false, coreName: "SkylakeX")
            == .dropUnsupported("SkylakeX"))
        #expect(BLAS.coreTypeAction(environment: ["OPENBLAS_CORETYPE": "cooperlake"], cpuHasAVX512: false, coreName: "Cooperlake")
            == .dropUnsupported("cooperlake"))
        // After the re-execution without the variable: nothing more to do (no loop).
        #expect(BLAS.coreTypeAction(environment: [:], cpuHasAVX512: false, coreName: "Zen") == .keep)
    }

    @Test func keepsAnOperatorsCoreTypeAndWarnsWhenItIsTooLow() {
        #expect(BLAS.coreTypeAction(environment: ["OPENBLAS_CORETYPE": "Haswell"], cpuHasAVX512: false, coreName: "Haswell") == .keep)
        #expect(BLAS.coreTypeAction(environment: ["OPENBLAS_CORETYPE": "SkylakeX"], cpuHasAVX512: true, coreName: "SkylakeX") == .keep)
        #expect(BLAS.coreTypeAction(environment: ["OPENBLAS_CORETYPE": "Haswell"], cpuHasAVX512: true, coreName: "Haswell") == .warnTooLow)
        // After a forced re-execution that OpenBLAS did not follow: a warning, never a second exec.
        #expect(BLAS.coreTypeAction(environment: ["OPENBLAS_CORETYPE": "SkylakeX"], cpuHasAVX512: true, coreName: "Prescott") == .warnTooLow)
    }
}
