import Crypto
import Foundation
import HummingbirdTLS
import ServerHardening
import SwiftASN1
import X509

/// The certificate the agent serves its API with and registers with the registrar (`mtls_cert`):
/// Keylime's verifier and tenant trust exactly that certificate for this agent. Either the
/// operator's (keylime.server_certificate / server_key) or a self-signed P-256 one the node makes
/// on first start and keeps in its state directory (the key file is mode 0600).
public struct AgentTLSIdentity: Sendable {
    public let certificatePEM: String
    public let certificatePath: String
    public let keyPath: String

    /// Loads the configured identity, or the one kept under `directory`, making it when absent or expired.
    public static func load(configuration: KeylimeAgentConfiguration) throws(KeylimeError) -> AgentTLSIdentity {
        if let cert = configuration.serverCertificate, let key = configuration.serverKey {
            guard let data = FileManager.default.contents(atPath: cert), let pem = String(data: data, encoding: .utf8) else {
                throw KeylimeError("cannot read keylime.server_certificate \(cert)")
            }
            return AgentTLSIdentity(certificatePEM: pem, certificatePath: cert, keyPath: key)
        }
        let directory = URL(fileURLWithPath: configuration.stateDirectory).appendingPathComponent("keylime")
        let certPath = directory.appendingPathComponent("agent-cert.pem").path
        let keyPath = directory.appendingPathComponent("agent-key.pem").path
        if let data = FileManager.default.contents(atPath: certPath), let pem = String(data: data, encoding: .utf8),
           FileManager.default.fileExists(atPath: keyPath),
           let certificate = try? Certificate(pemEncoded: pem), certificate.notValidAfter > Date().addingTimeInterval(86_400) {
            return AgentTLSIdentity(certificatePEM: pem, certificatePath: certPath, keyPath: keyPath)
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let key = P256.Signing.PrivateKey()
            let name = try DistinguishedName {
                OrganizationName("SecureNode")
                CommonName("securenode-keylime-agent \(configuration.uuid)")
            }
            var names: [GeneralName] = [.dnsName("localhost")]
            for address in [configuration.contactIP, configuration.host].compactMap({ $0 }) {
                if let bytes = Self.ipv4(address) { names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes)))) }
            }
            let now = Date()
            let certificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
                notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(365 * 86_400),
                issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    SubjectAlternativeNames(names)
                    try ExtendedKeyUsage([.serverAuth])
                },
                issuerPrivateKey: .init(key))
            let pem = try certificate.serializeAsPEM().pemString + "\n"
            // The key first, owner-only from creation.
            guard FileManager.default.createFile(atPath: keyPath, contents: Data(key.pemRepresentation.utf8),
                                                 attributes: [.posixPermissions: 0o600]) else {
                throw KeylimeError("cannot write \(keyPath)")
            }
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyPath)
            guard FileManager.default.createFile(atPath: certPath, contents: Data(pem.utf8), attributes: [.posixPermissions: 0o644]) else {
                throw KeylimeError("cannot write \(certPath)")
            }
            return AgentTLSIdentity(certificatePEM: pem, certificatePath: certPath, keyPath: keyPath)
        } catch let error as KeylimeError {
            throw error
        } catch {
            throw KeylimeError("cannot make the agent's TLS certificate in \(directory.path): \(error)")
        }
    }

    static func ipv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".")
        guard parts.count == 4 else { return nil }
        let bytes = parts.compactMap { UInt8($0) }
        return bytes.count == 4 ? bytes : nil
    }

    /// The server side of mutual TLS: this identity, and client certificates required from `clientCA`.
    public func serverTLS(clientCA: String?) throws(KeylimeError) -> TLSConfiguration {
        do {
            return try ServerTLS.configuration(certificate: certificatePath, privateKey: keyPath, clientCA: clientCA,
                                               fields: .init(certificate: "the agent's TLS certificate", privateKey: "the agent's TLS key",
                                                             clientCA: "keylime.trusted_client_ca"))
        } catch {
            throw KeylimeError(error.description)
        }
    }
}
