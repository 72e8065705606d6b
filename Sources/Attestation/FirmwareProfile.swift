import Foundation
import ModelSigning

/// A platform's attestation policy (`firmware-profiles/*.json`). See firmware-profiles/README.md
/// for the schema; ``validate()`` enforces it.
public struct FirmwareProfile: Sendable, Codable, Equatable {
    public static let schemaName = "securenode.profile.v1"
    /// The ``allowedChatTemplates`` entry that allows the chat template signed into the model itself.
    public static let modelsOwnChatTemplate = "model"

    public struct AttestationKeySpec: Sendable, Codable, Equatable {
        /// "rsa2048" or "ecc-p256".
        public var type: String
        /// Persistent handle, hex text such as "0x81010002".
        public var persistentHandle: String
    }

    public struct Signer: Sendable, Codable, Equatable {
        public var name: String
        /// SHA-256 of the signer's DER SubjectPublicKeyInfo (what `securenode model verify` prints).
        public var publicKeyFingerprint: String
        public init(name: String, publicKeyFingerprint: String) {
            self.name = name
            self.publicKeyFingerprint = publicKeyFingerprint
        }
    }

    public struct SealPolicy: Sendable, Codable, Equatable {
        public var pcrs: [Int]
        /// PEM public key (path relative to the profile, or inline PEM) allowed to approve new PCR values.
        public var policyAuthorizationKey: String?
    }

    public var schema: String
    public var id: String
    public var description: String
    public var pcrBank: String
    public var quotePCRs: [Int]
    public var measurementPCR: Int
    /// Where the serving process's per-boot receipt key is measured (default: `measurementPCR`).
    /// Kept apart from the model's PCR, the model PCR's value is predictable from the signed model
    /// alone, so a fleet verifier (Keylime) can pin it.
    public var receiptKeyPCR: Int?
    public var attestationKey: AttestationKeySpec
    /// PEM files (relative to the profile's directory, `${VAR}` expanded) of CAs trusted to issue EK certificates.
    public var ekCAs: [String]
    /// TPM names (hex) of attestation keys trusted without enrollment.
    public var trustedAKs: [String]
    public var modelSigners: [Signer]
    /// Whether signers given on the command line are accepted besides `modelSigners` (development only).
    public var allowLocalSigners: Bool
    /// Manifest root digests (hex) allowed to run; empty means any model from an allowed signer.
    public var allowedModels: [String]
    /// Chat templates a serving process may render with, any of: SHA-256 hex of an operator's
    /// template file (`model.chat_template`), or ``modelsOwnChatTemplate`` for the template signed
    /// into the model. Absent: any. `model-bound` enforces it on a serving process's evidence.
    public var allowedChatTemplates: [String]?
    /// Allowed values (hex, any of) per PCR index ("0"..."23"). PCRs not listed are not pinned.
    public var referenceValues: [String: [String]]
    public var seal: SealPolicy
    /// Compute backend: "cpu", or a (modeled) device with its reference values and vendor CAs.
    public var backend: BackendSelection
    /// Documentation: what each PCR measures on this platform.
    public var pcrUsage: [String: String]?

