import Crypto
import Foundation

/// The keys and per-chunk parameters of one encrypted model, derived from its data key.
///
/// - chunk key, key check, header-MAC key: HKDF-SHA256(data key, salt: the header's salt, info:
///   "securenode.encrypted-model.v1 chunk key" | "... key check" | "... header key").
/// - Chunk (file f, index i of n): AES-256-GCM with nonce = f (4 bytes, big-endian) || i (8 bytes),
///   unique under a chunk key that is itself unique to this encryption (fresh key, random salt), and
///   additional data = SHA-256(header binding) || f || i || last (1 byte: 1 for chunk n-1). A chunk
///   therefore opens only at its own place in its own file of this header: reordered, swapped, moved
///   between models, or a non-final chunk presented as the last (truncation), it does not authenticate.
struct EncryptedModelCipher {
    let chunkKey: SymmetricKey
    let keyCheck: [UInt8]
    let macKey: SymmetricKey

    init(key: DataKey, salt: [UInt8]) {
        let material = key.symmetricKey
        func derive(_ purpose: String, _ count: Int) -> SymmetricKey {
            HKDF<SHA256>.deriveKey(inputKeyMaterial: material, salt: salt,
                                   info: Array("\(EncryptedModelHeader.schemaName) \(purpose)".utf8), outputByteCount: count)
        }
        chunkKey = derive("chunk key", 32)
        keyCheck = derive("key check", 16).withUnsafeBytes { Array($0) }
        macKey = derive("header key", 32)
    }

    func mac(_ header: EncryptedModelHeader) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: header.binding, using: macKey))
    }

    static func nonce(file: Int, chunk: Int) -> AES.GCM.Nonce {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(12)
        for i in (0..<4).reversed() { bytes.append(UInt8(truncatingIfNeeded: UInt32(file) >> (8 * UInt32(i)))) }
        for i in (0..<8).reversed() { bytes.append(UInt8(truncatingIfNeeded: UInt64(chunk) >> (8 * UInt64(i)))) }
        return try! AES.GCM.Nonce(data: bytes)  // 12 bytes by construction
    }

    static func additionalData(headerDigest: [UInt8], file: Int, chunk: Int, last: Bool) -> [UInt8] {
        var bytes = headerDigest
        for i in (0..<4).reversed() { bytes.append(UInt8(truncatingIfNeeded: UInt32(file) >> (8 * UInt32(i)))) }
        for i in (0..<8).reversed() { bytes.append(UInt8(truncatingIfNeeded: UInt64(chunk) >> (8 * UInt64(i)))) }
        bytes.append(last ? 1 : 0)
        return bytes
    }

    static func headerDigest(_ header: EncryptedModelHeader) -> [UInt8] { Array(SHA256.hash(data: header.binding)) }
}
