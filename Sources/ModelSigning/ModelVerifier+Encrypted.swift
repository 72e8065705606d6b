import Crypto
import Foundation
import Synchronization

extension ModelVerifier {
    /// Verifies an encrypted model (`securenode model encrypt`) with its data key, decrypting it into
    /// private memory and hashing exactly those bytes: the signature covers the plaintext, as for a
    /// plaintext model, and the bytes that were checked are the bytes the caller gets.
    ///
    /// Checks, in this order (the first failure is reported):
    /// 1-4. As ``verify(model:bundle:trust:options:)``: the signer is trusted, the signature verifies
    ///    over the exact payload, the payload is in-toto, the statement is a sound model-signing
    ///    manifest.
    /// 5. The header (already parsed when `model` was opened: schema, sizes, names) belongs to this
    ///    key: the key check value matches (else "wrong key"), then the header's MAC verifies (else
    ///    "header changed").
    /// 6. The header's files, leaving out the signer's ignored paths and git metadata, are exactly
    ///    the manifest's resources: no missing, no extra file.
    /// 7. Every file decrypts chunk by chunk, each chunk authenticated at its own place (file index,
    ///    chunk index, last-chunk flag, this header), its ciphertext file exactly as long as the
    ///    header says; the plaintext goes into private anonymous memory (left out of core dumps,
    ///    wiped when released), and its SHA-256, computed from that memory, equals the listed
    ///    digest (constant-time comparison). Files the caller does not load are decrypted one chunk
    ///    at a time into a scratch buffer, hashed and wiped.
    ///
    /// The key is not kept: the caller wipes it when this returns.
    public static func verify(encrypted model: EncryptedModel, key: DataKey, bundle: SigstoreBundle, trust: ModelTrustAnchor,
                              options: Options = Options()) async throws -> VerifiedModel {
        let signer = try await checkSigner(bundle: bundle, trust: trust)
        let manifest = try ModelManifest(statement: bundle.payload)
        let cipher = try model.unlock(key)
        let header = model.header

        var ignored = manifest.ignorePaths + options.ignorePaths
        if options.ignoreGitPaths { ignored += ModelManifest.gitPaths }
        let indices = header.files.indices.filter { i in !ignored.contains(where: { ModelPath.isUnder(header.files[i].name, $0) }) }
        let expected = Dictionary(manifest.resources.map { ($0.name, $0.sha256) }, uniquingKeysWith: { a, _ in a })
        let present = Set(indices.map { header.files[$0].name })
        let missing = manifest.resources.map(\.name).filter { !present.contains($0) }
        let extra = indices.map { header.files[$0].name }.filter { expected[$0] == nil }
        if !missing.isEmpty || !extra.isEmpty {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing files: \(PathSupport.list(missing))") }
            if !extra.isEmpty { parts.append("extra files not in the signed manifest: \(PathSupport.list(extra))") }
            throw ModelSigningError(missing.isEmpty ? .extraFiles : .missingFiles,
                                    "the encrypted model does not match its signature: " + parts.joined(separator: "; "))
        }

        let digest = EncryptedModelCipher.headerDigest(header)
        let load = options.load
        let results = Mutex<[Int: Result<([UInt8], ModelBytes?), any Error>]>([:])
        let next = Atomic<Int>(0)
        let workers = max(1, min(2, indices.count))
        // Decryption and hashing block on file I/O and CPU: Dispatch's threads, not the cooperative pool.
        DispatchSupport.concurrentPerform(iterations: workers) { _ in
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: header.chunkBytes, alignment: 64)
            let sealed = UnsafeMutableRawBufferPointer.allocate(byteCount: header.chunkBytes + EncryptedModelHeader.tagBytes, alignment: 64)
            defer {
                DataKey.wipe(scratch)
                scratch.deallocate()
                sealed.deallocate()
            }
            while true {
                let n = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard n < indices.count else { return }
                let i = indices[n]
                let file = header.files[i]
                let result: Result<([UInt8], ModelBytes?), any Error>
                do {
                    var destination: ModelBytes?
                    if load(file.name) {
                        guard let bytes = ModelBytes(count: file.bytes, confidential: true) else {
                            throw EncryptedModelError(.io, "cannot map \(file.bytes) bytes of private memory (excluded from core dumps) for \(file.name)")
                        }
                        destination = bytes
                    }
                    var hasher = SHA256()
                    try model.decrypt(file: i, cipher: cipher, headerDigest: digest, into: destination?.mutableBuffer,
                                      scratch: scratch, ciphertextScratch: sealed) { hasher.update(bufferPointer: $0) }
                    result = .success((Array(hasher.finalize()), destination))
                } catch {
                    result = .failure(error)
                }
                results.withLock { $0[i] = result }
            }
        }
        var mismatched: [String] = []
        var loaded: [String: ModelBytes] = [:]
        let finished = results.withLock { $0 }
        for i in indices {
            switch finished[i] {
            case .success(let (hash, bytes))?:
                let name = header.files[i].name
                guard let want = expected[name], constantTimeEquals(want, hash) else {
                    mismatched.append(name)
                    continue
                }
                if let bytes { loaded[name] = bytes }
            case .failure(let error)?: throw error
            case nil: throw EncryptedModelError(.io, "internal error: a file was not decrypted")
            }
        }
        guard mismatched.isEmpty else {
            throw ModelSigningError(.hashMismatch,
                "the encrypted model decrypts, but does not match its signature: content differs in \(PathSupport.list(mismatched)) "
                + "(encrypted from other files than the ones signed)")
        }
        return VerifiedModel(path: model.path, manifest: manifest, signer: signer, loadedFiles: loaded,
                             totalBytes: indices.reduce(0) { $0 + header.files[$1].bytes })
    }
}
