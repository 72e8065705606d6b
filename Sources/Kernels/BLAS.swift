import CKernels
import COpenBLAS
import Foundation

/// OpenBLAS, for the one thing it does better than the exact kernels: large single-precision matrix
/// products (`cblas_sgemm`) over a prompt batch (`Inference.PrefillMode`).
///
/// Two process-wide settings, both made here and nowhere else:
/// - **The kernel family.** OpenBLAS picks its kernels (`openblas_get_corename()`) once, when the
///   library is loaded, before `main` runs; `OPENBLAS_CORETYPE` in the environment overrides the
///   choice, and setting it later has no effect. OpenBLAS 0.3.21 (Debian 12) does not know every
///   AVX-512 CPU and then falls back to Haswell or Prescott kernels (3-5x slower here). So
///   `coreTypeAction()` says whether this process runs with a non-AVX-512 family on an AVX-512 CPU
///   without the variable set, and the CLI then re-executes itself once with
///   `OPENBLAS_CORETYPE=SkylakeX` (the fastest family measured on that machine kind); and whether
///   the variable names an AVX-512 family on a CPU without AVX-512 (OpenBLAS obeys, and its first
///   sgemm dies of SIGILL), and the CLI then re-executes itself once without it.
/// - **Its threads.** OpenBLAS runs single-threaded (`openblas_set_num_threads(1)`): the engine's own
///   pool runs one `cblas_sgemm` per tile on each member, so BLAS threads never compete with the pool
///   for the cores (`bench/scale.sh` has the measurement).
public enum BLAS {
    /// The family forced on AVX-512 CPUs that OpenBLAS does not recognise.
    public static let preferredCoreType = "SkylakeX"

    /// OpenBLAS's kernel family in this process (`openblas_get_corename()`), e.g. "SkylakeX".
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// The families with AVX-512 sgemm kernels in OpenBLAS 0.3.21.
    static let avx512Cores: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]

    /// What a process does at start about OpenBLAS's kernel family (`coreTypeAction`).
    public enum CoreTypeAction: Equatable, Sendable {
        /// The family OpenBLAS runs is right for this CPU, or the operator chose it and it runs here.
        case keep
        /// An AVX-512 CPU that OpenBLAS did not recognise, `OPENBLAS_CORETYPE` unset: re-execute
        /// with `OPENBLAS_CORETYPE` set to this family.
        case force(String)
        /// The operator's `OPENBLAS_CORETYPE` selects a non-AVX-512 family on an AVX-512 CPU: kept,
        /// with a warning (sgemm is then 1.5-5x slower here).
        case warnTooLow
        /// `OPENBLAS_CORETYPE` (this value) selects AVX-512 kernels on a CPU without AVX-512: OpenBLAS
        /// obeys, and the first sgemm dies of SIGILL. Re-execute without the variable (OpenBLAS then
        /// detects the CPU itself), with a warning.
        case dropUnsupported(String)
    }

    /// What to do about OpenBLAS's family, from the environment, whether the CPU has AVX-512
    /// (`sn_cpu_has_avx512`) and the family OpenBLAS chose (`coreName`). Never a loop: after `force`
    /// the variable is set, after `dropUnsupported` the CPU has no AVX-512 and the variable is unset.
    public static func coreTypeAction(environment: [String: String] = ProcessInfo.processInfo.environment,
                                      cpuHasAVX512: Bool = sn_cpu_has_avx512() != 0,
                                      coreName: String = coreName) -> CoreTypeAction {
        let avx512Family = avx512Cores.contains(coreName.lowercased())
        if let chosen = environment["OPENBLAS_CORETYPE"] {
            if !cpuHasAVX512 && avx512Family { return .dropUnsupported(chosen) }
            if cpuHasAVX512 && !avx512Family { return .warnTooLow }
            return .keep
        }
        return cpuHasAVX512 && !avx512Family ? .force(preferredCoreType) : .keep
    }

    /// Makes OpenBLAS single-threaded (idempotent); called before the first product.
    static let singleThreaded: Void = { openblas_set_num_threads(1) }()

    /// OpenBLAS's thread count (1 once `multiply` has run).
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// `c[t * ldc + r] = sum_k a[t * columns + k] * w[r * ldw + k]` for `t < count`, `r < rows`:
    /// `count` activation rows against `rows` weight rows (both row-major, F32), on the calling thread.
    public static func multiply(_ a: UnsafePointer<Float>, count: Int, _ w: UnsafePointer<Float>, rows: Int, ldw: Int,
                                columns: Int, into c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = singleThreaded
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(rows), Int32(columns),
                    1, a, Int32(columns), w, Int32(ldw), 0, c, Int32(ldc))
    }

    /// `c[i * ldc + j] = sum_k a[i * lda + k] * b[j * ldb + k]` (`transposedB`: `b` holds `n` rows
    /// of `k`) or `sum_k a[i * lda + k] * b[k * ldb + j]` (`b` holds `k` rows of `n`), for `i < m`,
    /// `j < n`: row-major F32, on the calling thread (`GEMMAttention`).
    static func multiply(m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                         transposedB: Bool, into c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = singleThreaded
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transposedB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }
}
