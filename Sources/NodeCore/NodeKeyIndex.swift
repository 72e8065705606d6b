import Foundation

/// The node's long-term keys, by name.
public enum NodeKeyName: String, CaseIterable, Codable, Sendable {
    /// The OpenAI API's TLS server key (`server.tls: {}`).
    case apiTLS = "api-tls"
    /// The Keylime agent API's TLS server key (its certificate is the agent's `mtls_cert`).
    case keylimeAgentTLS = "keylime-agent-tls"
    /// The RSA key Keylime's tenant and verifier encrypt U and V to (bound into PCR 16 at start).
    case keylimePayload = "keylime-payload"

    public var algorithm: String { self == .keylimePayload ? "rsa-2048" : "ecdsa-p256" }
}

/// `<state_dir>/keys/index.json`: public material only — which keys exist, their public keys, how
/// their private halves are protected and where they live. Editing it gains nothing: the sealed key
/// names its policy inside the TPM object, and each private key's AES-GCM tag binds its name and
/// public-key digest.
public struct NodeKeyIndex: Codable, Sendable, Equatable {
    public static let schemaName = "securenode.node-keys.v1"

    public struct Entry: Codable, Sendable, Equatable {
        public var name: String
        /// "ecdsa-p256" or "rsa-2048".
        public var algorithm: String
        /// Hex SHA-256 of the DER SubjectPublicKeyInfo.
        public var spkiSHA256: String
        public var publicKeyPEM: String
        /// File (in the keys directory) holding the private key: AES-256-GCM (nonce || ciphertext ||
        /// tag) under the sealed key-encryption key, the name and spkiSHA256 as associated data.
        public var privateKeyFile: String
        /// ISO 8601 time of creation.
        public var created: String
    }

    public var schema: String
    public var profile: String
    /// The PCRs (SHA-256 bank) the key-encryption key is sealed to: the profile's seal PCRs without
    /// the ones the node extends itself.
    public var pcrs: [Int]
    /// The profile's seal PCRs left out (measurementPCR, receiptKeyPCR): the node extends them at
    /// every start, so a key sealed to them would not unseal after the first `serve`.
    public var excludedPCRs: [Int]
    /// "pcr" (the values at sealing time) or "authorize" (any values the key below approves).
    public var policy: String
    /// For "authorize": the policy-authorization public key (PEM) and its TPM name (hex).
    public var authorizationKeyPEM: String?
    public var authorizationKeyName: String?
    /// The PCR values when the key-encryption key was sealed (index → hex): to name the PCRs that
    /// changed when it no longer unseals.
    public var pcrValuesAtSeal: [String: String]
    /// The sealed key-encryption key (``SealedSecretFile``), in the keys directory.
    public var keyEncryptionKeyFile: String
    public var keys: [Entry]

    public func entry(_ name: NodeKeyName) -> Entry? { keys.first { $0.name == name.rawValue } }
}
