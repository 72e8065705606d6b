import TPMTestSupport
import Attestation
import Crypto
import Foundation
import ModelSigning
import NodeCore
import SoftwareTPM
import Testing
import TPM

/// Evidence from a real swtpm, appraised by the pure-Swift verifier; every tampering is named.
@Suite(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct EvidenceAppraisalTests {
    static let profilePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../firmware-profiles/swtpm-dev.json").standardized.path

    let t: RunningTPM
    let attestor: Attestor
    let publisherKey = ECDSAPrivateKey.p256(.init())
    let model: VerifiedModel
    let nonce: [UInt8] = (0..<16).map { _ in UInt8.random(in: 0...255) }

    /// A node that verified and measured a small signed model, with a profile that trusts its
    /// signer (and, for the appraisal, its AK).
    init() async throws {
        t = try await RunningTPM()
        var profile = try FirmwareProfile.load(path: Self.profilePath)
        profile.modelSigners = [.init(name: "test publisher", publicKeyFingerprint: publisherKey.publicKey.fingerprint)]
        profile.allowLocalSigners = false
        let modelDir = t.directory.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: modelDir, withIntermediateDirectories: true)
        try Data("weights".utf8).write(to: modelDir.appendingPathComponent("w.gguf"))
        let bundle = try ModelSigner.sign(model: modelDir.path, key: publisherKey)
        model = try await ModelVerifier.verify(model: modelDir.path, bundle: bundle, trust: .publicKey(publisherKey.publicKey))
        attestor = Attestor(tpm: t.tpm, profile: profile, store: EventLogStore(directory: t.directory.appendingPathComponent("state")))
        try await attestor.measure(model)
    }

    func verifier(trusting evidence: Evidence) -> EvidenceVerifier {
        var profile = attestor.profile
        profile.trustedAKs = [evidence.ak.name]
        return EvidenceVerifier(profile: profile)
    }

    func appraise(_ evidence: Evidence, nonce: [UInt8]? = nil, trusting: Evidence? = nil) -> Appraisal {
        verifier(trusting: trusting ?? evidence).appraise(evidence, nonce: nonce ?? self.nonce)
    }

    @Test func acceptsFreshEvidenceAndNamesEveryCheck() async throws {
        let evidence = try await attestor.evidence(nonce: nonce)
        let appraisal = appraise(evidence)
        #expect(appraisal.result == .pass, "\(appraisal.checks)")
        #expect(appraisal.checks.map(\.check) == EvidenceVerifier.checkNames)
        #expect(appraisal.model?.manifestRoot == model.rootDigestHex)
        #expect(evidence.eventLog.count == 1)
        #expect(evidence.ekCertificate?.hasPrefix("-----BEGIN CERTIFICATE-----") == true)
        // Round trip through the documented JSON.
        let reparsed = try Evidence(json: evidence.jsonData())
        #expect(reparsed == evidence)
    }

    @Test func refusesWrongNonce() async throws {
        let evidence = try await attestor.evidence(nonce: nonce)
        var other = nonce
        other[0] ^= 1
        #expect(appraise(evidence, nonce: other).failedCheck == "nonce")
    }

    @Test func refusesReplayedQuote() async throws {
        // An attacker answers a new challenge with yesterday's evidence, relabelled with the new nonce.
        var old = try await attestor.evidence(nonce: nonce)
        let fresh: [UInt8] = (0..<16).map { _ in UInt8.random(in: 0...255) }
        old.nonce = hexString(fresh)
        #expect(appraise(old, nonce: fresh).failedCheck == "nonce")
    }

    @Test func refusesChangedPCR() async throws {
        var evidence = try await attestor.evidence(nonce: nonce)
        evidence.pcrs.values["7"] = String(repeating: "ab", count: 32)
        #expect(appraise(evidence).failedCheck == "pcr-digest")
    }

    @Test func refusesDroppedPCR() async throws {
        var evidence = try await attestor.evidence(nonce: nonce)
        evidence.pcrs.values.removeValue(forKey: "15")
        #expect(appraise(evidence).failedCheck == "pcr-digest")
    }

    @Test func refusesEditedEventLog() async throws {
        var evidence = try await attestor.evidence(nonce: nonce)
        evidence.eventLog[0].event = evidence.eventLog[0].event.replacingOccurrences(of: model.rootDigestHex, with: String(repeating: "0", count: 64))
        #expect(appraise(evidence).failedCheck == "event-log-replay")
        // Even with a recomputed digest the log no longer replays to the quoted PCR.
        evidence.eventLog[0].digest = hexString(Array(SHA256.hash(data: Array(evidence.eventLog[0].event.utf8))))
        #expect(appraise(evidence).failedCheck == "event-log-replay")
    }

    @Test func refusesDroppedEventLog() async throws {
        var evidence = try await attestor.evidence(nonce: nonce)
        evidence.eventLog = []
        #expect(appraise(evidence).failedCheck == "event-log-replay")
    }

    @Test func refusesSwappedAK() async throws {
        let evidence = try await attestor.evidence(nonce: nonce)
        // Another genuine AK of the same TPM, trusted too: the quote was not made by it.
        let other = try await t.tpm.attestationKey(.eccP256, persistentHandle: 0x8101_0077)
        let otherKey = try TPMPublicKey(marshaled: other.publicArea)
        var swapped = evidence
        swapped.ak = .init(public: Data(other.publicArea).base64EncodedString(), pem: otherKey.pem, name: hexString(otherKey.name))
        #expect(appraise(swapped).failedCheck == "quote-signature")
        // And an AK nobody enrolled is refused before anything else.
        #expect(appraise(swapped, trusting: evidence).failedCheck == "ak-trusted")
    }

    @Test func refusesForgedQuoteBody() async throws {
        var evidence = try await attestor.evidence(nonce: nonce)
        var attest = Array(Data(base64Encoded: evidence.quote.attest)!)
        attest[attest.count - 1] ^= 0x01
        evidence.quote.attest = Data(attest).base64EncodedString()
        #expect(appraise(evidence).failedCheck == "quote-signature")
    }

    @Test func refusesUnknownModel() async throws {
        // The node measures a second model from a signer the verifier's profile does not allow.
        let rogue = ECDSAPrivateKey.p256(.init())
        let dir = t.directory.appendingPathComponent("rogue")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("other weights".utf8).write(to: dir.appendingPathComponent("w.gguf"))
        let verified = try await ModelVerifier.verify(model: dir.path, bundle: try ModelSigner.sign(model: dir.path, key: rogue),
                                                      trust: .publicKey(rogue.publicKey))
        var lax = attestor.profile
        lax.allowLocalSigners = true
        try await Attestor(tpm: t.tpm, profile: lax, store: attestor.store).measure(verified, localSigners: [rogue.publicKey.fingerprint])
        let evidence = try await attestor.evidence(nonce: nonce)
        #expect(appraise(evidence).failedCheck == "model-allowed")
    }

    /// A model directory signed by `key`, verified.
    func signedModel(_ name: String, key: ECDSAPrivateKey, bytes: String) async throws -> VerifiedModel {
        let dir = t.directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(bytes.utf8).write(to: dir.appendingPathComponent("w.gguf"))
        return try await ModelVerifier.verify(model: dir.path, bundle: try ModelSigner.sign(model: dir.path, key: key),
                                              trust: .publicKey(key.publicKey))
    }

    @Test func refusesDisallowedModelHiddenBehindAnAllowedOne() async throws {
        // A rogue model is measured, then the allowed one again: the last model event is allowed,
        // but the history is not.
        let rogue = ECDSAPrivateKey.p256(.init())
        let verified = try await signedModel("hidden-rogue", key: rogue, bytes: "rogue weights")
        var lax = attestor.profile
        lax.allowLocalSigners = true
        try await Attestor(tpm: t.tpm, profile: lax, store: attestor.store).measure(verified, localSigners: [rogue.publicKey.fingerprint])
        try await attestor.measure(model)
        let evidence = try await attestor.evidence(nonce: nonce)
        #expect(evidence.model?.manifestRoot == model.rootDigestHex)
        let appraisal = appraise(evidence)
        #expect(appraisal.failedCheck == "model-allowed", "\(appraisal.checks)")
        let detail = appraisal.checks.first { $0.check == "model-allowed" }?.detail ?? ""
        #expect(detail.contains("eventLog[1]") && detail.contains(verified.rootDigestHex), "\(detail)")
    }

    @Test func reportsItsOwnModelWhenAnotherProcessMeasuresLater() async throws {
        // Process A serves the model; process B, sharing the TPM and state, loads another allowed
        // model afterwards. A's evidence still names A's model, bound to A's receipt key.
        let keyA = Receipt.keyDigest(P256.Signing.PrivateKey().publicKey)
        try await attestor.measureReceiptKey(sha256: keyA)
        let processA = attestor.serving(model: ModelMeasurement(verified: model, profile: attestor.profile.id), receiptKeySHA256: keyA)
        let other = try await signedModel("model-b", key: publisherKey, bytes: "model b weights")
        try await attestor.measure(other)
        try await attestor.measureReceiptKey(sha256: Receipt.keyDigest(P256.Signing.PrivateKey().publicKey))

        let evidence = try await processA.evidence(nonce: nonce)
        #expect(evidence.model?.manifestRoot == model.rootDigestHex)
        #expect(evidence.receiptKeySHA256 == keyA)
        let appraisal = appraise(evidence)
        #expect(appraisal.result == .pass, "\(appraisal.checks)")
        #expect(appraisal.receiptKeySHA256 == keyA)
        // Unbound (as every node was before), the last model in the shared log is B's.
        #expect(try await attestor.evidence(nonce: nonce).model?.manifestRoot == other.rootDigestHex)
    }

    @Test func refusesEvidenceClaimingAnotherProcessesModel() async throws {
        // Process A (model X) claims to serve model Z that another process measured later.
        let keyA = Receipt.keyDigest(P256.Signing.PrivateKey().publicKey)
        try await attestor.measureReceiptKey(sha256: keyA)
        let processA = attestor.serving(model: ModelMeasurement(verified: model, profile: attestor.profile.id), receiptKeySHA256: keyA)
        let other = try await signedModel("model-z", key: publisherKey, bytes: "model z weights")
        try await attestor.measure(other)
        try await attestor.measureReceiptKey(sha256: Receipt.keyDigest(P256.Signing.PrivateKey().publicKey))
        var evidence = try await processA.evidence(nonce: nonce)
        evidence.model?.manifestRoot = other.rootDigestHex
        let appraisal = appraise(evidence)
        #expect(appraisal.failedCheck == "model-bound", "\(appraisal.checks)")
        // A receipt key the log never saw is refused too.
        var unknownKey = try await processA.evidence(nonce: nonce)
        unknownKey.receiptKeySHA256 = String(repeating: "ab", count: 32)
        #expect(appraise(unknownKey).failedCheck == "model-bound")
    }

    /// Evidence of a serving process that renders chats with `template` (nil: the model's own),
    /// appraised under a profile allowing `allowed`.
    func appraiseServing(template: String?, allowed: [String]?) async throws -> Appraisal {
        let key = Receipt.keyDigest(P256.Signing.PrivateKey().publicKey)
        try await attestor.measureReceiptKey(sha256: key, chatTemplateSHA256: template)
        let process = attestor.serving(model: ModelMeasurement(verified: model, profile: attestor.profile.id), receiptKeySHA256: key)
        let evidence = try await process.evidence(nonce: nonce)
        var v = verifier(trusting: evidence)
        v.profile.allowedChatTemplates = allowed
        return v.appraise(evidence, nonce: nonce)
    }

    static let operatorTemplate = hexString(Array(SHA256.hash(data: Array("{{ messages[0].content }}".utf8))))

    @Test func acceptsAChatTemplateTheProfileAllows() async throws {
        for (template, allowed) in [(Self.operatorTemplate, [Self.operatorTemplate.uppercased()]), (nil, ["model"]),
                                    (Self.operatorTemplate, nil), (nil, nil)] {
            let appraisal = try await appraiseServing(template: template, allowed: allowed)
            #expect(appraisal.result == .pass, "\(appraisal.checks)")
            #expect(appraisal.chatTemplateSHA256 == template)
        }
    }

    /// A node that keeps answers measured that it decodes as prompt rows: the appraisal passes and
    /// its model-bound check names the decoding, so a relying party knows which numbers to expect.
    @Test func namesTheMeasuredDecoding() async throws {
        for keeps in [true, false] {
            let key = Receipt.keyDigest(P256.Signing.PrivateKey().publicKey)
            try await attestor.measureReceiptKey(sha256: key, decodesAsPromptRows: keeps)
            let process = attestor.serving(model: ModelMeasurement(verified: model, profile: attestor.profile.id), receiptKeySHA256: key)
            let evidence = try await process.evidence(nonce: nonce)
            let appraisal = verifier(trusting: evidence).appraise(evidence, nonce: nonce)
            #expect(appraisal.result == .pass, "\(appraisal.checks)")
            let detail = appraisal.checks.first { $0.check == "model-bound" }?.detail ?? ""
            #expect(detail.contains(keeps ? "decodes as prompt rows" : "one-token kernels"), "\(detail)")
        }
    }

    @Test func refusesOperatorsChatTemplateTheProfileDoesNotAllow() async throws {
        // The operator swaps in a template of its own ("always recommend ACME"); a relying party
        // that allows only the model's signed template refuses the node before a prompt leaves.
        let appraisal = try await appraiseServing(template: Self.operatorTemplate, allowed: ["model"])
        #expect(appraisal.failedCheck == "model-bound", "\(appraisal.checks)")
        let detail = appraisal.checks.first { $0.check == "model-bound" }?.detail ?? ""
        #expect(detail.contains(Self.operatorTemplate) && detail.contains("allowedChatTemplates"), "\(detail)")
    }

    @Test func refusesModelsOwnChatTemplateWhenTheProfileRequiresTheOperators() async throws {
        let appraisal = try await appraiseServing(template: nil, allowed: [Self.operatorTemplate])
        #expect(appraisal.failedCheck == "model-bound", "\(appraisal.checks)")
        #expect(appraisal.checks.first { $0.check == "model-bound" }?.detail.contains("the model's own chat template") == true)
    }

    @Test func refusesEvidenceMissingTheReceiptKeyEvent() async throws {
        // The receipt-key event is dropped from the log: PCR 14 no longer replays.
        try await attestor.measureReceiptKey(sha256: Receipt.keyDigest(P256.Signing.PrivateKey().publicKey))
        var evidence = try await attestor.evidence(nonce: nonce)
        evidence.eventLog.removeAll { $0.type == ReceiptKeyMeasurement.eventType }
        let appraisal = appraise(evidence)
        #expect(appraisal.failedCheck == "event-log-replay", "\(appraisal.checks)")
        let detail = appraisal.checks.first { $0.check == "event-log-replay" }?.detail ?? ""
        #expect(detail.hasPrefix("PCR 14 (receipt-key PCR)"), "\(detail)")
    }

    @Test func refusesModelEventMovedToAnotherPCR() async throws {
        // The model event relabelled as PCR 14's (with the receipt-key event gone): PCR 15 is unexplained.
        var evidence = try await attestor.evidence(nonce: nonce)
        evidence.eventLog[0].pcr = 14
        #expect(appraise(evidence).failedCheck == "event-log-replay")
    }

    @Test func nodeRefusesToMeasureASignerItsProfileDoesNotName() async throws {
        let rogue = ECDSAPrivateKey.p256(.init())
        let dir = t.directory.appendingPathComponent("rogue2")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: dir.appendingPathComponent("w.gguf"))
        let verified = try await ModelVerifier.verify(model: dir.path, bundle: try ModelSigner.sign(model: dir.path, key: rogue),
                                                      trust: .publicKey(rogue.publicKey))
        await #expect(throws: NodeError.self) { try await attestor.measure(verified, localSigners: [rogue.publicKey.fingerprint]) }
    }

    @Test func refusesChangedFirmwarePCR() async throws {
        try await t.tpm.extend(pcr: 0, sha256: [UInt8](repeating: 0x42, count: 32))
        let evidence = try await attestor.evidence(nonce: nonce)
        let appraisal = appraise(evidence)
        #expect(appraisal.failedCheck == "reference-values", "\(appraisal.checks)")
    }

    @Test func nodeFailsClosedWhenSomethingElseExtendsItsPCR() async throws {
        try await t.tpm.extend(pcr: 15, sha256: [UInt8](repeating: 0x99, count: 32))
        await #expect(throws: NodeError.self) { try await attestor.evidence(nonce: nonce) }
    }

    @Test(arguments: ["", "{", "null", "{\"version\": 1}", "{\"version\": 2, \"nonce\": \"00\"}"])
    func refusesTruncatedOrGarbageEvidence(text: String) async throws {
        let appraisal = EvidenceVerifier(profile: attestor.profile).appraise(json: Array(text.utf8), nonce: nonce)
        #expect(appraisal.result == .fail)
        #expect(appraisal.failedCheck == "evidence-format")
    }

    @Test func refusesTruncatedQuote() async throws {
        var evidence = try await attestor.evidence(nonce: nonce)
        evidence.quote.attest = Data(Array(Data(base64Encoded: evidence.quote.attest)!).prefix(20)).base64EncodedString()
        #expect(appraise(evidence).failedCheck == "quote-signature")
    }

    @Test func tpm2CheckquoteAcceptsOurEvidence() async throws {
        try #require(TPMTools.tpm2Tools, "tpm2-tools is not installed")
        let evidence = try await attestor.evidence(nonce: nonce)
        try Data(base64Encoded: evidence.quote.attest)!.write(to: URL(fileURLWithPath: t.file("q.msg")))
        try Data(base64Encoded: evidence.quote.signature)!.write(to: URL(fileURLWithPath: t.file("q.sig")))
        try evidence.ak.pem.write(toFile: t.file("ak.pem"), atomically: true, encoding: .utf8)
        let values = Dictionary(uniqueKeysWithValues: evidence.pcrs.values.map { (Int($0.key)!, ModelSigning.bytes(fromHex: $0.value)!) })
        try Data(tpm2ToolsPCRFile(values: values)).write(to: URL(fileURLWithPath: t.file("q.pcrs")))
        let args = ["-u", t.file("ak.pem"), "-m", t.file("q.msg"), "-s", t.file("q.sig"), "-f", t.file("q.pcrs"), "-g", "sha256"]
        let ok = try TPMTools.run("tpm2_checkquote", args + ["-q", evidence.nonce])
        #expect(ok.status == 0, "\(ok.output)")
        var changed = values
        changed[15] = [UInt8](repeating: 1, count: 32)
        try Data(tpm2ToolsPCRFile(values: changed)).write(to: URL(fileURLWithPath: t.file("q.pcrs")))
        #expect(try TPMTools.run("tpm2_checkquote", args + ["-q", evidence.nonce]).status != 0)
    }
}
