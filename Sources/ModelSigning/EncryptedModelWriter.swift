import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes an encrypted model: `securenode model encrypt`.
///
/// The model's files (found as the signer finds them: no symlink followed, git metadata and the
/// signature left out) are read chunk by chunk and written as `file-<index>.bin` (AES-256-GCM per
/// chunk, see ``EncryptedModelCipher``) next to the header and an unchanged copy of the signature
/// bundle, which still covers the plaintext: the measurement and the attestation do not change.
/// Memory stays at two chunks whatever the model's size.
public enum EncryptedModelWriter {
    public struct Summary: Sendable {
        public var files: Int
        public var bytes: Int
        public var chunks: Int
        public var chunkBytes: Int
        /// The copied signature's name inside the output, if one was copied.
        public var signature: String?
    }

    /// - Parameters:
    ///   - signaturePath: the bundle to copy; default `<model>/model.sig` when it exists.
    public static func encrypt(model path: String, to output: String, key: DataKey, signaturePath: String? = nil,
                               chunkBytes: Int = EncryptedModelHeader.defaultChunkBytes) throws(EncryptedModelError) -> Summary {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory) {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? ["?"]
            guard isDirectory.boolValue, entries.isEmpty else {
                throw EncryptedModelError(.output, "--out \(output) exists and is not an empty directory; refusing to overwrite")
            }
        } else if mkdir(output, 0o755) != 0 {
            throw EncryptedModelError(.output, "cannot create \(output): \(String(cString: strerror(errno)))")
        }
        do {
            return try write(model: path, to: output, key: key, signaturePath: signaturePath, chunkBytes: chunkBytes)
        } catch {
            // Nothing half-written stays behind.
            for name in (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? [] {
                unlink(output + "/" + name)
            }
            throw error
        }
    }

    private static func write(model path: String, to output: String, key: DataKey, signaturePath: String?,
                              chunkBytes: Int) throws(EncryptedModelError) -> Summary {
        var signature = signaturePath
        if signature == nil, FileManager.default.fileExists(atPath: path + "/" + EncryptedModelHeader.signatureFileName) {
            signature = path + "/" + EncryptedModelHeader.signatureFileName
        }
        var ignored = ModelManifest.gitPaths
        if let signature, let inside = PathSupport.relative(signature, within: path) { ignored.append(inside) }
        let tree: ModelTree
        do {
            tree = try ModelTree(root: path, ignoring: ignored)
        } catch {
            throw EncryptedModelError(.io, error.reason)
        }
        guard !tree.files.isEmpty else { throw EncryptedModelError(.io, "the model \(path) has no files to encrypt") }
        var salt = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for i in salt.indices { salt[i] = generator.next() }
        var header = EncryptedModelHeader(
            chunkBytes: chunkBytes, salt: salt,
            files: tree.files.enumerated().map { .init(name: $1.name, bytes: $1.size, ciphertext: EncryptedModelHeader.ciphertextName(index: $0)) },
            signature: signature == nil ? nil : EncryptedModelHeader.signatureFileName)
        let cipher = EncryptedModelCipher(key: key, salt: salt)
        header.keyCheck = hexString(cipher.keyCheck)
        header.mac = hexString(cipher.mac(header))
        try header.validate()
        let digest = EncryptedModelCipher.headerDigest(header)

        let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkBytes, alignment: 64)
        defer {
            DataKey.wipe(plain)
            plain.deallocate()
        }
        var chunks = 0
        for (index, file) in tree.files.enumerated() {
            let source: Int32
            do {
                source = try tree.open(file)
            } catch {
                throw EncryptedModelError(.io, error.reason)
            }
            defer { close(source) }
            let target = output + "/" + header.files[index].ciphertext
            let sink = Glibc.open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard sink >= 0 else { throw EncryptedModelError(.output, "cannot create \(target): \(String(cString: strerror(errno)))") }
            defer { close(sink) }
            let count = header.chunkCount(bytes: file.size)
            for chunk in 0..<count {
                let offset = chunk * chunkBytes
                let want = min(chunkBytes, file.size - offset)
                try readFully(source, into: UnsafeMutableRawBufferPointer(rebasing: plain[0..<want]), name: file.name, size: file.size)
                let box: AES.GCM.SealedBox
                do {
                    box = try AES.GCM.seal(UnsafeRawBufferPointer(rebasing: plain[0..<want]), using: cipher.chunkKey,
                                           nonce: EncryptedModelCipher.nonce(file: index, chunk: chunk),
                                           authenticating: EncryptedModelCipher.additionalData(headerDigest: digest, file: index, chunk: chunk,
                                                                                                last: chunk == count - 1))
                } catch {
                    throw EncryptedModelError(.io, "AES-GCM failed on chunk \(chunk) of \(file.name): \(error)")
                }
                try writeFully(sink, Array(box.ciphertext) + Array(box.tag), path: target)
                chunks += 1
            }
            var probe: UInt8 = 0
            guard read(source, &probe, 1) == 0 else {
                throw EncryptedModelError(.io, "\(file.name) grew while it was encrypted (expected \(file.size) bytes)")
            }
            guard fsync(sink) == 0 else { throw EncryptedModelError(.output, "cannot sync \(target): \(String(cString: strerror(errno)))") }
        }
        if let signature {
            let bytes: [UInt8]
            guard let data = FileManager.default.contents(atPath: signature) else {
                throw EncryptedModelError(.io, "cannot read the signature bundle \(signature)")
            }
            bytes = Array(data)
            try writeNew(output + "/" + EncryptedModelHeader.signatureFileName, bytes, mode: 0o644)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let json: Data
        do { json = try encoder.encode(header) } catch { throw EncryptedModelError(.output, "cannot encode the header: \(error)") }
        // The header last: an interrupted run leaves no directory that looks complete.
        try writeNew(output + "/" + EncryptedModelHeader.fileName, Array(json) + [0x0A], mode: 0o644)
        return Summary(files: tree.files.count, bytes: tree.files.reduce(0) { $0 + $1.size }, chunks: chunks,
                       chunkBytes: chunkBytes, signature: header.signature)
    }

    /// Creates `path` (it must not exist; a symlink is not followed), writes, syncs.
    public static func writeNew(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(EncryptedModelError) {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw EncryptedModelError(.output, "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try writeFully(fd, bytes, path: path)
        guard fchmod(fd, mode) == 0, fsync(fd) == 0 else {
            throw EncryptedModelError(.output, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func writeFully(_ fd: Int32, _ bytes: [UInt8], path: String) throws(EncryptedModelError) {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw EncryptedModelError(.output, "cannot write \(path): \(String(cString: strerror(errno)))") }
            written += n
        }
    }

    static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, name: String, size: Int) throws(EncryptedModelError) {
        var filled = 0
        while filled < buffer.count {
            let n = read(fd, buffer.baseAddress! + filled, buffer.count - filled)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw EncryptedModelError(.io, "cannot read \(name): \(String(cString: strerror(errno)))") }
            guard n > 0 else { throw EncryptedModelError(.io, "\(name) shrank while it was read (expected \(size) bytes)") }
            filled += n
        }
    }
}
