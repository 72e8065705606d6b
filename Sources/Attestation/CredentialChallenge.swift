import BigInt
import Crypto
import CryptoExtras
import Foundation

/// TPM2_MakeCredential in software, for an orchestrator with no TPM (TPM 2.0 Part 1, 24.4):
/// encrypts `secret` so that only the TPM holding the EK can recover it, and only into the object
/// named `akName`. The node proves possession of both keys by returning the secret
/// (TPM2_ActivateCredential).
public enum CredentialChallenge {
    /// Domain separation for ``enrollmentProof(secret:nonce:akName:)``. Its NUL byte can appear in
    /// no Keylime agent id, so no proof is ever a registrar's HMAC(secret, uuid).
    public static let enrollmentProofLabel = Array("securenode.enrollment.v1".utf8) + [0]

    /// What the node answers to an enrollment challenge instead of the recovered secret:
    /// HMAC-SHA256(key: secret, label || nonce || akName), bound to the challenger's nonce and to the
    /// AK. Only the challenger, who chose the secret, can check it; nobody learns the secret from it,
    /// so the activation endpoint is not an oracle for other protocols that prove possession of a
    /// credential by a MAC under it (Keylime's registrar: HMAC-SHA384(secret, agent uuid)).
    public static func enrollmentProof(secret: [UInt8], nonce: [UInt8], akName: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: enrollmentProofLabel + nonce + akName, using: SymmetricKey(data: secret)))
    }

    public struct Blob: Sendable, Equatable {
        /// Marshaled TPM2B_ID_OBJECT.
        public let credentialBlob: [UInt8]
        /// Marshaled TPM2B_ENCRYPTED_SECRET.
        public let encryptedSecret: [UInt8]
    }

    /// - Parameters:
    ///   - ekPublic: marshaled TPM2B_PUBLIC of an RSA-2048 EK with AES-128-CFB symmetric parameters
    ///     (the TCG L-1 template).
    ///   - akName: TPM name of the key to be activated.
    ///   - secret: at most 32 bytes.
    public static func make(ekPublic: [UInt8], akName: [UInt8], secret: [UInt8],
                            seed: [UInt8]? = nil) throws(AttestationError) -> Blob {
        let ek = try TPMPublicKey(marshaled: ekPublic)
        guard case .rsa(let modulus, let exponent) = ek.key, modulus.count == 256 else {
            throw AttestationError(.unsupported, "the EK is not an RSA-2048 key")
        }
        guard secret.count <= 32 else { throw AttestationError(.unsupported, "a credential is at most 32 bytes") }
        let seed = seed ?? (0..<32).map { _ in UInt8.random(in: 0...255) }
        let encryptedSecret = try oaepEncrypt(seed, modulus: modulus, exponent: exponent, label: Array("IDENTITY\0".utf8))

        let symmetricKey = kdfa(key: seed, label: "STORAGE", contextU: akName, contextV: [], bits: 128)
        let plaintext = be16(UInt16(secret.count)) + secret  // TPM2B_DIGEST
        let encIdentity: [UInt8]
        do {
            encIdentity = Array(try AES._CFB.encrypt(plaintext, using: SymmetricKey(data: symmetricKey),
                                                     iv: AES._CFB.IV(ivBytes: [UInt8](repeating: 0, count: 16))))
        } catch {
            throw AttestationError(.unsupported, "AES-CFB failed: \(error)")
        }
        let hmacKey = kdfa(key: seed, label: "INTEGRITY", contextU: [], contextV: [], bits: 256)
        let outerHMAC = Array(HMAC<SHA256>.authenticationCode(for: encIdentity + akName, using: SymmetricKey(data: hmacKey)))
        let idObject = be16(UInt16(outerHMAC.count)) + outerHMAC + encIdentity
        return Blob(credentialBlob: be16(UInt16(idObject.count)) + idObject,
                    encryptedSecret: be16(UInt16(encryptedSecret.count)) + encryptedSecret)
    }

    /// KDFa (SP 800-108 counter mode with HMAC-SHA256), as TPM 2.0 Part 1, 11.4.10.2 defines it.
    static func kdfa(key: [UInt8], label: String, contextU: [UInt8], contextV: [UInt8], bits: Int) -> [UInt8] {
        var out: [UInt8] = []
        var counter: UInt32 = 1
        let labelBytes = Array(label.utf8) + [0]
        while out.count * 8 < bits {
            let message = be32(counter) + labelBytes + contextU + contextV + be32(UInt32(bits))
            out += Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
            counter += 1
        }
        return Array(out.prefix(bits / 8))
    }

    /// RSAES-OAEP (RFC 8017, 7.1.1) with SHA-256 and MGF1-SHA256, with a label (which the TPM
    /// requires and swift-crypto does not offer).
    static func oaepEncrypt(_ message: [UInt8], modulus: [UInt8], exponent: UInt32, label: [UInt8]) throws(AttestationError) -> [UInt8] {
        let k = modulus.count, hLen = 32
        guard message.count <= k - 2 * hLen - 2 else { throw AttestationError(.unsupported, "OAEP message too long") }
        let lHash = Array(SHA256.hash(data: label))
        let db = lHash + [UInt8](repeating: 0, count: k - message.count - 2 * hLen - 2) + [0x01] + message
        let seed = (0..<hLen).map { _ in UInt8.random(in: 0...255) }
        let maskedDB = zip(db, mgf1(seed, length: k - hLen - 1)).map { $0 ^ $1 }
        let maskedSeed = zip(seed, mgf1(maskedDB, length: hLen)).map { $0 ^ $1 }
        let encoded = [0x00] + maskedSeed + maskedDB
        let n = BigUInt(Data(modulus))
        let c = BigUInt(Data(encoded)).power(BigUInt(exponent), modulus: n)
        let bytes = Array(c.serialize())
        return [UInt8](repeating: 0, count: k - bytes.count) + bytes
    }

    static func mgf1(_ seed: [UInt8], length: Int) -> [UInt8] {
        var out: [UInt8] = []
        var counter: UInt32 = 0
        while out.count < length {
            out += Array(SHA256.hash(data: seed + be32(counter)))
            counter += 1
        }
        return Array(out.prefix(length))
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
}
