import Attestation
import Foundation
import ModelSigning
import NIOHTTP1
import X509

/// `securenode enroll`: the orchestrator enrolls a node's AK over the node's enrollment endpoints.
///
/// Over https, the node's certificate is accepted when the system's certificate authorities vouch
/// for it and its host name. Otherwise (a self-signed certificate, as `server.tls: {}` serves) it is
/// accepted only because, and only if, its key is the one the node's evidence binds: the enrollment
/// messages (public keys and a challenge only the TPM can answer; nothing secret) go over that
/// connection, and after the AK is activated, evidence for a fresh nonce is fetched on the same
/// connection and appraised as `securenode verify` does, with the AK just enrolled and the key
/// the certificate carries (`tls-key-bound`); no record is written unless every check passes.
public struct EnrollmentClient: Sendable {
    public let node: URL
    public let profile: FirmwareProfile
    public let verifier: EnrollmentVerifier
    /// The profile's device vendor CAs, for the appraisal of a node whose certificate no CA vouches for.
    public var vendorCAs: [Certificate]

    public init(node: URL, profile: FirmwareProfile, verifier: EnrollmentVerifier, vendorCAs: [Certificate] = []) {
        self.node = node
        self.profile = profile
        self.verifier = verifier
        self.vendorCAs = vendorCAs
    }

    /// How the node's certificate was accepted.
    public enum CertificateAcceptance: Sendable, Equatable {
        case plaintext
        case certificateAuthority
        /// Self-signed (or from an unknown CA): its key (SHA-256 hex) is bound by the node's appraised evidence.
        case boundByEvidence(String)
    }

    public func enroll() async throws -> EnrollmentRecord {
        try await enrollReportingCertificate().record
    }

    public func enrollReportingCertificate() async throws -> (record: EnrollmentRecord, certificate: CertificateAcceptance) {
        let connection: NodeConnection
        var caVerified = node.scheme != "https"
        if node.scheme == "https" {
            do {
                connection = try await NodeConnection.open(url: node, trust: .certificateAuthorities)
                caVerified = true
            } catch {
                connection = try await NodeConnection.open(url: node, trust: .recordOnly)
            }
        } else {
            connection = try await NodeConnection.open(url: node, trust: .plaintext)
        }
        defer { connection.close() }
        let record = try await enroll(over: connection)
        guard !caVerified else { return (record, node.scheme == "https" ? .certificateAuthority : .plaintext) }
        guard let presented = connection.peerKeySHA256 else {
            throw AttestationError(.invalidEnrollment, "the node presented no certificate key")
        }
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let (head, body) = try await connection.fetch(.init(method: .GET, path: path("/v1/attestation") + "?nonce=\(hexString(nonce))"),
                                                      limit: Evidence.maximumSize)
        guard head.status == .ok else {
            throw AttestationError(.invalidEnrollment, "the node's certificate is not from a trusted CA, and it answered \(head.status.code) for evidence")
        }
        let appraisal = await EvidenceVerifier(profile: profile, enrolled: [record], vendorCAs: vendorCAs, presentedTLSKeySHA256: presented)
            .appraiseWithDevices(json: body, nonce: nonce)
        if let failed = appraisal.checks.first(where: { $0.result == .fail }) {
            throw AttestationError(.invalidEnrollment, "the node's TLS certificate is not from a trusted CA, and its evidence does not vouch for it: \(failed.check): \(failed.detail)")
        }
        return (record, .boundByEvidence(presented))
    }

    func path(_ endpoint: String) -> String {
        let base = node.path.hasSuffix("/") ? String(node.path.dropLast()) : node.path
        return base + endpoint
    }

    func enroll(over connection: NodeConnection) async throws -> EnrollmentRecord {
        let identity: EnrollmentIdentity = try await get("/v1/enrollment", connection)
        guard identity.profile == profile.id else {
            throw AttestationError(.invalidEnrollment, "the node runs profile \(identity.profile), not \(profile.id)")
        }
        guard let ekPublic = Data(base64Encoded: identity.ekPublic), let akPublic = Data(base64Encoded: identity.akPublic) else {
            throw AttestationError(.invalidEnrollment, "the node's enrollment identity is not base64")
        }
        let ekCertificate = identity.ekCertificate.flatMap { Data(base64Encoded: $0) }.map(Array.init)
        let subject = try await verifier.checkIdentity(ekPublic: Array(ekPublic), ekCertificate: ekCertificate, akPublic: Array(akPublic))
        let akName = try TPMPublicKey(marshaled: Array(akPublic)).name
        guard hexString(akName) == identity.akName.lowercased() else {
            throw AttestationError(.invalidEnrollment, "the node's AK name does not match its public area")
        }
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let challenge = try CredentialChallenge.make(ekPublic: Array(ekPublic), akName: akName, secret: secret)
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let proof: EnrollmentProof = try await post("/v1/enrollment/activate", connection, EnrollmentChallenge(
            credentialBlob: Data(challenge.credentialBlob).base64EncodedString(),
            encryptedSecret: Data(challenge.encryptedSecret).base64EncodedString(),
            nonce: hexString(nonce)))
        let expected = CredentialChallenge.enrollmentProof(secret: secret, nonce: nonce, akName: akName)
        guard let answered = ModelSigning.bytes(fromHex: proof.proof), constantTimeEquals(answered, expected) else {
            throw AttestationError(.invalidEnrollment, "the node could not activate the credential: its AK is not in the TPM of that EK")
        }
        let formatter = ISO8601DateFormatter()
        return EnrollmentRecord(node: node.absoluteString, profile: profile.id, akName: hexString(akName),
                                akPublic: identity.akPublic, ekCertificateSHA256: hexString(Array(SHA256Hash.of(ekCertificate ?? []))),
                                ekCertificateSubject: subject, enrolledAt: formatter.string(from: Date()))
    }

    func get<T: Decodable>(_ endpoint: String, _ connection: NodeConnection) async throws -> T {
        try await send(.init(method: .GET, path: path(endpoint), headers: [("Accept", "application/json")]), connection)
    }

    func post<B: Encodable, T: Decodable>(_ endpoint: String, _ connection: NodeConnection, _ body: B) async throws -> T {
        try await send(.init(method: .POST, path: path(endpoint), headers: [("Content-Type", "application/json"), ("Accept", "application/json")],
                             body: Array(try JSONEncoder().encode(body))), connection)
    }

    func send<T: Decodable>(_ request: NodeConnection.Request, _ connection: NodeConnection) async throws -> T {
        let (head, data) = try await connection.fetch(request, limit: 1 << 20)
        guard head.status.code == 200 else {
            throw AttestationError(.invalidEnrollment, "\(request.path) answered \(head.status.code): \(String(decoding: data.prefix(500), as: UTF8.self))")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(data))
        } catch {
            throw AttestationError(.invalidEnrollment, "\(request.path) answered malformed JSON")
        }
    }
}
