import Crypto
import Foundation
import SwiftASN1
import X509

/// Test-only certificate authorities and signing certificates, generated fresh in every test run.
/// Nothing here is a real key; nothing is committed.
struct TestPKI {
    struct Issued {
        let key: P256.Signing.PrivateKey
        let certificate: Certificate
        var pem: String { (try? certificate.serializeAsPEM().pemString) ?? "" }
        var keyPEM: String { key.pemRepresentation }
    }

    let root: Issued
    let intermediate: Issued

    init(name: String = "SecureNode Test") throws {
        let rootKey = P256.Signing.PrivateKey()
        let rootName = try DistinguishedName { CommonName("\(name) Root CA") }
        let rootCert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(rootKey.publicKey),
            notValidBefore: Date().addingTimeInterval(-2 * 86_400), notValidAfter: Date().addingTimeInterval(86_400 * 365),
            issuer: rootName, subject: rootName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(rootKey))
        root = Issued(key: rootKey, certificate: rootCert)
        intermediate = try Self.issue(subject: "\(name) Intermediate CA", by: root, isCA: true,
                                    notBefore: Date().addingTimeInterval(-86_400), notAfter: Date().addingTimeInterval(86_400 * 30))
    }

    enum Purpose { case codeSigning, digitalSignatureOnly, tlsServer, none }

    static func issue(subject: String, by issuer: Issued, isCA: Bool = false, purpose: Purpose = .codeSigning,
                      notBefore: Date = Date().addingTimeInterval(-600), notAfter: Date = Date().addingTimeInterval(86_400)) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let extensions: Certificate.Extensions
        if isCA {
            extensions = try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            }
        } else {
            switch purpose {
            case .codeSigning:
                extensions = try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.codeSigning])
                }
            case .digitalSignatureOnly:
                extensions = try Certificate.Extensions {
                    Critical(KeyUsage(digitalSignature: true))
                }
            case .tlsServer:
                extensions = try Certificate.Extensions {
                    Critical(KeyUsage(keyEncipherment: true))
                    try ExtendedKeyUsage([.serverAuth])
                }
            case .none:
                extensions = try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                }
            }
        }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: notBefore, notValidAfter: notAfter,
            issuer: issuer.certificate.subject, subject: try DistinguishedName { CommonName(subject) },
            signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: .init(issuer.key))
        return Issued(key: key, certificate: cert)
    }

    func leaf(_ purpose: Purpose = .codeSigning, notBefore: Date = Date().addingTimeInterval(-600),
              notAfter: Date = Date().addingTimeInterval(86_400)) throws -> Issued {
        try Self.issue(subject: "model publisher", by: intermediate, purpose: purpose, notBefore: notBefore, notAfter: notAfter)
    }
}
