import Crypto
import Foundation
import ModelSigning
import SwiftASN1
import X509

/// The event a serving node measures for the key of the TLS certificate its API presents: the
/// SHA-256 of the certificate's DER SubjectPublicKeyInfo, extended into the receipt-key PCR right
/// after the process's receipt-key event, and naming that receipt key. A quote over the PCR, with
/// the event log, then proves which TLS key belongs to the process that loaded which model: a client
/// that sees that key in the TLS handshake knows it talks to that process (see `securenode proxy`).
/// A new certificate (rotation) is measured again; the last TLS-key event of a process is its key.
///
/// Canonical bytes: `{"event":"securenode.tls-key.v1","keySHA256":HEX,"profile":ID,"receiptKeySHA256":HEX}`.
public struct TLSKeyMeasurement: Sendable, Equatable {
    public static let eventType = "securenode.tls-key.v1"
    /// SHA-256 (hex) of the TLS certificate's DER SubjectPublicKeyInfo.
    public var keySHA256: String
    public var profile: String
    /// The serving process's receipt key (SHA-256 hex): the process this TLS key belongs to.
    public var receiptKeySHA256: String

    public init(keySHA256: String, profile: String, receiptKeySHA256: String) {
        self.keySHA256 = keySHA256.lowercased()
        self.profile = profile
        self.receiptKeySHA256 = receiptKeySHA256.lowercased()
    }

    public var canonicalBytes: [UInt8] {
        Array(("{\"event\":\"\(Self.eventType)\",\"keySHA256\":\(ModelMeasurement.quote(keySHA256)),"
               + "\"profile\":\(ModelMeasurement.quote(profile)),\"receiptKeySHA256\":\(ModelMeasurement.quote(receiptKeySHA256))}").utf8)
    }

    public var digest: [UInt8] { Array(SHA256.hash(data: canonicalBytes)) }

    public init(canonical bytes: [UInt8]) throws(AttestationError) {
        struct Raw: Decodable { let event: String; let keySHA256: String; let profile: String; let receiptKeySHA256: String }
        guard let raw = try? JSONDecoder().decode(Raw.self, from: Data(bytes)), raw.event == Self.eventType else {
            throw AttestationError(.malformed, "not a \(Self.eventType) event")
        }
        self.init(keySHA256: raw.keySHA256, profile: raw.profile, receiptKeySHA256: raw.receiptKeySHA256)
        guard canonicalBytes == bytes else { throw AttestationError(.malformed, "TLS-key event is not in canonical form") }
    }

    /// SHA-256 (hex) of a DER SubjectPublicKeyInfo.
    public static func keyDigest(spki: [UInt8]) -> String {
        hexString(Array(SHA256.hash(data: spki)))
    }

    /// SHA-256 (hex) of the SubjectPublicKeyInfo of a certificate (DER).
    public static func keyDigest(certificateDER der: [UInt8]) throws(AttestationError) -> String {
        do {
            let certificate = try Certificate(derEncoded: der)
            var serializer = DER.Serializer()
            try serializer.serialize(certificate.publicKey)
            return keyDigest(spki: serializer.serializedBytes)
        } catch {
            throw AttestationError(.malformed, "not an X.509 certificate with a public key: \(error)")
        }
    }

    /// SHA-256 (hex) of the SubjectPublicKeyInfo of the first certificate in PEM text (the leaf of a chain file).
    public static func keyDigest(certificatePEM text: String, source: String) throws(AttestationError) -> String {
        let certificates: [Certificate]
        do {
            certificates = try CertificatePEM.certificates(pem: text, source: source)
        } catch {
            throw AttestationError(.malformed, "\(source): \(error.reason)")
        }
        guard let leaf = certificates.first else { throw AttestationError(.malformed, "\(source) holds no certificate") }
        do {
            var serializer = DER.Serializer()
            try serializer.serialize(leaf.publicKey)
            return keyDigest(spki: serializer.serializedBytes)
        } catch {
            throw AttestationError(.malformed, "\(source): the certificate's public key cannot be encoded")
        }
    }
}

extension EventLogEntry {
    public init(pcr: Int, tlsKey: TLSKeyMeasurement) {
        self.init(pcr: pcr, type: TLSKeyMeasurement.eventType, digest: hexString(tlsKey.digest),
                  event: String(decoding: tlsKey.canonicalBytes, as: UTF8.self))
    }
}