    public static func load(path: String) throws(AttestationError) -> FirmwareProfile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AttestationError(.invalidProfile, "cannot read profile \(path)")
        }
        let profile: FirmwareProfile
        do {
            profile = try JSONDecoder().decode(FirmwareProfile.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw AttestationError(.invalidProfile, "profile \(path): missing field \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context) {
            throw AttestationError(.invalidProfile, "profile \(path): wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))")
        } catch {
            throw AttestationError(.invalidProfile, "profile \(path) is not valid JSON")
        }
        try profile.validate()
        return profile
    }

    /// Checks every rule of the schema; the error names the field.
    public func validate() throws(AttestationError) {
        func fail(_ message: String) -> AttestationError { AttestationError(.invalidProfile, "profile \(id): \(message)") }
        guard schema == Self.schemaName else { throw fail("schema is \"\(schema)\", expected \"\(Self.schemaName)\"") }
        guard !id.isEmpty, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
            throw fail("id must be non-empty letters, digits, '-', '_' or '.'")
        }
        guard pcrBank == "sha256" else { throw fail("pcrBank \"\(pcrBank)\" is not supported (sha256 only)") }
        guard !quotePCRs.isEmpty, quotePCRs.allSatisfy({ (0...23).contains($0) }), Set(quotePCRs).count == quotePCRs.count else {
            throw fail("quotePCRs must be distinct PCR indices 0-23")
        }
        guard (0...15).contains(measurementPCR) else {
            throw fail("measurementPCR \(measurementPCR) must be 0-15: PCR 16 and 23 can be reset at locality 0, 17-22 need DRTM localities")
        }
        guard quotePCRs.contains(measurementPCR) else { throw fail("quotePCRs must include measurementPCR \(measurementPCR)") }
        if let receiptKeyPCR {
            guard (0...15).contains(receiptKeyPCR) else {
                throw fail("receiptKeyPCR \(receiptKeyPCR) must be 0-15: PCR 16 and 23 can be reset at locality 0, 17-22 need DRTM localities")
            }
            guard quotePCRs.contains(receiptKeyPCR) else { throw fail("quotePCRs must include receiptKeyPCR \(receiptKeyPCR)") }
        }
        guard ["rsa2048", "ecc-p256"].contains(attestationKey.type) else {
            throw fail("attestationKey.type \"\(attestationKey.type)\" must be rsa2048 or ecc-p256")
        }
        guard let handle = akHandle, (0x8101_0000...0x8101_FFFF).contains(handle) else {
            throw fail("attestationKey.persistentHandle must be hex in the endorsement range 0x81010000-0x8101FFFF")
        }
        for signer in modelSigners where ModelSigning.bytes(fromHex: signer.publicKeyFingerprint)?.count != 32 {
            throw fail("modelSigners \"\(signer.name)\": publicKeyFingerprint must be 64 hex digits")
        }
        for digest in allowedModels where ModelSigning.bytes(fromHex: digest)?.count != 32 {
            throw fail("allowedModels: \"\(digest)\" is not 64 hex digits")
        }
        if let allowedChatTemplates {
            guard !allowedChatTemplates.isEmpty else {
                throw fail("allowedChatTemplates is empty, which no serving process satisfies; omit it to allow any template")
            }
            for entry in allowedChatTemplates where entry != Self.modelsOwnChatTemplate && ModelSigning.bytes(fromHex: entry)?.count != 32 {
                throw fail("allowedChatTemplates: \"\(entry)\" is neither 64 hex digits (a template file's SHA-256) nor \"\(Self.modelsOwnChatTemplate)\"")
            }
        }
        for name in trustedAKs where ModelSigning.bytes(fromHex: name)?.count != 34 {
            throw fail("trustedAKs: \"\(name)\" is not a SHA-256 TPM name (68 hex digits)")
        }
        for (pcr, values) in referenceValues {
            guard let i = Int(pcr), (0...23).contains(i) else { throw fail("referenceValues key \"\(pcr)\" is not a PCR index") }
            guard quotePCRs.contains(i) else { throw fail("referenceValues pins PCR \(i), which quotePCRs does not quote") }
            guard i != measurementPCR && i != receiptPCR else {
                throw fail("referenceValues must not pin PCR \(i): the node measures into it (its value comes from the event log)")
            }
            for v in values where ModelSigning.bytes(fromHex: v)?.count != 32 {
                throw fail("referenceValues[\(pcr)]: \"\(v)\" is not a SHA-256 value")
            }
        }
        guard seal.pcrs.allSatisfy({ (0...23).contains($0) }), Set(seal.pcrs).count == seal.pcrs.count else {
            throw fail("seal.pcrs must be distinct PCR indices 0-23")
        }
        guard !seal.pcrs.isEmpty else { throw fail("seal.pcrs is empty: a secret sealed to no PCR unseals on any platform state") }
        let resettable = seal.pcrs.filter { PolicyDigests.resettablePCRs.contains($0) }.sorted()
        guard resettable.isEmpty else {
            throw fail("seal.pcrs contains \(resettable), which software can reset (TPM2_PCR_Reset at locality 0) and set to any value")
        }
        do throws(AttestationError) {
            try backend.validate()
        } catch {
            throw fail(error.reason)
        }
    }

    /// The PCR receipt keys are measured into.
    public var receiptPCR: Int { receiptKeyPCR ?? measurementPCR }

    /// What the node measures into `pcr` (for messages).
    public func pcrRole(_ pcr: Int) -> String {
        switch (pcr == measurementPCR, pcr == receiptPCR) {
        case (true, true): return "model and receipt-key PCR"
        case (true, false): return "model measurement PCR"
        case (false, true): return "receipt-key PCR"
        default: return "PCR"
        }
    }

    /// The PCRs the node extends (model, receipt key).
    public var nodePCRs: [Int] { Array(Set([measurementPCR, receiptPCR])).sorted() }

    public var akHandle: UInt32? {
        let text = attestationKey.persistentHandle.lowercased()
        guard text.hasPrefix("0x") else { return nil }
        return UInt32(text.dropFirst(2), radix: 16)
    }

    /// Whether a model signed by `fingerprint` (hex) may run, given command-line signers.
    public func allowsSigner(_ fingerprint: String, localSigners: [String] = []) -> Bool {
        let known = modelSigners.map { $0.publicKeyFingerprint.lowercased() } + (allowLocalSigners ? localSigners.map { $0.lowercased() } : [])
        return known.contains { constantTimeEquals(Array($0.utf8), Array(fingerprint.lowercased().utf8)) }
    }
}
