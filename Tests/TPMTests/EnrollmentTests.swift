import TPMTestSupport
import Attestation
import Crypto
import X509
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import ModelSigning
import NodeCore
import NodeHTTP
import SoftwareTPM
import Testing
import TPM

/// The enrollment protocol end to end: a node served over HTTP on a real swtpm, enrolled by the
/// orchestrator's client, then attested with the enrollment record.
@Suite(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct EnrollmentTests {
    /// Runs the node's HTTP server on a free loopback port for the duration of `body`.
    static func withNode(_ attestor: Attestor, activationsPerMinute: Int = 10, _ body: @Sendable (URL) async throws -> Void) async throws {
        let readiness = Readiness()
        await readiness.set(ready: true, reason: "test")
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let routes = NodeRoutes(attestor: attestor, readiness: readiness, activationsPerMinute: activationsPerMinute)
        let app = NodeServer.application(routes: routes, host: "127.0.0.1", port: 0) {
            continuation.yield($0)
        }
        let server = Task { try await app.run() }
        defer { server.cancel() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw NodeError("server did not start") }
        try await body(URL(string: "http://127.0.0.1:\(port)")!)
    }

    func node() async throws -> (RunningTPM, Attestor, [Certificate]) {
        let t = try await RunningTPM()
        var profile = try FirmwareProfile.load(path: EvidenceAppraisalTests.profilePath)
        let key = ECDSAPrivateKey.p256(.init())
        profile.modelSigners = [.init(name: "test", publicKeyFingerprint: key.publicKey.fingerprint)]
        let attestor = Attestor(tpm: t.tpm, profile: profile, store: EventLogStore(directory: t.directory.appendingPathComponent("state")))
        let dir = t.directory.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("w".utf8).write(to: dir.appendingPathComponent("w.gguf"))
        try await attestor.measure(try await ModelVerifier.verify(model: dir.path, bundle: try ModelSigner.sign(model: dir.path, key: key),
                                                                  trust: .publicKey(key.publicKey)))
        let cas = try EnrollmentVerifier.loadCAs(t.swtpm.caCertificates.map(\.path), relativeTo: t.directory).certificates
        return (t, attestor, cas)
    }

    @Test func enrolledAKIsTrustedByVerify() async throws {
        let (t, attestor, cas) = try await node()
        defer { withExtendedLifetime(t) {} }
        try await Self.withNode(attestor) { url in
            let record = try await EnrollmentClient(node: url, profile: attestor.profile, verifier: EnrollmentVerifier(trustedCAs: cas)).enroll()
            #expect(record.profile == "swtpm-dev")
            let nonce = (0..<16).map { _ in UInt8.random(in: 0...255) }
            var request = URLRequest(url: url.appendingPathComponent("/v1/attestation"))
            request.url = URL(string: url.absoluteString + "/v1/attestation?nonce=\(hexString(nonce))")
            let (data, _) = try await URLSession.shared.data(for: request)
            let appraisal = EvidenceVerifier(profile: attestor.profile, enrolled: [record]).appraise(json: Array(data), nonce: nonce)
            #expect(appraisal.result == .pass, "\(appraisal.checks)")
            // Without the record, the same evidence is refused: the AK is not trusted.
            #expect(EvidenceVerifier(profile: attestor.profile).appraise(json: Array(data), nonce: nonce).failedCheck == "ak-trusted")
        }
    }

    @Test func refusesEKCertificateFromAnUntrustedCA() async throws {
        let (t, attestor, _) = try await node()
        defer { withExtendedLifetime(t) {} }
        let other = try await RunningTPM()  // its own copy of the template CA: re-provision to get a different CA
        let (swtpm, state) = (other.swtpm, other.directory)
        try await offPool {
            swtpm.stop()
            for item in ["tpm", "ca"] { try FileManager.default.removeItem(at: state.appendingPathComponent(item)) }
            try swtpm.provision()
        }
        let foreignCAs = try EnrollmentVerifier.loadCAs(other.swtpm.caCertificates.map(\.path), relativeTo: other.directory).certificates
        try await Self.withNode(attestor) { url in
            await #expect(throws: AttestationError.self) {
                try await EnrollmentClient(node: url, profile: attestor.profile, verifier: EnrollmentVerifier(trustedCAs: foreignCAs)).enroll()
            }
        }
    }

    @Test func malformedActivationRequestsGetClearErrors() async throws {
        let (t, attestor, _) = try await node()
        defer { withExtendedLifetime(t) {} }
        try await Self.withNode(attestor) { url in
            for body in ["", "{", "{\"credentialBlob\": \"***\", \"encryptedSecret\": \"\"}",
                         "{\"credentialBlob\": \"AAAA\", \"encryptedSecret\": \"AAAA\"}"] {
                var request = URLRequest(url: url.appendingPathComponent("/v1/enrollment/activate"))
                request.httpMethod = "POST"
                request.httpBody = Data(body.utf8)
                let (data, response) = try await URLSession.shared.data(for: request)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                #expect((400..<500).contains(status), "\(body) -> \(status)")
                #expect(String(decoding: data, as: UTF8.self).contains("\"error\""))
            }
            // The node still answers afterwards.
            let (_, response) = try await URLSession.shared.data(from: url.appendingPathComponent("/healthz"))
            #expect((response as? HTTPURLResponse)?.statusCode == 200)
        }
    }

    static func post(_ url: URL, _ body: [String: String]) async throws -> (status: Int, text: String) {
        var request = URLRequest(url: url.appendingPathComponent("/v1/enrollment/activate"))
        request.httpMethod = "POST"
        request.httpBody = try JSONSerialization.data(withJSONObject: body)
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    @Test func activationIsNotAnOracleForAForeignUUID() async throws {
        try #require(TPMTools.tpm2Tools, "tpm2-tools is not installed")
        let (t, attestor, _) = try await node()
        defer { withExtendedLifetime(t) {} }
        // The attacker knows the node's EK and AK (GET /v1/enrollment) and plays a Keylime registrar's
        // challenge for another agent id: MakeCredential with tpm2-tools, offline.
        let ek = try await t.tpm.endorsementKey()
        let ak = try await t.tpm.attestationKey(.rsa2048, persistentHandle: 0x8101_0002)
        let akName = try TPMPublicKey(marshaled: ak.publicArea).name
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }
        try Data(ek.publicArea).write(to: URL(fileURLWithPath: t.file("ek.pub")))
        try Data(secret).write(to: URL(fileURLWithPath: t.file("secret.bin")))
        let made = try TPMTools.run("tpm2_makecredential", ["-T", "none", "-u", t.file("ek.pub"), "-s", t.file("secret.bin"),
                                                            "-n", hexString(akName), "-o", t.file("cred.bin")])
        try #require(made.status == 0, "\(made.output)")
        // tpm2-tools' credential file: magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
        let file = Array(try Data(contentsOf: URL(fileURLWithPath: t.file("cred.bin"))))
        try #require(file.count > 12 && file[0..<4] == [0xBA, 0xDC, 0xC0, 0xDE])
        let idSize = Int(file[8]) << 8 | Int(file[9])
        let credentialBlob = Array(file[8..<(10 + idSize)])
        let encryptedSecret = Array(file[(10 + idSize)...])
        let foreignUUID = "d432fbb3-d2f1-4a97-9ef7-75bd81c0ffee"
        let keylimeAnswer = hexString(Array(HMAC<SHA384>.authenticationCode(for: Array(foreignUUID.utf8), using: SymmetricKey(data: secret))))
        try await Self.withNode(attestor) { url in
            let blob = ["credentialBlob": Data(credentialBlob).base64EncodedString(), "encryptedSecret": Data(encryptedSecret).base64EncodedString()]
            // As the registrar's blob comes (no nonce): refused.
            let bare = try await Self.post(url, blob)
            #expect(bare.status == 400, "\(bare)")
            // With a nonce of the attacker's choice: the node activates, but answers only a proof bound
            // to that nonce and its AK; neither the secret nor anything Keylime's registrar accepts.
            let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
            var withNonce = blob
            withNonce["nonce"] = hexString(nonce)
            let answer = try await Self.post(url, withNonce)
            #expect(answer.status == 200, "\(answer)")
            for leaked in [hexString(secret), Data(secret).base64EncodedString(), keylimeAnswer] {
                #expect(!answer.text.lowercased().contains(leaked.lowercased()))
            }
            let proof = try JSONDecoder().decode(EnrollmentProof.self, from: Data(answer.text.utf8)).proof
            #expect(proof == hexString(CredentialChallenge.enrollmentProof(secret: secret, nonce: nonce, akName: akName)))
        }
    }

    @Test func credentialActivationIsRateLimited() async throws {
        let (t, attestor, cas) = try await node()
        defer { withExtendedLifetime(t) {} }
        try await Self.withNode(attestor, activationsPerMinute: 2) { url in
            let client = EnrollmentClient(node: url, profile: attestor.profile, verifier: EnrollmentVerifier(trustedCAs: cas))
            _ = try await client.enroll()
            _ = try await client.enroll()
            await #expect { try await client.enroll() } throws: { "\($0)".contains("429") }
        }
    }
}
