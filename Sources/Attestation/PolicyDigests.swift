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

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
}

/// A publisher's approval of PCR values for sealed secrets (`securenode approve-policy` writes it):
/// a P-256 signature, by the profile's policy-authorization key, over H(approvedPolicy || policyRef).
public struct PolicyApproval: Sendable, Codable, Equatable {
    public static let schemaName = "securenode.policy-approval.v1"
    public var schema: String
    /// The PCR values approved (index → hex), SHA-256 bank.
    public var pcrs: [String: String]
    /// PolicyPCR digest of those values (hex).
    public var approvedPolicy: String
    /// Raw ECDSA signature r || s (hex, 64 bytes).
    public var signature: String
    /// TPM name of the authorizing key (hex), for matching against a sealed blob.
    public var keyName: String

    /// Approves `values` with `key` (the publisher side; no TPM needed).
    public init(values: [Int: [UInt8]], key: P256.Signing.PrivateKey) throws {
        let policy = PolicyDigests.policyPCR(values: values)
        // ECDSA-SHA256 over (approvedPolicy || policyRef) signs exactly approvalDigest(...), the digest
        // TPM2_VerifySignature checks.
        let signature = try key.signature(for: policy)
        schema = Self.schemaName
        pcrs = Dictionary(uniqueKeysWithValues: values.map { (String($0.key), hexString($0.value)) })
        approvedPolicy = hexString(policy)
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
