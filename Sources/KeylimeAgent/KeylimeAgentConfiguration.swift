import Foundation
import ServerHardening

/// How the node takes part in a Keylime fleet (pull mode): where the registrar is, where the agent
/// API listens, and what it trusts. Built from the `keylime:` section of the node's configuration
/// (deploy/securenode.yaml.example; deploy/keylime/README.md).
public struct KeylimeAgentConfiguration: Sendable, Equatable {
    /// The agent's UUID: the key under which the registrar and the verifier know this node.
    public var uuid: String
    /// The registrar's agent-registration endpoint (plain HTTP, as Keylime serves it), e.g. http://10.0.0.5:8890.
    public var registrar: URL
    /// Address and port the agent API binds (separate from the OpenAI API's listener).
    public var host: String
    public var port: Int
    /// Address and port the verifier and tenant use to reach the agent (default: host and port).
    public var contactIP: String?
    public var contactPort: Int?
    /// Mutual TLS (Keylime's default): clients must present a certificate issued by `trustedClientCA`
    /// (Keylime's CA, cv_ca/cacert.crt). Without it the agent API is plain HTTP, registered as "disabled".
    public var mtls: Bool
    public var trustedClientCA: String?
    /// The agent's TLS certificate and key (PEM). When absent, a self-signed P-256 certificate is made
    /// once and kept under `stateDirectory` (key readable by the node only); it is what the node registers.
    public var serverCertificate: String?
    public var serverKey: String?
    /// The verifier's revocation certificate (PEM, RSA): when set, revocation notices must carry a
    /// valid signature from it; when not, a notice is accepted only over mutual TLS.
    public var revocationCertificate: String?
    /// Where the agent keeps its TLS identity and a delivered payload.
    public var stateDirectory: String
    /// Lab only (`serve --keylime-lab-unauthenticated-revocations`): run with `mtls: false` and no
    /// revocation certificate, where anyone who reaches the agent API can send a revocation notice.
    /// Without it that combination is refused at start.
    public var allowUnauthenticatedRevocations: Bool = false
    /// How old (by its `event_time`) a revocation notice may be and still be believed; older ones,
    /// and any notice seen before, are refused as stale or replayed.
    public var revocationMaxAgeSeconds: Int = 600
    /// Connection cap and deadlines of the agent's listener (the node's server.* settings).
    public var connections: ServerLimits

    public init(uuid: String, registrar: URL, host: String = "127.0.0.1", port: Int = 9002, contactIP: String? = nil,
                contactPort: Int? = nil, mtls: Bool = true, trustedClientCA: String? = nil, serverCertificate: String? = nil,
                serverKey: String? = nil, revocationCertificate: String? = nil, stateDirectory: String,
                connections: ServerLimits = ServerLimits()) {
        self.uuid = uuid
        self.registrar = registrar
        self.host = host
        self.port = port
        self.contactIP = contactIP
        self.contactPort = contactPort
        self.mtls = mtls
        self.trustedClientCA = trustedClientCA
        self.serverCertificate = serverCertificate
        self.serverKey = serverKey
        self.revocationCertificate = revocationCertificate
        self.stateDirectory = stateDirectory
        self.connections = connections
    }

    /// Refuses settings that cannot work, naming the field.
    public func validate() throws(KeylimeError) {
        let allowed = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.")
        guard !uuid.isEmpty, uuid.count <= 255, uuid.allSatisfy({ allowed.contains($0) }) else {
            throw KeylimeError("keylime.uuid must be 1 to 255 characters of letters, digits, '-', '_' or '.'")
        }
        guard registrar.scheme == "http" || registrar.scheme == "https", registrar.host != nil else {
            throw KeylimeError("keylime.registrar must be an http(s) URL, e.g. http://127.0.0.1:8890")
        }
        guard (0...65535).contains(port) else { throw KeylimeError("keylime.port must be 0...65535") }
        if mtls && trustedClientCA == nil {
            throw KeylimeError("keylime.trusted_client_ca is required with mutual TLS (Keylime's CA, cv_ca/cacert.crt); or set keylime.mtls: false")
        }
        if !mtls && revocationCertificate == nil && !allowUnauthenticatedRevocations {
            throw KeylimeError("keylime.mtls: false without keylime.revocation_certificate: anyone who reaches the agent API could send "
                               + "revocation notices; refusing to start. Set keylime.revocation_certificate (the verifier's), or, in a lab only, "
                               + "start with --keylime-lab-unauthenticated-revocations")
        }
        if (serverCertificate == nil) != (serverKey == nil) {
            throw KeylimeError("give both keylime.server_certificate and keylime.server_key, or neither (a self-signed one is made)")
        }
    }
}

/// A Keylime agent failure, with the reason.
public struct KeylimeError: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
