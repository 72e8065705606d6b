import Crypto
import Foundation
import Testing
@testable import ModelSigning

/// Sign with a key, then verify; and every way a model or bundle can be tampered with, refused.
@Suite struct KeyMethodTests {
    let scratch: Scratch
    let model: String
    let key = ECDSAPrivateKey.p256(P256.Signing.PrivateKey())

    init() throws {
        scratch = try Scratch()
        model = try scratch.makeModel()
    }

    func sign() throws -> SigstoreBundle { try ModelSigner.sign(model: model, key: key) }

    func verify(_ bundle: SigstoreBundle, with trusted: ECDSAPublicKey? = nil,
                options: ModelVerifier.Options = .init()) async throws -> VerifiedModel {
        try await ModelVerifier.verify(model: model, bundle: bundle, trust: .publicKey(trusted ?? key.publicKey), options: options)
    }

    func expectRefusal(_ code: ModelSigningError.Code, mentioning text: String? = nil, _ bundle: SigstoreBundle,
                       with trusted: ECDSAPublicKey? = nil, sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            _ = try await verify(bundle, with: trusted)
            Issue.record("expected refusal \(code), but the model verified", sourceLocation: sourceLocation)
        } catch let error as ModelSigningError {
            #expect(error.code == code, "\(error.reason)", sourceLocation: sourceLocation)
            if let text { #expect(error.reason.contains(text), "\(error.reason)", sourceLocation: sourceLocation) }
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func verifiesWhatItSigned() async throws {
        let verified = try await verify(try sign())
        #expect(verified.manifest.resources.map(\.name) == ["config.json", "empty", "tokenizer é.txt", "weights/part-0.bin", "weights/part-1.bin"])
        #expect(verified.signer == .key(fingerprint: key.publicKey.fingerprint, curve: "P-256"))
        #expect(verified.totalBytes == 26 + 5000 + 777 + 8)
        let config = try #require(FileManager.default.contents(atPath: model + "/config.json"))
        #expect(verified.manifest.resources[0].sha256 == Array(SHA256.hash(data: config)))
    }

    @Test(arguments: ["P-256", "P-384", "P-521"])
    func signsAndVerifiesOnEveryCurve(curve: String) async throws {
        let k: ECDSAPrivateKey = switch curve {
        case "P-256": .p256(P256.Signing.PrivateKey())
        case "P-384": .p384(P384.Signing.PrivateKey())
        default: .p521(P521.Signing.PrivateKey())
        }
        let bundle = try ModelSigner.sign(model: model, key: k)
        let verified = try await ModelVerifier.verify(model: model, bundle: bundle, trust: .publicKey(k.publicKey))
        #expect(verified.signer == .key(fingerprint: k.publicKey.fingerprint, curve: curve))
    }

    @Test func keepsTheVerifiedBytesOfRequestedFiles() async throws {
        var options = ModelVerifier.Options()
        options.load = { $0 == "weights/part-0.bin" }
        let verified = try await verify(try sign(), options: options)
        let bytes = try #require(verified.loadedFiles["weights/part-0.bin"])
        let onDisk = try #require(FileManager.default.contents(atPath: model + "/weights/part-0.bin"))
        bytes.withUnsafeBytes { #expect(Array($0) == Array(onDisk)) }
        #expect(Int(bitPattern: bytes.baseAddress) % 4096 == 0)
        #expect(verified.loadedFiles.count == 1)
    }

    @Test func bundleSurvivesJSONRoundTrip() throws {
        let bundle = try sign()
        #expect(try SigstoreBundle(json: bundle.jsonBytes()) == bundle)
    }

    // MARK: the model on disk was changed

    @Test func refusesChangedByte() async throws {
        let bundle = try sign()
        var bytes = try #require(FileManager.default.contents(atPath: model + "/weights/part-0.bin"))
        bytes[4321] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: model + "/weights/part-0.bin"))
        await expectRefusal(.hashMismatch, mentioning: "weights/part-0.bin", bundle)
    }

    @Test func refusesExtraFile() async throws {
        let bundle = try sign()
        try scratch.write("model/weights/backdoor.bin", "x")
        await expectRefusal(.extraFiles, mentioning: "weights/backdoor.bin", bundle)
    }

    @Test func refusesExtraEmptyFileInNewDirectory() async throws {
        let bundle = try sign()
        try scratch.write("model/new/dir/file", [])
        await expectRefusal(.extraFiles, mentioning: "new/dir/file", bundle)
    }

    @Test func refusesMissingFile() async throws {
        let bundle = try sign()
        try FileManager.default.removeItem(atPath: model + "/empty")
        await expectRefusal(.missingFiles, mentioning: "empty", bundle)
    }

    @Test func refusesRenamedFile() async throws {
        let bundle = try sign()
        try FileManager.default.moveItem(atPath: model + "/config.json", toPath: model + "/config2.json")
        await expectRefusal(.missingFiles, mentioning: "renamed", bundle)
    }

    @Test func refusesSymlinkInsideModel() async throws {
        let bundle = try sign()
        try FileManager.default.createSymbolicLink(atPath: model + "/link", withDestinationPath: "/etc/passwd")
        await expectRefusal(.symlink, mentioning: "link", bundle)
    }

    @Test func refusesSymlinkReplacingSignedFile() async throws {
        let bundle = try sign()
        try FileManager.default.moveItem(atPath: model + "/config.json", toPath: scratch.file("elsewhere.json"))
        try FileManager.default.createSymbolicLink(atPath: model + "/config.json", withDestinationPath: scratch.file("elsewhere.json"))
        await expectRefusal(.symlink, mentioning: "config.json", bundle)
    }

    @Test func refusesSymlinkedDirectory() async throws {
        let bundle = try sign()
        try FileManager.default.moveItem(atPath: model + "/weights", toPath: scratch.file("weights-elsewhere"))
        try FileManager.default.createSymbolicLink(atPath: model + "/weights", withDestinationPath: scratch.file("weights-elsewhere"))
        await expectRefusal(.symlink, mentioning: "weights", bundle)
    }

    @Test func refusesFIFO() async throws {
        let bundle = try sign()
        #expect(mkfifo(model + "/pipe", 0o600) == 0)
        await expectRefusal(.specialFile, mentioning: "pipe", bundle)
    }

    @Test func refusesMissingModel() async throws {
        do {
            _ = try await ModelVerifier.verify(model: scratch.file("nope"), bundle: try sign(), trust: .publicKey(key.publicKey))
            Issue.record("verified a model that does not exist")
        } catch let error as ModelSigningError {
            #expect(error.code == .modelNotFound)
        }
    }

    // MARK: the signer or the signature is wrong

    @Test func refusesWrongKey() async throws {
        let other = ECDSAPrivateKey.p256(P256.Signing.PrivateKey())
        await expectRefusal(.keyMismatch, mentioning: "another key", try sign(), with: other.publicKey)
    }

    @Test func refusesWrongKeyWhenHintIsAbsent() async throws {
        var bundle = try sign()
        bundle.verificationMaterial = .publicKey(hint: nil)
        let other = ECDSAPrivateKey.p256(P256.Signing.PrivateKey())
        await expectRefusal(.signatureInvalid, bundle, with: other.publicKey)
    }

    @Test func refusesSignatureOverDifferentPayload() async throws {
        var bundle = try sign()
        let otherModel = try scratch.makeModel("other")
        try scratch.write("other/config.json", "{\"architecture\": \"evil\"}\n")
        bundle.payload = try ModelSigner.sign(model: otherModel, key: .p256(P256.Signing.PrivateKey())).payload
        await expectRefusal(.signatureInvalid, bundle)
    }

    @Test func refusesFlippedSignatureBit() async throws {
        var bundle = try sign()
        bundle.signature[bundle.signature.count - 3] ^= 0x40
        await expectRefusal(.signatureInvalid, bundle)
    }

    @Test func refusesWrongPayloadType() async throws {
        var bundle = try sign()
        bundle.payloadType = "application/json"
        await expectRefusal(.unsupportedPayloadType, mentioning: "application/json", bundle)
    }

    // MARK: validly signed, but the manifest itself is unacceptable

    @Test func refusesWrongPredicateType() async throws {
        let s = statementJSON(resources: [("config.json", [UInt8](repeating: 1, count: 32))], predicateType: "https://example.com/other")
        await expectRefusal(.wrongPredicateType, mentioning: "example.com", try signedBundle(statement: s, key: key))
    }

    @Test func refusesWrongStatementType() async throws {
        let s = statementJSON(resources: [("config.json", [UInt8](repeating: 1, count: 32))], type: "https://in-toto.io/Statement/v0.1")
        await expectRefusal(.wrongStatementType, try signedBundle(statement: s, key: key))
    }

    @Test func refusesMoreThanOneSubject() async throws {
        let s = statementJSON(resources: [("config.json", [UInt8](repeating: 1, count: 32))], subjects: 2)
        await expectRefusal(.subjectCount, mentioning: "2 entries", try signedBundle(statement: s, key: key))
    }

    @Test func refusesManifestRootMismatch() async throws {
        let s = statementJSON(resources: [("config.json", [UInt8](repeating: 1, count: 32))],
                              rootDigest: [UInt8](repeating: 2, count: 32))
        await expectRefusal(.manifestInconsistent, try signedBundle(statement: s, key: key))
    }

    @Test(arguments: ["../outside", "/etc/passwd", "weights/../../x", "a//b", "./config.json", ""])
    func refusesPathEscapingModel(name: String) async throws {
        let s = statementJSON(resources: [(name, [UInt8](repeating: 1, count: 32)), ("config.json", [UInt8](repeating: 3, count: 32))])
        await expectRefusal(.unsafeResourceName, try signedBundle(statement: s, key: key))
    }

    @Test func refusesDuplicateResource() async throws {
        let d = [UInt8](repeating: 1, count: 32)
        let s = statementJSON(resources: [("config.json", d), ("config.json", d)])
        await expectRefusal(.duplicateResource, try signedBundle(statement: s, key: key))
    }

    @Test func refusesShardedOrOtherSerialization() async throws {
        let s = statementJSON(resources: [("config.json", [UInt8](repeating: 1, count: 32))], method: "shards")
        await expectRefusal(.unsupportedSerialization, try signedBundle(statement: s, key: key))
    }

    @Test func refusesUnsignedManifestEntriesForFilesThatDoNotExist() async throws {
        // A validly signed manifest that lists a file the model lacks: missing, not silently skipped.
        let verified = try await verify(try sign())
        var resources = verified.manifest.resources.map { ($0.name, $0.sha256) }
        resources.append(("weights/part-2.bin", [UInt8](repeating: 9, count: 32)))
        await expectRefusal(.missingFiles, mentioning: "weights/part-2.bin",
                            try signedBundle(statement: statementJSON(resources: resources), key: key))
    }

    // MARK: what is ignored

    @Test func ignoresGitMetadataAndTheSignatureInsideTheModel() async throws {
        let sigPath = model + "/model.sig"
        let bundle = try ModelSigner.sign(model: model, key: key, signaturePath: sigPath)
        try Data(bundle.jsonBytes()).write(to: URL(fileURLWithPath: sigPath))
        try scratch.write("model/.git/HEAD", "ref: refs/heads/main\n")
        try scratch.write("model/.gitattributes", "*.bin filter=lfs\n")
        let verified = try await verify(bundle, options: .init(signaturePath: sigPath))
        #expect(!verified.manifest.resources.contains { $0.name.hasPrefix(".git") || $0.name == "model.sig" })
        #expect(verified.manifest.ignorePaths.contains("model.sig"))
    }

    @Test func ignorePathsMatchWholeComponentsOnly() async throws {
        let bundle = try sign()
        try scratch.write("model/.gitx", "not git metadata")
        await expectRefusal(.extraFiles, mentioning: ".gitx", bundle)
    }

    @Test func verifiesSingleFileModel() async throws {
        let file = try scratch.write("single.gguf", (0..<3000).map { UInt8(truncatingIfNeeded: $0) })
        let bundle = try ModelSigner.sign(model: file, key: key)
        let manifest = try ModelManifest(statement: bundle.payload)
        #expect(manifest.resources.map(\.name) == ["."])
        #expect(manifest.subjectName == "single.gguf")
        var options = ModelVerifier.Options()
        options.load = { _ in true }
        let verified = try await ModelVerifier.verify(model: file, bundle: bundle, trust: .publicKey(key.publicKey), options: options)
        #expect(verified.loadedFiles["."]?.count == 3000)
    }
}
