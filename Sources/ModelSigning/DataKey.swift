import Crypto
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The 256-bit data key of an encrypted model, in memory the process owns, wiped when it is no
/// longer needed (``wipe()``, or at deinit).
///
/// It is never logged and never written by this type; `securenode model encrypt --key-out` writes it
/// once, owner-only, and the node gets it back by unsealing it from the TPM or from Keylime's
/// secure payload. Swift copies arrays freely, so callers that hold the key in an `[UInt8]` on its
/// way here should wipe that array too (``wipe(_:)``).
public final class DataKey: @unchecked Sendable {
    public static let byteCount = 32
    private let storage: UnsafeMutableRawBufferPointer

    /// Exactly 32 bytes; anything else is refused with its length (never its content).
    public init(bytes: some Collection<UInt8>) throws(EncryptedModelError) {
        guard bytes.count == Self.byteCount else {
            throw EncryptedModelError(.invalidKey, "a model data key is \(Self.byteCount) bytes; this one is \(bytes.count) bytes "
                                      + "(give the file `securenode model encrypt --key-out` wrote, unchanged)")
        }
        storage = .allocate(byteCount: Self.byteCount, alignment: 16)
        storage.copyBytes(from: bytes)
    }

    /// A fresh key from the system's random number generator.
    public static func random() -> DataKey {
        // SymmetricKey zeroizes its own storage when released.
        let key = SymmetricKey(size: .bits256)
        return key.withUnsafeBytes { raw in
            // 32 bytes by construction.
            try! DataKey(bytes: raw)  // swiftlint:disable:this force_try
        }
    }

    deinit {
        Self.wipe(storage)
        storage.deallocate()
    }

    /// Overwrites the key with zeros; the object must not be used afterwards.
    public func wipe() { Self.wipe(storage) }

    /// The key's bytes, for the duration of `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(storage))
    }

    /// swift-crypto's key type (it keeps its own copy and zeroizes it when released).
    var symmetricKey: SymmetricKey { SymmetricKey(data: UnsafeRawBufferPointer(storage)) }

    /// Zeros that the compiler does not remove (`explicit_bzero`).
    public static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        #if canImport(Glibc)
        explicit_bzero(base, buffer.count)
        #else
        _ = memset_s(base, buffer.count, 0, buffer.count)
        #endif
    }

    /// Wipes an array in place (it must not share its storage, or only this copy is wiped).
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { wipe($0) }
    }
}
