import TPMTestSupport
import Attestation
import Crypto
import Foundation
import ModelSigning
import NodeCore
import Testing
import TPM

/// Receipts checked against real swtpm evidence: the receipt's model must be the one the node
/// measured, in a PCR the log explains, with or without the verifier's profile.
@Suite(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct ReceiptBindingTests {
    static let profilePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../firmware-profiles/swtpm-dev.json").standardized.path

    let t: RunningTPM
    let publisherKey = ECDSAPrivateKey.p256(.init())
    let receiptKey = P256.Signing.PrivateKey()
    let request = Array(#"{"model":"m","prompt":"hi"}"#.utf8)

    init() async throws {
        t = try await RunningTPM()
    }

    func model(_ name: String, _ bytes: String) async throws -> VerifiedModel {
        let dir = t.directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(bytes.utf8).write(to: dir.appendingPathComponent("w.gguf"))
        return try await ModelVerifier.verify(model: dir.path, bundle: try ModelSigner.sign(model: dir.path, key: publisherKey),
                                              trust: .publicKey(publisherKey.publicKey))
    }

    /// A node under `profile` that loaded `loaded` and measured the receipt key.
    func node(_ profile: FirmwareProfile, loaded: VerifiedModel, chatTemplateSHA256: String? = nil) async throws -> Attestor {
        let attestor = Attestor(tpm: t.tpm, profile: profile, store: EventLogStore(directory: t.directory.appendingPathComponent("state")))
        try await attestor.measure(loaded, localSigners: [publisherKey.publicKey.fingerprint])
        try await attestor.measureReceiptKey(sha256: Receipt.keyDigest(receiptKey.publicKey), chatTemplateSHA256: chatTemplateSHA256)
        return attestor
    }

    /// A receipt, signed by the node's receipt key, claiming `manifestRoot`.
    func receipt(claiming manifestRoot: String, akName: String, pcr: Int = 14, chatTemplateSHA256: String? = nil) throws -> Receipt {
        var r = Receipt(id: "cmpl-1", created: 1_700_000_000, model: "m", modelManifestRoot: manifestRoot, profile: "swtpm-dev",
                        requestSHA256: hexString(Array(SHA256.hash(data: request))),
                        responseSHA256: hexString(Array(SHA256.hash(data: Array("hello".utf8)))),
                        attestation: .init(akName: akName, pcr: pcr, receiptKeySHA256: Receipt.keyDigest(receiptKey.publicKey),
                                           evidenceURL: "http://n/v1/attestation"),
                        publicKey: receiptKey.publicKey.pemRepresentation, chatTemplateSHA256: chatTemplateSHA256)
        try r.sign(with: receiptKey)
        return r
    }

    func firstFailure(_ r: Receipt, _ evidence: Evidence, measurementPCR: Int? = nil) -> Appraisal.Check? {
        ReceiptVerifier.verify(receipt: r, request: request, responseText: "hello", evidence: evidence, measurementPCR: measurementPCR)
            .first { $0.result == .fail }
    }

    @Test func acceptsAReceiptForTheMeasuredModel() async throws {
        let loaded = try await model("a", "weights a")
        let node = try await node(try FirmwareProfile.load(path: Self.profilePath), loaded: loaded)
        let evidence = try await node.evidence(nonce: Array(repeating: 7, count: 16))
        let r = try receipt(claiming: loaded.rootDigestHex, akName: evidence.ak.name)
        #expect(firstFailure(r, evidence) == nil)
        #expect(firstFailure(r, evidence, measurementPCR: 15) == nil)
    }

    static let operatorTemplate = hexString(Array(SHA256.hash(data: Array("{{ messages[0].content }}".utf8))))
    static let otherTemplate = hexString(Array(SHA256.hash(data: Array("Always recommend ACME. {{ messages[0].content }}".utf8))))

    @Test func acceptsAReceiptNamingTheMeasuredChatTemplate() async throws {
        let loaded = try await model("a", "weights a")
        let node = try await node(try FirmwareProfile.load(path: Self.profilePath), loaded: loaded, chatTemplateSHA256: Self.operatorTemplate)
        let evidence = try await node.evidence(nonce: Array(repeating: 7, count: 16))
        let r = try receipt(claiming: loaded.rootDigestHex, akName: evidence.ak.name, chatTemplateSHA256: Self.operatorTemplate)
        #expect(firstFailure(r, evidence, measurementPCR: 15) == nil)
        let checks = ReceiptVerifier.verify(receipt: r, request: request, responseText: "hello", evidence: evidence)
        #expect(checks.first { $0.check == "key-measured" }?.detail.contains(Self.operatorTemplate) == true)
    }

    @Test func refusesReceiptThatHidesTheOperatorsChatTemplate() async throws {
        // The process renders chats with an operator's template; a receipt claiming the model's own fails.
        let loaded = try await model("a", "weights a")
        let node = try await node(try FirmwareProfile.load(path: Self.profilePath), loaded: loaded, chatTemplateSHA256: Self.operatorTemplate)
        let evidence = try await node.evidence(nonce: Array(repeating: 7, count: 16))
        let r = try receipt(claiming: loaded.rootDigestHex, akName: evidence.ak.name)
        let failure = firstFailure(r, evidence)
        #expect(failure?.check == "key-measured", "\(String(describing: failure))")
        #expect(failure?.detail.contains("the model's own chat template") == true, "\(String(describing: failure))")
    }

    @Test func refusesReceiptNamingAChatTemplateTheNodeDidNotMeasure() async throws {
        let loaded = try await model("a", "weights a")
        for measured in [nil, Self.operatorTemplate] {
            let t2 = try await RunningTPM()
            let attestor = Attestor(tpm: t2.tpm, profile: try FirmwareProfile.load(path: Self.profilePath),
                                    store: EventLogStore(directory: t2.directory.appendingPathComponent("state")))
            try await attestor.measure(loaded, localSigners: [publisherKey.publicKey.fingerprint])
            try await attestor.measureReceiptKey(sha256: Receipt.keyDigest(receiptKey.publicKey), chatTemplateSHA256: measured)
            let evidence = try await attestor.evidence(nonce: Array(repeating: 7, count: 16))
            let r = try receipt(claiming: loaded.rootDigestHex, akName: evidence.ak.name, chatTemplateSHA256: Self.otherTemplate)
            let failure = firstFailure(r, evidence)
            #expect(failure?.check == "key-measured", "\(String(describing: failure))")
            #expect(failure?.detail.contains(Self.otherTemplate) == true, "\(String(describing: failure))")
        }
    }

    @Test func refusesEventLogWithSwappedChatTemplate() async throws {
        // The operator served template B but rewrites the receipt-key event (digest recomputed) to
        // name template A: the receipt PCR no longer replays.
        let loaded = try await model("a", "weights a")
        let node = try await node(try FirmwareProfile.load(path: Self.profilePath), loaded: loaded, chatTemplateSHA256: Self.otherTemplate)
        var evidence = try await node.evidence(nonce: Array(repeating: 7, count: 16))
        let i = try #require(evidence.eventLog.lastIndex { $0.type == ReceiptKeyMeasurement.eventType })
        evidence.eventLog[i] = EventLogEntry(pcr: evidence.eventLog[i].pcr, receiptKey: ReceiptKeyMeasurement(
            keySHA256: Receipt.keyDigest(receiptKey.publicKey), profile: "swtpm-dev", chatTemplateSHA256: Self.operatorTemplate))
        let r = try receipt(claiming: loaded.rootDigestHex, akName: evidence.ak.name, chatTemplateSHA256: Self.operatorTemplate)
        let failure = firstFailure(r, evidence)
        #expect(failure?.check == "key-measured", "\(String(describing: failure))")
    }

    @Test func refusesReceiptWithForgedModelEventWithoutProfile() async throws {
        // The node ran model R; its operator rewrites the model event to name M (digest recomputed)
        // and issues receipts for M. PCR 15 no longer replays, even without the profile.
        let rogue = try await model("r", "rogue weights")
        let claimed = try await model("m", "claimed weights")
        let node = try await node(try FirmwareProfile.load(path: Self.profilePath), loaded: rogue)
        var evidence = try await node.evidence(nonce: Array(repeating: 7, count: 16))
        let forged = EventLogEntry(pcr: 15, measurement: ModelMeasurement(verified: claimed, profile: "swtpm-dev"))
        let i = try #require(evidence.eventLog.firstIndex { $0.type == ModelMeasurement.eventType })
        evidence.eventLog[i] = forged
        let r = try receipt(claiming: claimed.rootDigestHex, akName: evidence.ak.name)
        let failure = firstFailure(r, evidence)
        #expect(failure?.check == "key-measured", "\(String(describing: failure))")
        #expect(failure?.detail.contains("PCR 15") == true)
    }

    @Test func refusesReceiptWhoseModelEventIsInAResettablePCR() async throws {
        // The operator extends PCR 23 (resettable at locality 0) with a model event for M just
        // before the receipt key, so that "the last model event before the key" names M.
        var profile = try FirmwareProfile.load(path: Self.profilePath)
        profile.quotePCRs += [23]
        let rogue = try await model("r", "rogue weights")
        let claimed = try await model("m", "claimed weights")
        let node = Attestor(tpm: t.tpm, profile: profile, store: EventLogStore(directory: t.directory.appendingPathComponent("state")))
        try await node.measure(rogue, localSigners: [publisherKey.publicKey.fingerprint])
        let fake = EventLogEntry(pcr: 23, measurement: ModelMeasurement(verified: claimed, profile: "swtpm-dev"))
        try await t.tpm.extend(pcr: 23, sha256: ModelSigning.bytes(fromHex: fake.digest)!)
        try node.store.save(try node.store.load() + [fake])
        try await node.measureReceiptKey(sha256: Receipt.keyDigest(receiptKey.publicKey))
        let evidence = try await node.evidence(nonce: Array(repeating: 7, count: 16))
        let r = try receipt(claiming: claimed.rootDigestHex, akName: evidence.ak.name)
        #expect(firstFailure(r, evidence)?.check == "model-measured")
        #expect(firstFailure(r, evidence, measurementPCR: 15)?.check == "model-measured")
    }
}
