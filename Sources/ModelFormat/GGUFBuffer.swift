import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A page-aligned block of memory that holds a whole GGUF file.
///
/// The owner fills it once (for example while hashing the file, so that the bytes verified are
/// the bytes used) through `withUnsafeMutableBytes`, and then hands it to `GGUFFile.parse(_:)`.
/// From then on it must be treated as immutable: `GGUFFile` and `GGUFTensorView` keep a
/// reference to it and read tensor data in place, without copying. The one exception is
/// `rearrangeOnce`: a model loader may permute tensor bytes in place once, into the layout its
/// kernels read (so that the weights are not held twice).
///
/// Memory safety does not depend on that promise: the size never changes, every tensor range was
/// checked against it, and lazily decoded arrays re-check every length when they are decoded.
/// Writing while another thread reads is a data race, which is why the class is only
/// `@unchecked Sendable`: fill it before sharing it.
public final class GGUFBuffer: @unchecked Sendable {
    /// Alignment of the first byte: one page, so the tensor data section (aligned to
    /// `general.alignment`, at most a page in practice) is aligned in memory as it is in the file.
    public static let alignment = 4096

    /// Size in bytes.
    public let count: Int
    private let base: UnsafeMutableRawPointer
    /// When set, the memory belongs to this object (kept alive here) and is not freed by us.
    private let owner: AnyObject?
    /// The `rearrangeOnce` keys applied so far.
    private let rearranged = Mutex<Set<String>>([])

    /// Allocates `count` zeroed bytes aligned to `GGUFBuffer.alignment`.
    public init(count: Int) throws(GGUFError) {
        guard count >= 0 else {
            throw GGUFError(.allocationFailed(count: count), field: "buffer")
        }
        var pointer: UnsafeMutableRawPointer?
        // posix_memalign(…, 0) may return NULL; always ask for at least one byte.
        guard posix_memalign(&pointer, Self.alignment, max(count, 1)) == 0, let pointer else {
            throw GGUFError(.allocationFailed(count: count), field: "buffer")
        }
        memset(pointer, 0, count)
        self.base = pointer
        self.count = count
        self.owner = nil
    }

    /// Wraps memory that another object owns, without copying: for example the verified bytes of a
    /// model file, which the signature verifier read into private memory while hashing them. The
    /// buffer keeps `owner` alive and never frees the memory, nor writes it except through
    /// `rearrangeOnce`; `base` must stay valid for `count` bytes as long as `owner` lives.
    public init(adopting base: UnsafeRawPointer, count: Int, owner: AnyObject) {
        self.base = UnsafeMutableRawPointer(mutating: base)
        self.count = max(count, 0)
        self.owner = owner
    }

    /// Allocates a buffer holding a copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) throws(GGUFError) {
        try self.init(count: bytes.count)
        if let source = bytes.baseAddress, bytes.count > 0 {
            base.copyMemory(from: source, byteCount: bytes.count)
        }
    }

    /// Allocates a buffer holding a copy of `bytes`.
    public convenience init(bytes: [UInt8]) throws(GGUFError) {
        try self.init(count: bytes.count)
        bytes.withUnsafeBytes { source in
            if let address = source.baseAddress, source.count > 0 {
                base.copyMemory(from: address, byteCount: source.count)
            }
        }
    }

    deinit {
        if owner == nil { free(base) }
    }

    /// Calls `body` with the whole buffer.
    public func withUnsafeBytes<R, E: Error>(
        _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Calls `body` with the whole buffer, writable. Only for filling it before it is parsed and shared.
    public func withUnsafeMutableBytes<R, E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(start: base, count: count))
    }

    /// Runs `body` on the whole buffer, writable, the first time it is called with `key` (later
    /// calls with the same key do nothing and return false): for a model loader that rearranges
    /// tensor data in place into its kernels' layout, a fixed permutation of the bytes, once for
    /// however many models are made from the buffer. Callers serialize on the buffer; `body` must
    /// not reenter it. Whoever reads the rearranged tensors afterwards must know the layout.
    @discardableResult
    public func rearrangeOnce(_ key: String, _ body: (UnsafeMutableRawBufferPointer) -> Void) -> Bool {
        rearranged.withLock { done in
            guard !done.contains(key) else { return false }
            body(UnsafeMutableRawBufferPointer(start: base, count: count))
            done.insert(key)
            return true
        }
    }

    /// Reads a whole regular file into a new buffer (for tests and tools; the model loader
    /// fills its own buffer while hashing).
    public static func read(contentsOf path: String) throws(GGUFError) -> GGUFBuffer {
        func failure(_ what: String, _ code: Int32) -> GGUFError {
            GGUFError(.io("\(what): \(String(cString: strerror(code)))"), field: "file", subject: "path \"\(path)\"")
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw failure("cannot open", errno) }
        defer { close(descriptor) }

        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw failure("cannot stat", errno) }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw GGUFError(.io("not a regular file"), field: "file", subject: "path \"\(path)\"")
        }
        guard let size = Int(exactly: status.st_size) else {
            throw GGUFError(.io("file size \(status.st_size) does not fit in memory"), field: "file", subject: "path \"\(path)\"")
        }

        let buffer = try GGUFBuffer(count: size)
        var done = 0
        while done < size {
            let chunk = min(size - done, 1 << 30)
            let got = systemRead(descriptor, buffer.base + done, chunk)
            if got < 0 {
                if errno == EINTR { continue }
                throw failure("cannot read", errno)
            }
            guard got > 0 else {
                throw GGUFError(.io("file shrank while it was read (\(done) of \(size) bytes)"), field: "file", subject: "path \"\(path)\"")
            }
            done += got
        }
        return buffer
    }
}

private func systemRead(_ descriptor: Int32, _ address: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.read(descriptor, address, count)
    #elseif canImport(Musl)
    Musl.read(descriptor, address, count)
    #else
    Darwin.read(descriptor, address, count)
    #endif
}
