import Foundation
import Kernels

/// Gives OpenBLAS the right kernel family, which it picks once, when the library is loaded (before
/// `main`): on an AVX-512 CPU that OpenBLAS 0.3.21 does not recognise (it then runs Haswell or
/// Prescott kernels, 3-5x slower for sgemm here) and with `OPENBLAS_CORETYPE` unset, the process
/// re-executes itself once with `OPENBLAS_CORETYPE=SkylakeX` (`BLAS.coreTypeToForce`). Setting the
/// variable from inside the running process would come too late. An operator's own
/// `OPENBLAS_CORETYPE` is never overridden; if it names a non-AVX-512 family on an AVX-512 CPU, a
/// warning says so. Called first thing by `generate`, `serve` and
/// `bench-engine` (not with `--exact`, which never calls BLAS), before any file or socket is opened.
enum OpenBLASCoreType {
    static func reexecIfMisdetected() {
        if BLAS.coreTypeSetTooLow() {
            StandardError.write("securenode: warning: OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "") selects OpenBLAS's \(BLAS.coreName) kernels on a CPU with AVX-512; prompt processing would be faster with OPENBLAS_CORETYPE=\(BLAS.preferredCoreType) or unset\n")
            return
        }
        guard let core = BLAS.coreTypeToForce() else { return }
        let detected = BLAS.coreName
        setenv("OPENBLAS_CORETYPE", core, 1)
        var arguments: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) }
        arguments.append(nil)
        execv("/proc/self/exe", &arguments)
        // Only reached if exec failed: run on with the detected kernels, and say so.
        let reason = String(cString: strerror(errno))
        StandardError.write("securenode: warning: OpenBLAS chose \(detected) kernels on an AVX-512 CPU and re-executing with OPENBLAS_CORETYPE=\(core) failed (\(reason)); prompt processing will be slower\n")
    }
}
