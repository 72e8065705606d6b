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
///   `coreTypeToForce()` says whether this process runs with a non-AVX-512 family on an AVX-512 CPU
///   without the variable set, and the CLI then re-executes itself once with
///   `OPENBLAS_CORETYPE=SkylakeX` (the fastest family measured on this machine kind).
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

    /// The `OPENBLAS_CORETYPE` this process should have been started with, or nil when it is fine:
    /// nil if the variable is set (the operator's choice stands), if the CPU has no AVX-512, or if
    /// OpenBLAS already chose an AVX-512 family.
    public static func coreTypeToForce(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil, sn_cpu_has_avx512() != 0,
              !avx512Cores.contains(coreName.lowercased()) else { return nil }
        return preferredCoreType
    }

    /// Whether this process runs OpenBLAS's non-AVX-512 kernels on an AVX-512 CPU because
    /// `OPENBLAS_CORETYPE` says so (an operator's choice, kept, but worth a warning: sgemm is then
    /// 1.5-5x slower here).
    public static func coreTypeSetTooLow(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        environment["OPENBLAS_CORETYPE"] != nil && sn_cpu_has_avx512() != 0 && !avx512Cores.contains(coreName.lowercased())
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
