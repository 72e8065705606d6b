#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A model file's bytes in private, page-aligned anonymous memory, filled while the file was hashed.
///
/// These are the bytes that were verified: nothing else can write them, so there is no gap between
/// checking the file and using it. The memory is read-only to everyone after verification, with one
/// exception: loading a Llama model rearranges its weight matrices in place, once, into the CPU
/// kernels' layout (`GGUFBuffer.rearrangeOnce`, `LlamaWeights`), a fixed permutation of the
/// verified bytes that avoids holding the weights twice.
public final class ModelBytes: @unchecked Sendable {
    public let count: Int
    private let base: UnsafeMutableRawPointer

    init?(count: Int) {
        var pointer: UnsafeMutableRawPointer?
        guard posix_memalign(&pointer, 4096, max(count, 1)) == 0, let pointer else { return nil }
        self.base = pointer
        self.count = count
    }

    deinit { free(base) }

    var mutableBuffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }

    /// The verified bytes. Do not let the pointer escape `body` unless you also keep this object alive.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Base address, for zero-copy views whose owner keeps this object alive.
    public var baseAddress: UnsafeRawPointer { UnsafeRawPointer(base) }
}
