import ArgumentParser
import Foundation
import ModelSigning
#if canImport(Glibc)
import Glibc
#endif

/// `securenode model encrypt`: the publisher's side of confidential models.
struct ModelEncryptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encrypt",
        abstract: "Encrypt a model directory (or file) for nodes that get its data key from their TPM or from Keylime.",
        discussion: """
            Writes <out>/encrypted-model.json (schema securenode.encrypted-model.v1: files, sizes, chunk size, \
            salt, key check value, MAC), <out>/file-<index>.bin (AES-256-GCM per chunk; each chunk bound to its \
            file, its index and whether it is the last) and <out>/model.sig, the signature bundle copied unchanged: \
            it covers the plaintext, so the node's measurement and attestation are those of the plaintext model. \
            With --key-out a fresh random 32-byte data key is made and written there (owner-only, never inside \
            --out); with --key an existing one is used (e.g. to publish an update to nodes that hold the key). \
            Give the key to nodes with `securenode seal --in KEY` or `keylime_tenant -c add ... -f KEY`.
            """
    )

    @Argument(help: "The model directory, or a single model file.")
    var model: String
    @Option(name: .customLong("out"), help: "The directory to write the encrypted model to (absent or empty).")
    var output: String
    @Option(name: .customLong("key-out"), help: "Make a fresh data key and write it here (32 bytes, mode 0600; not inside --out).")
    var keyOut: String?
    @Option(name: .customLong("key"), help: "Use this existing data key (32 bytes) instead of making one.")
    var keyIn: String?
    @Option(help: "The model's signature bundle to copy (default: <model>/model.sig when it exists).")
    var signature: String?
    @Option(name: .customLong("chunk-bytes"), help: "Chunk size: a power of two from 4096 to 16777216 (default 1048576).")
    var chunkBytes: Int = EncryptedModelHeader.defaultChunkBytes

    func validate() throws {
        if (keyOut == nil) == (keyIn == nil) {
            throw ValidationError("give exactly one of --key-out FILE (a fresh key) or --key FILE (an existing key)")
        }
        guard EncryptedModelHeader.chunkBytesRange.contains(chunkBytes), chunkBytes & (chunkBytes - 1) == 0 else {
            throw ValidationError("--chunk-bytes must be a power of two from 4096 to 16777216")
        }
    }

    func run() async throws {
        try await reportingFailures {
            if let keyOut {
                // The key must never travel with the ciphertext.
                let absoluteOut = URL(fileURLWithPath: output).standardizedFileURL.path
                let absoluteKey = URL(fileURLWithPath: keyOut).standardizedFileURL.path
                let resolvedOut = URL(fileURLWithPath: output).standardizedFileURL.resolvingSymlinksInPath().path
                let resolvedKeyDir = URL(fileURLWithPath: keyOut).standardizedFileURL.deletingLastPathComponent().resolvingSymlinksInPath().path
                if absoluteKey.hasPrefix(absoluteOut + "/") || resolvedKeyDir == resolvedOut || resolvedKeyDir.hasPrefix(resolvedOut + "/") {
                    throw CLIFailure("--key-out \(keyOut) is inside --out \(output): the data key must not be stored with the encrypted model")
                }
            }
            let key: DataKey
            if let keyIn {
                var raw = try FileText.readBytes(keyIn, what: "data key", limit: 64)
                defer { DataKey.wipe(&raw) }
                key = try DataKey(bytes: raw)
            } else {
                key = DataKey.random()
            }
            defer { key.wipe() }
            if let keyOut {
                // Written first (O_EXCL, 0600): if it cannot be written, nothing is encrypted with a key nobody keeps.
                do {
                    try key.withUnsafeBytes { raw in try EncryptedModelWriter.writeNew(keyOut, Array(raw), mode: 0o600) }
                } catch let error as EncryptedModelError {
                    throw CLIFailure("cannot write the data key: \(error.reason)")
                }
            }
            let summary: EncryptedModelWriter.Summary
            do {
                summary = try EncryptedModelWriter.encrypt(model: model, to: output, key: key, signaturePath: signature, chunkBytes: chunkBytes)
            } catch {
                if let keyOut { unlink(keyOut) }
                throw error
            }
            print("encrypted \(model): \(summary.files) file(s), \(summary.bytes) bytes in \(summary.chunks) chunk(s) of "
                  + "\(summary.chunkBytes) bytes (AES-256-GCM) -> \(output)"
                  + (summary.signature.map { "; signature copied to \($0)" } ?? "; no signature copied (give --signature)")
                  + (keyOut.map { "; new data key -> \($0) (0600)" } ?? "; key from \(keyIn ?? "")"))
        }
    }
}
