import Attestation
import Crypto
import Foundation
import ModelSigning
import Testing

/// Evidence captured from a real swtpm (scripts/capture-vectors.sh) appraised with no TPM: the
/// accepted case, and each rejection named after its tampering, with the one check (the error
/// code) that must refuse it.
@Suite struct EvidenceVectorTests {
    static let vectors = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Vectors")
    static let profilePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../firmware-profiles/swtpm-dev.json").standardized.path

    static func data(_ name: String) throws -> Data {
        try Data(contentsOf: vectors.appendingPathComponent(name))
    }

    static func nonce(_ name: String) throws -> [UInt8] {
        let text = String(decoding: try data(name), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let bytes = ModelSigning.bytes(fromHex: text)
        return try #require(bytes)
    }

    static func verifier(enrolled: Bool = true) throws -> EvidenceVerifier {
        let record = try JSONDecoder().decode(EnrollmentRecord.self, from: try data("enrolled.json"))
        return EvidenceVerifier(profile: try FirmwareProfile.load(path: profilePath), enrolled: enrolled ? [record] : [])
    }

    static func serving() throws -> Evidence { try Evidence(json: try data("serving-evidence.json")) }

    @Test func acceptsCapturedServingEvidence() throws {
        let appraisal = try Self.verifier().appraise(try Self.serving(), nonce: try Self.nonce("serving-nonce.hex"))
        #expect(appraisal.result == .pass, "\(appraisal.checks)")
        #expect(appraisal.checks.map(\.check) == EvidenceVerifier.checkNames)
        #expect(appraisal.receiptKeySHA256 == (try Self.serving()).receiptKeySHA256)
    }

    @Test func refusesCapturedHistoryWithADisallowedModel() throws {
        // Captured: a model from a signer the profile does not name, then the allowed one again.
        let evidence = try Evidence(json: try Self.data("history-evidence.json"))
        #expect(evidence.model != nil)
        let appraisal = try Self.verifier().appraise(evidence, nonce: try Self.nonce("history-nonce.hex"))
        #expect(appraisal.failedCheck == "model-allowed", "\(appraisal.checks)")
    }

    /// A tampering of the captured serving evidence and the check that must refuse it.
    struct Tampering: Sendable, CustomTestStringConvertible {
        let name: String
        let check: String
        let apply: @Sendable (inout Evidence) -> Void
        var testDescription: String { name }
    }

    static let tamperings: [Tampering] = [
        Tampering(name: "swappedAKPublic", check: "ak-trusted") { e in
            e.ak.public = e.ak.public.replacingOccurrences(of: "A", with: "B", options: [], range: e.ak.public.index(e.ak.public.endIndex, offsetBy: -20)..<e.ak.public.endIndex)
        },
        Tampering(name: "flippedQuoteBody", check: "quote-signature") { e in
            var attest = Array(Data(base64Encoded: e.quote.attest)!)
            attest[attest.count - 1] ^= 1
            e.quote.attest = Data(attest).base64EncodedString()
        },
        Tampering(name: "truncatedSignature", check: "quote-signature") { e in
            e.quote.signature = Data(Array(Data(base64Encoded: e.quote.signature)!).prefix(40)).base64EncodedString()
        },
        Tampering(name: "changedPCRValue", check: "pcr-digest") { e in e.pcrs.values["0"] = String(repeating: "11", count: 32) },
        Tampering(name: "droppedPCR", check: "pcr-digest") { e in e.pcrs.values.removeValue(forKey: "7") },
        Tampering(name: "editedModelEvent", check: "event-log-replay") { e in
            e.eventLog[0].event = e.eventLog[0].event.replacingOccurrences(of: "\"modelName\":\"", with: "\"modelName\":\"renamed-")
        },
        Tampering(name: "editedModelEventWithRecomputedDigest", check: "event-log-replay") { e in
            e.eventLog[0].event = e.eventLog[0].event.replacingOccurrences(of: "swtpm-dev\"", with: "swtpm-dev \"")
            e.eventLog[0].digest = hexString(Array(SHA256.hash(data: Array(e.eventLog[0].event.utf8))))
        },
        Tampering(name: "droppedReceiptKeyEvent", check: "event-log-replay") { e in
            e.eventLog.removeAll { $0.type == ReceiptKeyMeasurement.eventType }
        },
        Tampering(name: "droppedEventLog", check: "event-log-replay") { e in e.eventLog = [] },
        Tampering(name: "modelEventMovedToReceiptPCR", check: "event-log-replay") { e in e.eventLog[0].pcr = 14 },
        Tampering(name: "swappedModelField", check: "model-bound") { e in e.model?.manifestRoot = String(repeating: "ab", count: 32) },
        Tampering(name: "unknownReceiptKey", check: "model-bound") { e in e.receiptKeySHA256 = String(repeating: "cd", count: 32) },
        Tampering(name: "removedModelFieldOfAServingProcess", check: "model-bound") { e in e.model = nil },
    ]

    @Test(arguments: tamperings)
    func refusesTamperedEvidence(_ tampering: Tampering) throws {
        var evidence = try Self.serving()
        tampering.apply(&evidence)
        let appraisal = try Self.verifier().appraise(evidence, nonce: try Self.nonce("serving-nonce.hex"))
        #expect(appraisal.failedCheck == tampering.check, "\(tampering.name): \(appraisal.checks.filter { $0.result == .fail })")
    }

    @Test func refusesReplayedEvidenceForANewNonce() throws {
        var fresh = try Self.nonce("serving-nonce.hex")
        fresh[0] ^= 0xFF
        var evidence = try Self.serving()
        evidence.nonce = hexString(fresh)
        #expect(try Self.verifier().appraise(evidence, nonce: fresh).failedCheck == "nonce")
    }

    @Test func refusesEvidenceFromAnUnenrolledAK() throws {
        let appraisal = try Self.verifier(enrolled: false).appraise(try Self.serving(), nonce: try Self.nonce("serving-nonce.hex"))
        #expect(appraisal.failedCheck == "ak-trusted")
    }

    @Test(arguments: ["", "{", "{\"version\": 2}"])
    func refusesTruncatedEvidence(text: String) throws {
        #expect(try Self.verifier().appraise(json: Array(text.utf8), nonce: try Self.nonce("serving-nonce.hex")).failedCheck == "evidence-format")
        let captured = Array(try Self.data("serving-evidence.json"))
        #expect(try Self.verifier().appraise(json: Array(captured.prefix(captured.count / 2)), nonce: try Self.nonce("serving-nonce.hex")).failedCheck
                == "evidence-format")
    }
}
