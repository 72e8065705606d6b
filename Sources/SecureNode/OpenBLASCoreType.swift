import Foundation
import Kernels

/// Gives OpenBLAS the right kernel family, which it picks once, when the library is loaded (before
/// `main`): on an AVX-512 CPU that OpenBLAS 0.3.21 does not recognise (it then runs Haswell or
/// Prescott kernels, 3-5x slower for sgemm here) and with `OPENBLAS_CORETYPE` unset, the process
/// re-executes itself once with `OPENBLAS_CORETYPE=SkylakeX` (`BLAS.coreTypeAction`). Setting the
/// variable from inside the running process would come too late. An operator's own
/// `OPENBLAS_CORETYPE` is kept, with a warning if it names a non-AVX-512 family on an AVX-512 CPU,
/// unless it names an AVX-512 family on a CPU without AVX-512: OpenBLAS would obey and the first
/// prompt batch would kill the process (SIGILL), so it re-executes once without the variable.
/// Called first thing by `generate`, `serve` and `bench-engine` (not with `--exact`, which never
/// calls BLAS), before any file or socket is opened.
enum OpenBLASCoreType {
    static func reexecIfMisdetected() {
        let detected = BLAS.coreName
        switch BLAS.coreTypeAction() {
        case .keep:
            return
        case .warnTooLow:
            StandardError.write("securenode: warning: OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "") selects OpenBLAS's \(detected) kernels on a CPU with AVX-512; prompt processing would be faster with OPENBLAS_CORETYPE=\(BLAS.preferredCoreType) or unset\n")
        case .force(let core):
            setenv("OPENBLAS_CORETYPE", core, 1)
            reexec(failure: "OpenBLAS chose \(detected) kernels on an AVX-512 CPU and re-executing with OPENBLAS_CORETYPE=\(core) failed; prompt processing will be slower")
        case .dropUnsupported(let core):
            StandardError.write("securenode: warning: OPENBLAS_CORETYPE=\(core) selects OpenBLAS's AVX-512 kernels (\(detected)) on a CPU without AVX-512, where they would stop the process (SIGILL); re-executing without it, so that OpenBLAS detects this CPU itself\n")
            unsetenv("OPENBLAS_CORETYPE")
            reexec(failure: "re-executing without OPENBLAS_CORETYPE=\(core) failed")
            // OpenBLAS keeps the AVX-512 kernels in this process: stop with the reason, not SIGILL later.
            StandardError.write("securenode: error: OPENBLAS_CORETYPE=\(core) cannot run on this CPU; unset it or set a family this CPU supports (e.g. Haswell or Zen)\n")
            exit(1)
        }
    }

    /// Replaces this process with itself (same arguments, the environment as changed); returns only
    /// if that failed, after saying so.
    private static func reexec(failure: String) {
        var arguments: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) }
        arguments.append(nil)
        execv("/proc/self/exe", &arguments)
        StandardError.write("securenode: warning: \(failure) (\(String(cString: strerror(errno))))\n")
    }
}
