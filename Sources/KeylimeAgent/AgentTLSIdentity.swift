import Crypto
import Foundation
import HummingbirdTLS
import ServerHardening
import X509

/// The certificate the agent serves its API with and registers with the registrar (`mtls_cert`):
/// Keylime's verifier and tenant trust exactly that certificate for this agent. Either the
/// operator's (keylime.server_certificate / server_key: files, the weaker bring-your-own path) or a
/// self-signed one for the node's `keylime-agent-tls` key, which the TPM keeps sealed and the node
/// holds only in memory. The self-signed certificate (public) is kept in
/// `<state_dir>/keylime/agent-cert.pem` and remade when absent, within a day of expiry, or for
/// another key (after `keys rotate`).
public struct AgentTLSIdentity: Sendable {
    enum Key: Sendable {
        case file(String)
        case memory(P256.Signing.PrivateKey)
    }

    public let certificatePEM: String
    public let certificatePath: String
    let key: Key

    /// The configured identity, or the one for `nodeKey`.
    public static func load(configuration: KeylimeAgentConfiguration, nodeKey: P256.Signing.PrivateKey) throws(KeylimeError) -> AgentTLSIdentity {
        if let cert = configuration.serverCertificate, let key = configuration.serverKey {
            guard let data = FileManager.default.contents(atPath: cert), let pem = String(data: data, encoding: .utf8) else {
                throw KeylimeError("cannot read keylime.server_certificate \(cert)")
            }
            return AgentTLSIdentity(certificatePEM: pem, certificatePath: cert, key: .file(key))
        }
        let directory = URL(fileURLWithPath: configuration.stateDirectory).appendingPathComponent("keylime")
        let certPath = directory.appendingPathComponent("agent-cert.pem").path
        let hosts = ["localhost", configuration.contactIP, configuration.host].compactMap { $0 }
        if let data = FileManager.default.contents(atPath: certPath), let pem = String(data: data, encoding: .utf8),
           SelfSignedCertificate.isCurrent(pem: pem, for: nodeKey.publicKey, hosts: hosts) {
            return AgentTLSIdentity(certificatePEM: pem, certificatePath: certPath, key: .memory(nodeKey))
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let pem = try SelfSignedCertificate.makePEM(key: nodeKey, commonName: "securenode-keylime-agent \(configuration.uuid)", hosts: hosts)
            // Public material only: the private key stays in memory.
            unlink(certPath)
            guard FileManager.default.createFile(atPath: certPath, contents: Data(pem.utf8), attributes: [.posixPermissions: 0o644]) else {
                throw KeylimeError("cannot write \(certPath)")
            }
            return AgentTLSIdentity(certificatePEM: pem, certificatePath: certPath, key: .memory(nodeKey))
        } catch let error as KeylimeError {
            throw error
        } catch {
            throw KeylimeError("cannot make the agent's TLS certificate in \(directory.path): \(error)")
        }
    }

    /// The server side of mutual TLS: this identity, and client certificates required from `clientCA`.
    public func serverTLS(clientCA: String?) throws(KeylimeError) -> TLSConfiguration {
        do {
            switch key {
            case .file(let keyPath):
                return try ServerTLS.configuration(certificate: certificatePath, privateKey: keyPath, clientCA: clientCA,
                                                   fields: .init(certificate: "keylime.server_certificate", privateKey: "keylime.server_key",
                                                                 clientCA: "keylime.trusted_client_ca"))
            case .memory(let privateKey):
                return try ServerTLS.configuration(certificatePEM: certificatePEM, privateKey: privateKey, clientCA: clientCA,
                                                   fields: .init(certificate: "the agent's TLS certificate \(certificatePath)",
                                                                 privateKey: "node key keylime-agent-tls", clientCA: "keylime.trusted_client_ca"))
            }
        } catch {
            throw KeylimeError(error.description)
        }
    }
}
