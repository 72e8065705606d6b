import Attestation
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ModelSigning

/// `securenode enroll`: the orchestrator enrolls a node's AK over the node's enrollment endpoints.
public struct EnrollmentClient: Sendable {
    public let node: URL
    public let profile: FirmwareProfile
    public let verifier: EnrollmentVerifier

    public init(node: URL, profile: FirmwareProfile, verifier: EnrollmentVerifier) {
        self.node = node
        self.profile = profile
        self.verifier = verifier
    }

    public func enroll() async throws -> EnrollmentRecord {
        let identity: EnrollmentIdentity = try await get("/v1/enrollment")
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
        let proof: EnrollmentProof = try await post("/v1/enrollment/activate", EnrollmentChallenge(
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

    func get<T: Decodable>(_ path: String) async throws -> T {
        try await send(URLRequest(url: node.appendingPathComponent(path)))
    }

    func post<B: Encodable, T: Decodable>(_ path: String, _ body: B) async throws -> T {
        var request = URLRequest(url: node.appendingPathComponent(path))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = try JSONEncoder().encode(body)
        return try await send(request)
    }

    func send<T: Decodable>(_ request: URLRequest) async throws -> T {
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw AttestationError(.invalidEnrollment, "no HTTP response") }
        guard http.statusCode == 200 else {
            throw AttestationError(.invalidEnrollment, "\(request.url?.path ?? "") answered \(http.statusCode): \(String(decoding: data.prefix(500), as: UTF8.self))")
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw AttestationError(.invalidEnrollment, "\(request.url?.path ?? "") answered malformed JSON")
        }
    }
}
