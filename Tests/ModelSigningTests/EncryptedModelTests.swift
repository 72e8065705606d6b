import Crypto
import Foundation
import Testing
@testable import ModelSigning

/// `securenode model encrypt` and the in-memory verification of an encrypted model: the round trip,
/// and every tampering of the format, each refused with the check that must refuse it.
@Suite struct EncryptedModelTests {
    let scratch: Scratch
    let model: String
    let signer = ECDSAPrivateKey.p256(P256.Signing.PrivateKey())
    let key = DataKey.random()
    /// Small chunks, so that the 5,000-byte file has several.
    static let chunk = 4096

    init() throws {
        scratch = try Scratch()
        model = try scratch.makeModel()
        try scratch.write("model/weights/part-0.bin", (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    }

    func encrypt(_ name: String = "enc", key: DataKey? = nil) throws -> (dir: String, bundle: SigstoreBundle) {
        let bundle = try ModelSigner.sign(model: model, key: signer)
        let out = scratch.file(name)
        _ = try EncryptedModelWriter.encrypt(model: model, to: out, key: key ?? self.key, chunkBytes: Self.chunk)
        return (out, bundle)
    }

    func verify(_ dir: String, _ bundle: SigstoreBundle, key: DataKey? = nil,
                load: @escaping @Sendable (String) -> Bool = { _ in true }) async throws -> VerifiedModel {
        var options = ModelVerifier.Options()
        options.load = load
        return try await ModelVerifier.verify(encrypted: try EncryptedModel(path: dir), key: key ?? self.key, bundle: bundle,
                                              trust: .publicKey(signer.publicKey), options: options)
    }

    func expectRefusal(_ dir: String, _ bundle: SigstoreBundle, key: DataKey? = nil, mentioning text: String,
                       sourceLocation: SourceLocation = #_sourceLocation, where matches: (any Error) -> Bool) async {
        do {
            _ = try await verify(dir, bundle, key: key)
            Issue.record("expected a refusal, but the encrypted model verified", sourceLocation: sourceLocation)
        } catch {
            #expect(matches(error), "\(error)", sourceLocation: sourceLocation)
            #expect("\(error)".contains(text), "\(error)", sourceLocation: sourceLocation)
        }
    }

    func code(_ c: EncryptedModelError.Code) -> (any Error) -> Bool { { ($0 as? EncryptedModelError)?.code == c } }

    func cipherFile(_ dir: String, named name: String) throws -> String {
        let header = try EncryptedModel(path: dir).header
        let index = try #require(header.files.firstIndex { $0.name == name })
        return dir + "/" + header.files[index].ciphertext
    }

    func bytes(_ path: String) throws -> [UInt8] { Array(try #require(FileManager.default.contents(atPath: path))) }
    func write(_ path: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    @Test func decryptsIntoPrivateMemoryAndVerifiesTheSignedPlaintext() async throws {
        let (dir, bundle) = try encrypt()
        let verified = try await verify(dir, bundle)
        let plain = try bytes(model + "/weights/part-0.bin")
        let loaded = try #require(verified.loadedFiles["weights/part-0.bin"])
        #expect(loaded.withUnsafeBytes { Array($0) } == plain)
        #expect(verified.rootDigestHex == hexString(bundle.payload.isEmpty ? [] : try ModelManifest(statement: bundle.payload).rootDigest))
        #expect(verified.totalBytes == 26 + 10_000 + 777 + 8)
        // No file of the encrypted model holds plaintext or the key.
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
            let content = try bytes(dir + "/" + name)
            #expect(!content.contains(subsequence: Array(plain[0..<64])), "\(name) holds plaintext")
            #expect(!content.contains(subsequence: key.withUnsafeBytes { Array($0) }), "\(name) holds the key")
        }
    }

    @Test func refusesWrongKey() async throws {
        let (dir, bundle) = try encrypt()
        await expectRefusal(dir, bundle, key: DataKey.random(), mentioning: "key check value", where: code(.wrongKey))
    }

    @Test func refusesTamperedChunk() async throws {
        let (dir, bundle) = try encrypt()
        let path = try cipherFile(dir, named: "weights/part-0.bin")
        var content = try bytes(path)
        content[4096 + 16 + 10] ^= 0x01  // inside the second chunk
        try write(path, content)
        await expectRefusal(dir, bundle, mentioning: "chunk 2 of 3 of weights/part-0.bin", where: code(.chunkTampered))
    }

    @Test func refusesTamperedTag() async throws {
        let (dir, bundle) = try encrypt()
        let path = try cipherFile(dir, named: "config.json")
        var content = try bytes(path)
        content[content.count - 1] ^= 0x80
        try write(path, content)
        await expectRefusal(dir, bundle, mentioning: "chunk 1 of 1 of config.json", where: code(.chunkTampered))
    }

    @Test func refusesTruncatedModel() async throws {
        let (dir, bundle) = try encrypt()
        let path = try cipherFile(dir, named: "weights/part-0.bin")
        let content = try bytes(path)
        // The last chunk dropped whole: the size no longer matches the header.
        try write(path, Array(content[0..<(2 * (4096 + 16))]))
        await expectRefusal(dir, bundle, mentioning: "truncated", where: code(.sizeMismatch))
    }

    @Test func refusesTruncationWithAnEditedHeader() async throws {
        // Truncate the ciphertext and shrink the header's size to match: the header's MAC catches it.
        let (dir, bundle) = try encrypt()
        let path = try cipherFile(dir, named: "weights/part-0.bin")
        try write(path, Array(try bytes(path)[0..<(2 * (4096 + 16))]))
        let headerPath = dir + "/" + EncryptedModelHeader.fileName
        var header = try EncryptedModel(path: dir).header
        let index = try #require(header.files.firstIndex { $0.name == "weights/part-0.bin" })
        header.files[index].bytes = 8192
        try write(headerPath, Array(try JSONEncoder().encode(header)))
        await expectRefusal(dir, bundle, mentioning: "header was changed", where: code(.headerTampered))
    }

    @Test func refusesNonFinalChunkPresentedAsLast() async throws {
        // A header re-made (without the key) so that two chunks look like the whole file would fail
        // its MAC; with the MAC check passed by an attacker who had the key, the last-chunk flag still
        // refuses it. Checked directly: chunk 2 of 3, opened as the last chunk, does not authenticate.
        let (dir, _) = try encrypt()
        let encrypted = try EncryptedModel(path: dir)
        let cipher = try encrypted.unlock(key)
        let index = try #require(encrypted.header.files.firstIndex { $0.name == "weights/part-0.bin" })
        let content = try bytes(dir + "/" + encrypted.header.files[index].ciphertext)
        let second = Array(content[(4096 + 16)..<(2 * (4096 + 16))])
        let digest = EncryptedModelCipher.headerDigest(encrypted.header)
        let box = try AES.GCM.SealedBox(nonce: EncryptedModelCipher.nonce(file: index, chunk: 1), ciphertext: second[0..<4096],
                                        tag: second[4096...])
        #expect(throws: (any Error).self) {
            try AES.GCM.open(box, using: cipher.chunkKey,
                             authenticating: EncryptedModelCipher.additionalData(headerDigest: digest, file: index, chunk: 1, last: true))
        }
        _ = try AES.GCM.open(box, using: cipher.chunkKey,
                             authenticating: EncryptedModelCipher.additionalData(headerDigest: digest, file: index, chunk: 1, last: false))
    }

    @Test func refusesReorderedChunks() async throws {
        let (dir, bundle) = try encrypt()
        let path = try cipherFile(dir, named: "weights/part-0.bin")
        let content = try bytes(path)
        let size = 4096 + 16
        try write(path, Array(content[size..<(2 * size)]) + Array(content[0..<size]) + Array(content[(2 * size)...]))
        await expectRefusal(dir, bundle, mentioning: "chunk 1 of 3 of weights/part-0.bin", where: code(.chunkTampered))
    }

    @Test func refusesSwappedFiles() async throws {
        // Two ciphertext files of the same size traded places: each chunk is bound to its file index.
        try scratch.write("model/a.bin", [UInt8](repeating: 1, count: 100))
        try scratch.write("model/b.bin", [UInt8](repeating: 2, count: 100))
        let (dir, bundle) = try encrypt()
        let a = try cipherFile(dir, named: "a.bin"), b = try cipherFile(dir, named: "b.bin")
        let (ca, cb) = (try bytes(a), try bytes(b))
        try write(a, cb)
        try write(b, ca)
        await expectRefusal(dir, bundle, mentioning: "does not authenticate", where: code(.chunkTampered))
    }

    @Test func refusesChunksFromAnotherEncryption() async throws {
        // The same model encrypted twice with the same key: a chunk of one does not open in the other.
        let (one, bundle) = try encrypt("one")
        let (two, _) = try encrypt("two")
        let path = try cipherFile(one, named: "config.json")
        try write(path, try bytes(try cipherFile(two, named: "config.json")))
        await expectRefusal(one, bundle, mentioning: "config.json", where: code(.chunkTampered))
    }

    @Test func refusesMissingFile() async throws {
        let (dir, bundle) = try encrypt()
        try FileManager.default.removeItem(atPath: try cipherFile(dir, named: "weights/part-1.bin"))
        await expectRefusal(dir, bundle, mentioning: "lacks", where: code(.missingFile))
    }

    @Test func refusesFileDroppedFromTheHeader() async throws {
        // An attacker without the key cannot drop a file from the list: the MAC covers it.
        let (dir, bundle) = try encrypt()
        let headerPath = dir + "/" + EncryptedModelHeader.fileName
        var header = try EncryptedModel(path: dir).header
        header.files.removeLast()
        let encoder = JSONEncoder()
        try write(headerPath, Array(try encoder.encode(header)))
        await expectRefusal(dir, bundle, mentioning: "header was changed", where: code(.headerTampered))
    }

    @Test func refusesModelEncryptedFromOtherBytes() async throws {
        // Encrypted with the right key, but the plaintext is not what was signed.
        let bundle = try ModelSigner.sign(model: model, key: signer)
        try scratch.write("model/config.json", "{\"architecture\": \"evil\"}\n")
        let out = scratch.file("enc")
        _ = try EncryptedModelWriter.encrypt(model: model, to: out, key: key, chunkBytes: Self.chunk)
        await expectRefusal(out, bundle, mentioning: "content differs in config.json",
                            where: { ($0 as? ModelSigningError)?.code == .hashMismatch })
    }

    @Test func refusesKeyOfWrongLength() {
        #expect(throws: EncryptedModelError(.invalidKey, "")) { try DataKey(bytes: [UInt8](repeating: 7, count: 31)) }
        #expect(throws: EncryptedModelError(.invalidKey, "")) { try DataKey(bytes: [UInt8](repeating: 7, count: 33)) }
    }

    @Test func refusesToOverwriteOutput() throws {
        let (dir, _) = try encrypt()
        #expect(throws: EncryptedModelError(.output, "")) {
            try EncryptedModelWriter.encrypt(model: model, to: dir, key: key, chunkBytes: Self.chunk)
        }
    }

    @Test func encryptsASingleFileModel() async throws {
        let file = try scratch.write("single.gguf", (0..<9000).map { UInt8(truncatingIfNeeded: $0) })
        let bundle = try ModelSigner.sign(model: file, key: signer)
        let out = scratch.file("single-enc")
        _ = try EncryptedModelWriter.encrypt(model: file, to: out, key: key, chunkBytes: Self.chunk)
        let verified = try await verify(out, bundle)
        #expect(verified.loadedFiles["."]?.withUnsafeBytes { Array($0) } == (0..<9000).map { UInt8(truncatingIfNeeded: $0) })
    }

    /// Seeded mutations of a valid header (bytes flipped, truncated, fields replaced, huge numbers):
    /// the parser refuses each with an error of its own (never a crash, never an allocation by an
    /// untrusted size), or, when a mutation leaves a valid header, the MAC or the key check refuses it.
    @Test func survivesMutatedHeaders() async throws {
        let (dir, bundle) = try encrypt()
        let headerPath = dir + "/" + EncryptedModelHeader.fileName
        let original = try bytes(headerPath)
        let originalHeader = try EncryptedModel(path: dir).header
        var rng = SplitMix(seed: 0x5EC0DE)
        let replacements: [String] = ["\"bytes\" : 1099511627777", "\"bytes\" : -1", "\"chunkBytes\" : 0", "\"chunkBytes\" : 4097",
                                      "\"chunkBytes\" : 9223372036854775807", "\"name\" : \"../escape\"", "\"name\" : \"/abs\"",
                                      "\"ciphertext\" : \"../../etc/passwd\"", "\"salt\" : \"zz\"", "\"files\" : []", "\"schema\" : 1",
                                      "\"bytes\" : 1e400", "\"name\" : \"a//b\""]
        for round in 0..<400 {
            var mutated = original
            switch round % 4 {
            case 0:
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let i = Int(rng.next() % UInt64(mutated.count))
                    mutated[i] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 1:
                mutated = Array(mutated[0..<Int(rng.next() % UInt64(mutated.count))])
            case 2:
                let text = String(decoding: original, as: UTF8.self)
                let pattern = [#""bytes"\s*:\s*10000"#, #""chunkBytes"\s*:\s*4096"#, #""name"\s*:\s*"config.json""#,
                               #""ciphertext"\s*:\s*"file-0.bin""#, #""salt"\s*:\s*""#, #""files"\s*:\s*\["#,
                               #""schema"\s*:\s*"securenode.encrypted-model.v1""#][Int(rng.next() % 7)]
                let replacement = replacements[Int(rng.next() % UInt64(replacements.count))]
                let replaced = text.replacing(try Regex(pattern), with: replacement)
                #expect(replaced != text, "round \(round): the pattern \(pattern) is not in the header")
                mutated = Array(replaced.utf8)
            default:
                let i = Int(rng.next() % UInt64(mutated.count))
                mutated.insert(contentsOf: Array("[[[[{\"a\":".utf8), at: i)
            }
            try write(headerPath, mutated)
            do {
                _ = try await verify(dir, bundle, load: { _ in false })
                // Only what the MAC does not need to cover may differ: whitespace, the informative
                // signature name, unknown keys.
                var accepted = try EncryptedModel(path: dir).header
                accepted.signature = originalHeader.signature
                #expect(accepted == originalHeader, "round \(round): a mutated header verified")
            } catch let error as EncryptedModelError {
                #expect(!error.reason.isEmpty)
            } catch let error as ModelSigningError {
                #expect(!error.reason.isEmpty)
            }
        }
    }
}

/// A small seeded generator for reproducible mutations.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        for start in 0...(count - needle.count) where self[start] == needle[0] {
            if Array(self[start..<(start + needle.count)]) == needle { return true }
        }
        return false
    }
}
