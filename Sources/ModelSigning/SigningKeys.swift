import Crypto
import Foundation
import SwiftASN1
import X509

/// An ECDSA public key on one of the curves model-signing uses. The hash follows the curve
/// (P-256: SHA-256, P-384: SHA-384, P-521: SHA-512), as in model-signing.
public enum ECDSAPublicKey: Sendable {
    case p256(P256.Signing.PublicKey)
    case p384(P384.Signing.PublicKey)
    case p521(P521.Signing.PublicKey)

    public init(pem: String) throws(ModelSigningError) {
        let document: PEMDocument
        do {
            document = try PEMDocument(pemString: pem)
        } catch {
            throw ModelSigningError(.invalidKey, "the public key is not a PEM document")
        }
        guard document.discriminator == "PUBLIC KEY" else {
            throw ModelSigningError(.invalidKey,
                "expected a \"PUBLIC KEY\" PEM block, found \"\(document.discriminator)\"")
        }
        try self.init(spki: document.derBytes)
    }

    /// From a DER SubjectPublicKeyInfo.
    public init(spki der: [UInt8]) throws(ModelSigningError) {
        if let k = try? P256.Signing.PublicKey(derRepresentation: der) {
            self = .p256(k)
        } else if let k = try? P384.Signing.PublicKey(derRepresentation: der) {
            self = .p384(k)
        } else if let k = try? P521.Signing.PublicKey(derRepresentation: der) {
            self = .p521(k)
        } else {
            throw ModelSigningError(.invalidKey, "the public key is not an ECDSA key on P-256, P-384 or P-521")
        }
    }

    public init(certificate: Certificate) throws(ModelSigningError) {
        var serializer = DER.Serializer()
        do {
            try serializer.serialize(certificate.publicKey)
        } catch {
            throw ModelSigningError(.invalidCertificate, "cannot read the certificate's public key")
        }
        do {
            try self.init(spki: serializer.serializedBytes)
        } catch {
            throw ModelSigningError(.invalidCertificate,
                "the certificate for \(certificate.subject) does not hold an ECDSA key on P-256, P-384 or P-521")
        }
    }

    public var curveName: String {
        switch self {
        case .p256: "P-256"
        case .p384: "P-384"
        case .p521: "P-521"
        }
    }

    public var spkiDER: [UInt8] {
        switch self {
        case .p256(let k): Array(k.derRepresentation)
        case .p384(let k): Array(k.derRepresentation)
        case .p521(let k): Array(k.derRepresentation)
        }
    }

    /// The key as `openssl pkey -pubout` writes it (64-column base64, trailing newline).
    public var pemText: String { PEMText.encode(spkiDER, label: "PUBLIC KEY") }

    /// model-signing's key hint: lower-case hex SHA-256 of the PEM text.
    public var hint: String { hexString(Array(SHA256.hash(data: Array(pemText.utf8)))) }

    /// SHA-256 of the DER SubjectPublicKeyInfo: the signer's stable identity.
    public var fingerprint: String { hexString(Array(SHA256.hash(data: spkiDER))) }

    public func isValidSignature(der signature: [UInt8], over message: [UInt8]) -> Bool {
        switch self {
        case .p256(let k):
            guard let s = try? P256.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return k.isValidSignature(s, for: message)
        case .p384(let k):
            guard let s = try? P384.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return k.isValidSignature(s, for: message)
        case .p521(let k):
            guard let s = try? P521.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return k.isValidSignature(s, for: message)
        }
    }
}

/// An ECDSA private key (PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY" PEM, unencrypted).
public enum ECDSAPrivateKey: Sendable {
    case p256(P256.Signing.PrivateKey)
    case p384(P384.Signing.PrivateKey)
    case p521(P521.Signing.PrivateKey)

    public init(pem: String) throws(ModelSigningError) {
        if pem.contains("ENCRYPTED PRIVATE KEY") || pem.contains("Proc-Type: 4,ENCRYPTED") {
            throw ModelSigningError(.invalidKey, "the private key is encrypted; decrypt it first (openssl pkey -in K -out K.plain)")
        }
        if let k = try? P256.Signing.PrivateKey(pemRepresentation: pem) {
            self = .p256(k)
        } else if let k = try? P384.Signing.PrivateKey(pemRepresentation: pem) {
            self = .p384(k)
        } else if let k = try? P521.Signing.PrivateKey(pemRepresentation: pem) {
            self = .p521(k)
        } else {
            throw ModelSigningError(.invalidKey, "the private key is not an unencrypted PEM ECDSA key on P-256, P-384 or P-521")
        }
    }

    public var publicKey: ECDSAPublicKey {
        switch self {
        case .p256(let k): .p256(k.publicKey)
        case .p384(let k): .p384(k.publicKey)
        case .p521(let k): .p521(k.publicKey)
        }
    }

    /// DER-encoded ECDSA signature over `message`, hashed with the curve's hash.
    public func signature(over message: [UInt8]) throws(ModelSigningError) -> [UInt8] {
        do {
            switch self {
            case .p256(let k): return Array(try k.signature(for: message).derRepresentation)
            case .p384(let k): return Array(try k.signature(for: message).derRepresentation)
            case .p521(let k): return Array(try k.signature(for: message).derRepresentation)
            }
        } catch {
            throw ModelSigningError(.invalidKey, "signing failed: \(error)")
        }
    }
}

/// Reading PEM bundles of certificates.
public enum CertificatePEM {
    /// Every certificate in a PEM file (one or more "CERTIFICATE" blocks).
    public static func certificates(pem: String, source: String) throws(ModelSigningError) -> [Certificate] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw ModelSigningError(.invalidCertificate, "\(source) is not a PEM file of certificates")
        }
        var out: [Certificate] = []
        for (i, document) in documents.enumerated() where document.discriminator == "CERTIFICATE" {
            do {
                out.append(try Certificate(derEncoded: document.derBytes))
            } catch {
                throw ModelSigningError(.invalidCertificate, "\(source): certificate \(i + 1) is not a valid X.509 certificate")
            }
        }
        guard !out.isEmpty else {
            throw ModelSigningError(.invalidCertificate, "\(source) holds no CERTIFICATE block")
        }
        return out
    }
}

/// PEM text as OpenSSL writes it: 64-column base64 between BEGIN/END lines, trailing newline.
public enum PEMText {
    public static func encode(_ der: [UInt8], label: String) -> String {
        let b64 = Array(Data(der).base64EncodedString().utf8)
        var lines: [String] = []
        var i = 0
        while i < b64.count {
            lines.append(String(decoding: b64[i..<min(i + 64, b64.count)], as: UTF8.self))
            i += 64
        }
        return "-----BEGIN \(label)-----\n" + lines.joined(separator: "\n") + "\n-----END \(label)-----\n"
    }
}
