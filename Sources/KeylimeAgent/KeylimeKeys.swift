import Crypto
import CryptoExtras
import Foundation
import ModelSigning

/// The agent's half of Keylime's key bootstrap. The agent's RSA-2048 key (the node key
/// `keylime-payload`; its public key rides in quotes and is bound to the TPM through PCR 16); the tenant sends U and the
/// verifier sends V, each RSA-OAEP(SHA-1) encrypted to it; K = U xor V, accepted only when
/// HMAC-SHA384(K, uuid) equals the tenant's auth tag. K then answers `keys/verify` challenges and
/// decrypts the tenant's optional payload (AES-256-GCM). K, U and V are never logged or written.
public actor KeylimeKeys {
    public let uuid: String
    private let privateKey: _RSA.Encryption.PrivateKey
    /// The public key as PEM (SubjectPublicKeyInfo): the exact bytes PCR 16 is extended with.
    public nonisolated let publicKeyPEM: String
    private var u: [UInt8]?
    private var v: [UInt8]?
    private var authTag: String?
    private var encryptedPayload: [UInt8]?
    public private(set) var key: [UInt8]?
    /// The decrypted payload, once K is known and a payload came with U.
    public private(set) var payload: [UInt8]?

    /// The node's `keylime-payload` key (sealed by the TPM, held in memory only), or a fresh one.
    /// The node keeps the same key across restarts so PCR 16 takes the value the verifier knows, and
    /// a node restarted with the same model stays attested.
    public init(uuid: String, privateKey: _RSA.Encryption.PrivateKey? = nil) throws(KeylimeError) {
        self.uuid = uuid
        let key: _RSA.Encryption.PrivateKey
        do {
            key = try privateKey ?? _RSA.Encryption.PrivateKey(keySize: .bits2048)
        } catch {
            throw KeylimeError("cannot make the agent's RSA key: \(error)")
        }
        self.privateKey = key
        publicKeyPEM = key.publicKey.pemRepresentation + "\n"
    }

    public enum Half: Sendable { case u, v }

    /// Takes U (with the tenant's auth tag and optional payload) or V. Returns true when K is now known.
    @discardableResult
    public func receive(_ half: Half, encryptedKey: [UInt8], authTag: String?, payload: [UInt8]?) throws(KeylimeError) -> Bool {
        let plain: [UInt8]
        do {
            plain = Array(try privateKey.decrypt(encryptedKey, padding: .PKCS1_OAEP))
        } catch {
            throw KeylimeError("encrypted_key does not decrypt with this agent's key (RSA-OAEP, SHA-1)")
        }
        guard plain.count == 32 else { throw KeylimeError("the decrypted key is \(plain.count) bytes, not 32") }
        switch half {
        case .u:
            guard let authTag, authTag.count == 96, ModelSigning.bytes(fromHex: authTag) != nil else {
                throw KeylimeError("auth_tag must be 96 hex digits (HMAC-SHA384)")
            }
            u = plain
            self.authTag = authTag.lowercased()
            encryptedPayload = payload
        case .v:
            v = plain
        }
        return try combine()
    }

    /// K = U xor V, kept only if the tenant's auth tag proves it.
    private func combine() throws(KeylimeError) -> Bool {
        guard let u, let v, let authTag else { return false }
        let candidate = zip(u, v).map { $0 ^ $1 }
        guard let expected = ModelSigning.bytes(fromHex: authTag),
              constantTimeEquals(Self.hmac(key: candidate, message: uuid), expected) else {
            // A U and V that do not belong together (e.g. a stale V): wait for the matching half.
            return false
        }
        key = candidate
        if let encryptedPayload {
            payload = try Self.decryptPayload(encryptedPayload, key: candidate)
        }
        return true
    }

    /// Forgets the decrypted payload once its receiver has it: the receiver then holds the only
    /// copy of its bytes and wipes it when done.
    public func discardPayload() { payload = nil }

    /// `keys/verify`: HMAC-SHA384(K, challenge) as hex, or nil while K is unknown.
    public func verify(challenge: String) -> String? {
        guard let key else { return nil }
        return hexString(Self.hmac(key: key, message: challenge))
    }

    static func hmac(key: [UInt8], message: String) -> [UInt8] {
        Array(HMAC<SHA384>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)))
    }

    /// Keylime's `crypto.encrypt`: base64 of IV (16 bytes) | ciphertext | tag (16 bytes), AES-256-GCM.
    static func decryptPayload(_ sealed: [UInt8], key: [UInt8]) throws(KeylimeError) -> [UInt8] {
        guard sealed.count >= 32 else { throw KeylimeError("the payload is shorter than an IV and a tag") }
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: sealed[0..<16]), ciphertext: sealed[16..<(sealed.count - 16)],
                                            tag: sealed[(sealed.count - 16)...])
            return Array(try AES.GCM.open(box, using: SymmetricKey(data: key)))
        } catch {
            throw KeylimeError("the payload does not decrypt with K (AES-256-GCM): \(error)")
        }
    }
}
