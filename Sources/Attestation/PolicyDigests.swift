import Crypto
import Foundation
import ModelSigning

/// TPM 2.0 enhanced-authorization policy digests, computed in software (TPM 2.0 Part 3, 23.x), so
/// that a publisher without a TPM can approve PCR values and a sealer can predict a policy.
public enum PolicyDigests {
    static let ccPolicyPCR: UInt32 = 0x0000_017F
    static let ccPolicyAuthorize: UInt32 = 0x0000_016A

    /// Marshaled TPML_PCR_SELECTION for one SHA-256 bank.
    public static func pcrSelection(_ indices: [Int]) -> [UInt8] {
        var select: [UInt8] = [0, 0, 0]
        for i in indices where (0..<24).contains(i) { select[i / 8] |= 1 << (i % 8) }
        return be32(1) + be16(TPMAlgorithm.sha256) + [3] + select
    }

    /// policyDigest after TPM2_PolicyPCR from an empty session, for these PCR values (SHA-256 bank):
    /// H(0…0 || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || H(values in index order)).
    public static func policyPCR(values: [Int: [UInt8]]) -> [UInt8] {
        let indices = values.keys.sorted()
        let pcrDigest = Array(SHA256.hash(data: indices.flatMap { values[$0]! }))
        return Array(SHA256.hash(data: [UInt8](repeating: 0, count: 32) + be32(ccPolicyPCR) + pcrSelection(indices) + pcrDigest))
    }

    /// policyDigest after TPM2_PolicyAuthorize(keySign, policyRef) from an empty session:
    /// H(H(0…0 || TPM_CC_PolicyAuthorize || keyName) || policyRef).
    public static func policyAuthorize(keyName: [UInt8], policyRef: [UInt8] = []) -> [UInt8] {
        let first = Array(SHA256.hash(data: [UInt8](repeating: 0, count: 32) + be32(ccPolicyAuthorize) + keyName))
        return Array(SHA256.hash(data: first + policyRef))
    }

    /// The digest a policy-authorization key signs to approve `approvedPolicy`: H(approvedPolicy || policyRef).
    public static func approvalDigest(approvedPolicy: [UInt8], policyRef: [UInt8] = []) -> [UInt8] {
        Array(SHA256.hash(data: approvedPolicy + policyRef))
    }

    /// Marshaled TPM2B_PUBLIC of an external P-256 ECDSA-SHA256 verification key, as TPM2_LoadExternal
    /// takes it, and its TPM name (the name PolicyAuthorize binds).
    public static func externalSigningKey(_ key: P256.Signing.PublicKey) -> (tpm2bPublic: [UInt8], name: [UInt8]) {
        let raw = Array(key.x963Representation)  // 04 || x || y
        let x = Array(raw[1..<33]), y = Array(raw[33..<65])
        let attributes: UInt32 = 0x0004_0000 | 0x0000_0040  // sign | userWithAuth
        var area: [UInt8] = be16(TPMAlgorithm.ecc) + be16(TPMAlgorithm.sha256) + be32(attributes)
        area += be16(0)                                          // authPolicy: empty
        area += be16(TPMAlgorithm.null)                          // symmetric: none
        area += be16(TPMAlgorithm.ecdsa) + be16(TPMAlgorithm.sha256)  // scheme
        area += be16(TPMAlgorithm.eccNistP256)                   // curve
        area += be16(TPMAlgorithm.null)                          // kdf
        area += be16(UInt16(x.count)) + x + be16(UInt16(y.count)) + y
        let name = be16(TPMAlgorithm.sha256) + Array(SHA256.hash(data: area))
        return (be16(UInt16(area.count)) + area, name)
    }

