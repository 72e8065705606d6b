import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An encrypted model directory (`securenode model encrypt`): its parsed header, and the decryption
/// of its files chunk by chunk. Nothing here is trusted before the checks run: see
/// ``ModelVerifier/verify(encrypted:key:bundle:trust:options:)`` for their order.
public struct EncryptedModel: Sendable {
    public let path: String
    public let header: EncryptedModelHeader

    /// Whether `path` is a directory holding an encrypted model's header.
    public static func isEncrypted(path: String) -> Bool {
        var st = stat()
        return lstat(path + "/" + EncryptedModelHeader.fileName, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
    }

    /// Reads and checks the header (a regular file, not a symlink, at most 4 MiB).
    public init(path: String) throws(EncryptedModelError) {
        self.path = path
        let headerPath = path + "/" + EncryptedModelHeader.fileName
        let fd = Glibc.open(headerPath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw EncryptedModelError(.headerUnreadable, "cannot read the encrypted model's header \(headerPath): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw EncryptedModelError(.headerUnreadable, "\(headerPath) is not a regular file")
        }
        let limit = EncryptedModelHeader.maximumHeaderBytes
        guard st.st_size <= limit else {
            throw EncryptedModelError(.headerUnreadable, "the header \(headerPath) is \(st.st_size) bytes, more than \(limit)")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw EncryptedModelError(.headerUnreadable, "cannot read \(headerPath)") }
            filled += n
        }
        header = try EncryptedModelHeader(json: bytes)
    }

    /// Checks the key against the header's key check value, then the header's MAC; returns the keys.
    func unlock(_ key: DataKey) throws(EncryptedModelError) -> EncryptedModelCipher {
        let cipher = EncryptedModelCipher(key: key, salt: ModelSigning.bytes(fromHex: header.salt) ?? [])
        guard constantTimeEquals(cipher.keyCheck, ModelSigning.bytes(fromHex: header.keyCheck) ?? []) else {
            throw EncryptedModelError(.wrongKey, "the data key does not open this encrypted model (its key check value differs): "
                                      + "a wrong key file, or the key of another model or another encryption of it")
        }
        guard constantTimeEquals(cipher.mac(header), ModelSigning.bytes(fromHex: header.mac) ?? []) else {
            throw EncryptedModelError(.headerTampered, "the encrypted model's header was changed after encryption (its MAC does not verify "
                                      + "with the data key): its file list, sizes or chunk size were edited")
        }
        return cipher
    }

    /// Decrypts file `index`, chunk by chunk, in order. Each chunk's plaintext is written to
    /// `destination` at its offset (or to `scratch` when there is no destination) and then handed to
    /// `each`, from the memory it stays in. Memory besides the destination: one chunk of ciphertext
    /// and swift-crypto's one-chunk output, wiped after each chunk.
    func decrypt(file index: Int, cipher: EncryptedModelCipher, headerDigest: [UInt8], into destination: UnsafeMutableRawBufferPointer?,
                 scratch: UnsafeMutableRawBufferPointer, ciphertextScratch: UnsafeMutableRawBufferPointer,
                 each: (UnsafeRawBufferPointer) -> Void) throws(EncryptedModelError) {
        let file = header.files[index]
        let described = "\(file.name == "." ? "the model file" : file.name) (\(file.ciphertext))"
        let cipherPath = path + "/" + file.ciphertext
        let fd = Glibc.open(cipherPath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT {
                throw EncryptedModelError(.missingFile, "the encrypted model lacks \(file.ciphertext), which holds \(file.name == "." ? "the model file" : file.name)")
            }
            throw EncryptedModelError(.io, "cannot open \(cipherPath): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        let expected = header.ciphertextBytes(file)
        let chunks = header.chunkCount(bytes: file.bytes)
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw EncryptedModelError(.io, "\(cipherPath) is not a regular file")
        }
        guard Int(st.st_size) == expected else {
            throw EncryptedModelError(.sizeMismatch, "\(described) is \(st.st_size) bytes; the header says \(expected) (\(file.bytes) bytes in \(chunks) "
                                      + "chunk(s) with their tags): \(Int(st.st_size) < expected ? "truncated" : "extended")")
        }
        let chunkBytes = header.chunkBytes
        for chunk in 0..<chunks {
            let offset = chunk * chunkBytes
            let want = min(chunkBytes, file.bytes - offset)
            let sealedCount = want + EncryptedModelHeader.tagBytes
            do {
                try EncryptedModelWriter.readFully(fd, into: UnsafeMutableRawBufferPointer(rebasing: ciphertextScratch[0..<sealedCount]),
                                                   name: cipherPath, size: expected)
            } catch {
                throw EncryptedModelError(.sizeMismatch, error.reason)
            }
            let target = destination.map { UnsafeMutableRawBufferPointer(rebasing: $0[offset..<(offset + want)]) }
                ?? UnsafeMutableRawBufferPointer(rebasing: scratch[0..<want])
            do {
                let box = try AES.GCM.SealedBox(nonce: EncryptedModelCipher.nonce(file: index, chunk: chunk),
                                                ciphertext: UnsafeRawBufferPointer(rebasing: ciphertextScratch[0..<want]),
                                                tag: UnsafeRawBufferPointer(rebasing: ciphertextScratch[want..<sealedCount]))
                var plain = try AES.GCM.open(box, using: cipher.chunkKey,
                                             authenticating: EncryptedModelCipher.additionalData(headerDigest: headerDigest, file: index, chunk: chunk,
                                                                                                  last: chunk == chunks - 1))
                plain.withUnsafeMutableBytes { bytes in
                    if want > 0 { target.copyMemory(from: UnsafeRawBufferPointer(bytes)) }
                    DataKey.wipe(bytes)
                }
            } catch {
                throw EncryptedModelError(.chunkTampered, "chunk \(chunk + 1) of \(chunks) of \(described), plaintext bytes \(offset)..<\(offset + want), "
                                          + "does not authenticate: its ciphertext was changed, or chunks or files were reordered, swapped "
                                          + "or taken from another encrypted model")
            }
            each(UnsafeRawBufferPointer(target))
        }
        var probe: UInt8 = 0
        guard read(fd, &probe, 1) == 0 else {
            throw EncryptedModelError(.sizeMismatch, "\(described) grew while it was decrypted")
        }
    }
}
