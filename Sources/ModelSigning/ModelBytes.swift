import SystemMemory

/// A model file's bytes in private, page-aligned anonymous memory, filled while the file was hashed
/// (or decrypted and hashed, for an encrypted model).
///
/// These are the bytes that were verified: nothing else can write them, so there is no gap between
/// checking the file and using it. The memory is read-only to everyone after verification, with one
/// exception: loading a Llama model rearranges its weight matrices in place, once, into the CPU
/// kernels' layout (`GGUFBuffer.rearrangeOnce`, `LlamaWeights`), a fixed permutation of the
/// verified bytes that avoids holding the weights twice.
///
/// The memory is `AnonymousMemory` (a private anonymous mapping, never backed by a file, on huge
/// pages where the kernel allows), left out of core dumps (`madvise(MADV_DONTDUMP)`). For a
/// confidential (decrypted) model the advice is required and the bytes are overwritten with zeros
/// before the mapping is released.
public final class ModelBytes: @unchecked Sendable {
    public let count: Int
    private let memory: AnonymousMemory
    private var base: UnsafeMutableRawPointer { memory.base }
    private let confidential: Bool

    init?(count: Int, confidential: Bool = false) {
        guard let memory = AnonymousMemory(byteCount: count) else { return nil }
        if !memory.excludeFromCoreDumps() && confidential { return nil }
        self.memory = memory
        self.count = count
        self.confidential = confidential
    }

    deinit {
        if confidential { DataKey.wipe(UnsafeMutableRawBufferPointer(start: base, count: count)) }
    }

    var mutableBuffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }

    /// The verified bytes. Do not let the pointer escape `body` unless you also keep this object alive.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Base address, for zero-copy views whose owner keeps this object alive.
    public var baseAddress: UnsafeRawPointer { UnsafeRawPointer(base) }
}
