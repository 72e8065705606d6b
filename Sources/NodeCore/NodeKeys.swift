import Crypto
import CryptoExtras

/// The node's long-term private keys, unsealed into process memory (``NodeKeyStore/unlock(approvals:)``).
/// Never written out, never logged; `serve` marks itself non-dumpable so no core dump holds them.
/// Every stored property is immutable (swift-crypto's RSA key is an immutable value not yet marked
/// Sendable), hence `@unchecked`.
public struct NodeKeys: @unchecked Sendable {
    public let apiTLS: P256.Signing.PrivateKey
    public let keylimeAgentTLS: P256.Signing.PrivateKey
    public let keylimePayload: _RSA.Encryption.PrivateKey
    /// The index the keys were unlocked from (public parts).
    public let index: NodeKeyIndex
}
