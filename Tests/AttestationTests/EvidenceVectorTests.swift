import Attestation
import Crypto
import Foundation
import JSONMutationSupport
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

    /// 6,000 seeded mutations of the quote's signed bytes, its signature and the AK's TPM2B_PUBLIC, as a
    /// malicious node or a man in the middle could send them: bit flips, truncations, insertions,
    /// appended bytes, random runs of bytes, and size fields set to 0 or 0xFFFF. These bytes come from
    /// the node being appraised (or from whoever sits between it and the verifier; the quote is parsed
    /// before its signature is checked), so each mutation must be refused by a named check, never
    /// crash the verifier, and never pass.
    @Test func refusesEveryMutationOfQuoteSignatureAndAKPublic() throws {
        let verifier = try Self.verifier(), nonce = try Self.nonce("serving-nonce.hex"), serving = try Self.serving()
        var state: UInt64 = 0x5EC0_DE19
        func next(_ bound: Int) -> Int {  // SplitMix64
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
        let fields: [(name: String, get: (Evidence) -> String, set: (inout Evidence, String) -> Void)] = [
            ("quote.attest", { $0.quote.attest }, { $0.quote.attest = $1 }),
            ("quote.signature", { $0.quote.signature }, { $0.quote.signature = $1 }),
            ("ak.public", { $0.ak.public }, { $0.ak.public = $1 }),
        ]
        var refusedBy: [String: Int] = [:]
        for field in fields {
            let original = Array(try #require(Data(base64Encoded: field.get(serving))))
            for round in 0 ..< 2000 {
                var bytes = original
                switch round % 6 {
                case 0: bytes[next(bytes.count)] ^= UInt8(1 << next(8))
                case 1: bytes = Array(bytes.prefix(next(bytes.count)))
                case 2: bytes.insert(UInt8(next(256)), at: next(bytes.count + 1))
                case 3: bytes += (0 ..< 1 + next(8)).map { _ in UInt8(next(256)) }
                case 4:
                    let at = next(bytes.count)
                    for i in at ..< min(bytes.count, at + 1 + next(16)) { bytes[i] = UInt8(next(256)) }
                default:
                    let i = next(bytes.count - 1), v: UInt8 = next(2) == 0 ? 0 : 0xFF
                    bytes[i] = v
                    bytes[i + 1] = v
                }
                guard bytes != original else { continue }
                var evidence = serving
                field.set(&evidence, Data(bytes).base64EncodedString())
                let appraisal = verifier.appraise(evidence, nonce: nonce)
                #expect(appraisal.result != .pass && appraisal.failedCheck != nil, "\(field.name), round \(round): \(appraisal.checks)")
                refusedBy[appraisal.failedCheck ?? "none", default: 0] += 1
            }
        }
        // The mutations reach the checks that parse and verify these bytes, not only the first one.
        #expect(refusedBy["quote-signature", default: 0] > 0 && refusedBy["ak-trusted", default: 0] > 0, "\(refusedBy)")
    }

    /// Every field of the captured evidence document replaced by hostile JSON values (numbers past
    /// Int.max, 1e300, -0.0, wrong types, huge strings, deep or empty containers), as a malicious node
    /// could send them to a client's `securenode verify` or to the attested proxy: never a trap, and
    /// never a pass unless the field is one the appraisal does not rest on (listed here).
    @Test func survivesHostileValueInEveryEvidenceField() throws {
        let verifier = try Self.verifier(), nonce = try Self.nonce("serving-nonce.hex")
        let document = try #require(try JSONSerialization.jsonObject(with: try Self.data("serving-evidence.json")) as? [String: Any])
        let hostile: [Any] = [7.7e43, -7.7e43, 1e300, 9.3e18, -1, 0, -0.0, 0.5, 4_294_967_296, true, NSNull(), "", "00",
                              String(repeating: "ff", count: 50_000), [Any](), [String: Any](), [[[[[[1]]]]]], ["a": ["b": 1]]]
        var passed: Set<String> = [], refused = 0
        let receiptKeyPath = "receiptKeySHA256"
        let baseline = verifier.appraise(json: Array(try Self.data("serving-evidence.json")), nonce: nonce)
        #expect(baseline.result == .pass)
        for path in JSONMutation.paths(document) {
            for value in hostile {
                let mutated = JSONMutation.replacing(document, at: path[...], with: value)
                let bytes = try JSONSerialization.data(withJSONObject: mutated)
                let appraisal = verifier.appraise(json: Array(bytes), nonce: nonce)
                let name = JSONMutation.name(path)
                if appraisal.result == .pass {
                    // Without a receipt key the evidence is `securenode quote`'s, a legitimate kind.
                    if name == receiptKeyPath && value is NSNull { #expect(appraisal.receiptKeySHA256 == nil); continue }
                    #expect(appraisal.model?.name == baseline.model?.name && appraisal.model?.signerDescription == baseline.model?.signerDescription,
                            "\(name): the appraisal reports \(String(describing: appraisal.model))")
                    passed.insert(name)
                } else {
                    #expect(appraisal.failedCheck != nil)
                    refused += 1
                }
            }
        }
        // Fields the appraisal does not rest on: the EK certificate (checked at enrollment, not per
        // quote) and the node's description of the signer (the appraisal reports its own profile's).
        // Found by this test and fixed: the AK's name and PEM, the nonce, the profile and the model's
        // name were taken as sent.
        #expect(passed.isSubset(of: ["ekCertificate", "model.signerDescription"]), "passed with a hostile value: \(passed.sorted())")
        #expect(refused > 500, "\(refused)")
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

