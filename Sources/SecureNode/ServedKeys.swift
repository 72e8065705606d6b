import Attestation
import CProcess
import Crypto
import Foundation
import KeylimeAgent
import NodeCore
import NIOSSL
import NodeService
import ServerHardening

/// What `serve` takes from the node key store (README "Node keys"): the API's TLS identity and the
/// Keylime agent's keys, unsealed by the TPM into memory. The served certificate and its SPKI
/// digest are here, in one place, whichever path (node key or operator files) serves TLS.
struct ServedKeys {
    /// The API's TLS built from the node's `api-tls` key (`server.tls: {}`); nil for plain HTTP or
    /// the operator's files (ServiceApplication loads those).
    var apiTLS: TLSConfiguration?
    /// The certificate the API serves (PEM) and the hex SHA-256 of its SubjectPublicKeyInfo; nil without TLS.
    var apiCertificatePEM: String?
    var apiSPKISHA256: String?
    /// The Keylime agent's TLS and payload keys (when a keylime: section is configured).
    var agent: AgentKeyMaterial?

    /// No core dumps, no ptrace or /proc/<pid>/mem by other processes of the user: the process holds
    /// unsealed private keys (and the model, receipts' key). Best effort: a failure is reported.
    static func hardenProcess() {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        if setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none) != 0 || securenode_set_nondumpable() != 0 {
            StandardError.write("securenode: warning: cannot disable core dumps (\(String(cString: strerror(errno)))): key memory could reach a core file\n")
        }
    }

    /// Opens the key store when TLS uses the node key or Keylime is configured. Keys that do not
    /// exist yet are made here (as `keys init` would) only when no policy-authorization key is
    /// configured: with one, the operator runs `keys init` and gives an approval first.
    static func open(file: ServiceConfig, settings: ServiceSettings, attestor: Attestor, profilePath: String) async throws -> ServedKeys {
        var served = ServedKeys()
        let usesNodeKey = settings.tls?.usesNodeKey == true
        if let tls = settings.tls, let certificate = tls.certificate {
            // Bring your own certificate (weaker: the key is a file the operator protects).
            let pem = try FileText.read(certificate, what: "server.tls.certificate")
            served.apiCertificatePEM = pem
            served.apiSPKISHA256 = try? SelfSignedCertificate.spkiSHA256(pem: pem)
        }
        guard usesNodeKey || file.keylime != nil else { return served }
        let store = NodeKeyStore(stateDirectory: attestor.store.directory, tpm: attestor.tpm, profile: attestor.profile)
        for path in store.legacyClearKeys() {
            StandardError.write("securenode: warning: \(path) holds a private key in the clear from an earlier version; it is no longer used (the TPM keeps the node keys): delete it\n")
        }
        if try store.loadIndex() == nil {
            let policyKey = try policyKey(option: file.keys?.policyKey, profilePath: profilePath, profile: attestor.profile)
            guard policyKey == nil else {
                throw CLIFailure("no node keys in \(store.directory.path) and a policy-authorization key is configured: run `securenode keys init`, "
                                 + "approve the current PCR values (`securenode approve-policy --node-keys`) and list the approval in keys.approvals")
            }
            let index = try await store.initialize(authorizationKey: nil, force: false)
            StandardError.write("securenode: made the node keys (\(index.keys.map(\.name).joined(separator: ", "))) in \(store.directory.path), "
                                + "sealed to PCRs \(index.pcrs) (PCRs \(index.excludedPCRs) the node extends itself left out)\n")
        }
        let keys: NodeKeys
        do {
            keys = try await store.unlock(approvals: try SealedInputs.approvals(file.keys?.approvals ?? []))
        } catch let error as NodeError {
            throw CLIFailure(error.description)
        }
        if file.keylime != nil {
            served.agent = AgentKeyMaterial(tlsKey: keys.keylimeAgentTLS, payloadKey: keys.keylimePayload)
        }
        if usesNodeKey {
            let pem = try certificate(for: keys.apiTLS, store: store, host: settings.host)
            served.apiTLS = try ServerTLS.configuration(certificatePEM: pem, privateKey: keys.apiTLS, clientCA: settings.tls?.clientCA,
                                                        fields: .init(certificate: "the api-tls certificate", privateKey: "node key api-tls",
                                                                      clientCA: "server.tls.client_ca"))
            served.apiCertificatePEM = pem
            served.apiSPKISHA256 = try SelfSignedCertificate.spkiSHA256(pem: pem)
        }
        return served
    }

    /// The self-signed certificate of the api-tls key (public, `<state_dir>/keys/api-tls.crt.pem`):
    /// kept while it is for this key, names the hosts and has a day left; else remade.
    static func certificate(for key: P256.Signing.PrivateKey, store: NodeKeyStore, host: String) throws -> String {
        let path = store.certificatePath(.apiTLS)
        let hosts = ["localhost", "127.0.0.1", "::1", host, ProcessInfo.processInfo.hostName]
        if let data = FileManager.default.contents(atPath: path), let pem = String(data: data, encoding: .utf8),
           SelfSignedCertificate.isCurrent(pem: pem, for: key.publicKey, hosts: hosts) {
            return pem
        }
        let pem = try SelfSignedCertificate.makePEM(key: key, commonName: "securenode api \(ProcessInfo.processInfo.hostName)", hosts: hosts)
        try FileText.writeAtomically(Array(pem.utf8), to: path, permissions: 0o644)
        return pem
    }
}
