public import Crypto
import Foundation
import SwiftASN1
public import X509

/// Self-signed P-256 server certificates for keys the node keeps itself (the API's `api-tls` key,
/// the Keylime agent's key): made from a key held in memory, public material only.
public enum SelfSignedCertificate {
    /// A v3 certificate for `key`, valid from five minutes ago for `days`, with the given subject
    /// alternative names (IPv4/IPv6 literals become iPAddress entries) and serverAuth usage.
    public static func make(key: P256.Signing.PrivateKey, organization: String = "SecureNode", commonName: String,
                            hosts: [String], days: Int = 365) throws -> Certificate {
        let name = try DistinguishedName {
            OrganizationName(organization)
            CommonName(commonName)
        }
        var names: [GeneralName] = []
        for host in Set(hosts).sorted() where !host.isEmpty {
            if let bytes = ipAddress(host) {
                names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
            } else if host != "0.0.0.0" && host != "::" {
                names.append(.dnsName(host))
            }
        }
        let now = Date()
        return try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(TimeInterval(days) * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                SubjectAlternativeNames(names)
                try ExtendedKeyUsage([.serverAuth])
            },
            issuerPrivateKey: .init(key))
    }

    /// ``make(key:organization:commonName:hosts:days:)`` as PEM text (with a final newline).
    public static func makePEM(key: P256.Signing.PrivateKey, commonName: String, hosts: [String], days: Int = 365) throws -> String {
        try make(key: key, commonName: commonName, hosts: hosts, days: days).serializeAsPEM().pemString + "\n"
    }

    /// Whether the certificate in `pem` is for `publicKey`, still valid for at least
    /// `minimumValidity` seconds, and names every one of `hosts` (so it is kept, not remade).
    public static func isCurrent(pem: String, for publicKey: P256.Signing.PublicKey, hosts: [String],
                                 minimumValidity: TimeInterval = 86_400) -> Bool {
        guard let certificate = try? Certificate(pemEncoded: pem),
              certificate.publicKey == Certificate.PublicKey(publicKey),
              certificate.notValidAfter > Date().addingTimeInterval(minimumValidity),
              let sans = try? certificate.extensions.subjectAlternativeNames else { return false }
        for host in hosts where !host.isEmpty && host != "0.0.0.0" && host != "::" {
            let wanted: GeneralName = ipAddress(host).map { .ipAddress(ASN1OctetString(contentBytes: ArraySlice($0))) } ?? .dnsName(host)
            guard sans.contains(wanted) else { return false }
        }
        return true
    }

    /// Hex SHA-256 of the certificate's SubjectPublicKeyInfo (DER): the digest that names a TLS key.
    public static func spkiSHA256(_ certificate: Certificate) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate.publicKey)
        return SHA256.hash(data: serializer.serializedBytes).map { String(format: "%02x", $0) }.joined()
    }

    /// The first certificate of a PEM file's text.
    public static func spkiSHA256(pem: String) throws -> String {
        try spkiSHA256(try Certificate(pemEncoded: pem))
    }

    /// IPv4 or IPv6 literal as network-order bytes.
    static func ipAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}