    /// The policyRef a sealed secret's PolicyAuthorize is bound to: SHA-256 of
    /// `securenode.seal.v1\nprofile=<id>\npcrs=<sorted indices, comma-separated>`. A publisher's
    /// approval signs it with the PCR policy, so an approval serves only this purpose (secrets sealed
    /// under this profile) and only this PCR selection.
    public static func sealPolicyRef(profile: String, pcrs: [Int]) -> [UInt8] {
        let text = "securenode.seal.v1\nprofile=\(profile)\npcrs=\(pcrs.sorted().map(String.init).joined(separator: ","))"
        return Array(SHA256.hash(data: Array(text.utf8)))
    }

    /// PCRs that software at locality 0 can reset (TPM2_PCR_Reset): nothing measured there can be trusted.
    public static let resettablePCRs: Set<Int> = [16, 23]

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
}

/// A publisher's approval of PCR values for sealed secrets (`securenode approve-policy` writes it):
/// a P-256 signature, by the profile's policy-authorization key, over H(approvedPolicy || policyRef),
/// where policyRef (``PolicyDigests/sealPolicyRef(profile:pcrs:)``) names the profile and its seal
/// PCR selection: the approval unseals nothing else.
public struct PolicyApproval: Sendable, Codable, Equatable {
    public static let schemaName = "securenode.policy-approval.v2"
    public var schema: String
    /// The profile whose sealed secrets this approval is for.
    public var profile: String
    /// The PCR values approved (index → hex), SHA-256 bank: exactly the profile's seal PCRs.
    public var pcrs: [String: String]
    /// PolicyPCR digest of those values (hex).
    public var approvedPolicy: String
    /// The policyRef signed with it (hex): SHA-256 naming the profile and the PCR selection.
    public var policyRef: String
    /// Raw ECDSA signature r || s (hex, 64 bytes).
    public var signature: String
    /// TPM name of the authorizing key (hex), for matching against a sealed blob.
    public var keyName: String

    /// Approves `values` with `key` (the publisher side; no TPM needed) for secrets sealed under
    /// profile `profile`, whose seal PCRs are `sealPCRs`. Refuses values over any other PCR set
    /// (fewer PCRs would approve a weaker policy) and selections with a resettable PCR.
    public init(values: [Int: [UInt8]], key: P256.Signing.PrivateKey, profile: String, sealPCRs: [Int]) throws {
        guard !sealPCRs.isEmpty else { throw AttestationError(.invalidProfile, "profile \(profile) seals to no PCRs: nothing to approve") }
        let resettable = sealPCRs.filter { PolicyDigests.resettablePCRs.contains($0) }.sorted()
        guard resettable.isEmpty else {
            throw AttestationError(.invalidProfile, "PCRs \(resettable) can be reset by software at locality 0; an approval over them approves anything")
        }
        guard Set(values.keys) == Set(sealPCRs) else {
            throw AttestationError(.malformed, "the approval must give exactly profile \(profile)'s seal PCRs \(sealPCRs.sorted()), not \(values.keys.sorted())")
        }
        let policy = PolicyDigests.policyPCR(values: values)
        let ref = PolicyDigests.sealPolicyRef(profile: profile, pcrs: sealPCRs)
        // ECDSA-SHA256 over (approvedPolicy || policyRef) signs exactly approvalDigest(...), the digest
        // TPM2_VerifySignature checks.
        let signature = try key.signature(for: policy + ref)
        schema = Self.schemaName
        self.profile = profile
        pcrs = Dictionary(uniqueKeysWithValues: values.map { (String($0.key), hexString($0.value)) })
        approvedPolicy = hexString(policy)
        policyRef = hexString(ref)
        self.signature = hexString(Array(signature.rawRepresentation))
        keyName = hexString(PolicyDigests.externalSigningKey(key.publicKey).name)
    }

    public var pcrValues: [Int: [UInt8]]? {
        var out: [Int: [UInt8]] = [:]
        for (k, v) in pcrs {
            guard let i = Int(k), let b = ModelSigning.bytes(fromHex: v), b.count == 32 else { return nil }
            out[i] = b
        }
        return out
    }
}
