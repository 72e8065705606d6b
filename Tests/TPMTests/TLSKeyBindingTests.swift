import TPMTestSupport
import Attestation
import AttestedProxy
import Crypto
import Foundation
import Hummingbird
import HummingbirdTLS
import ModelSigning
import NIOSSL
import NodeCore
import NodeHTTP
import SoftwareTPM
import SwiftASN1
import Testing
import TPM
import X509

/// The node's TLS key bound into its evidence (a `securenode.tls-key.v1` event after the receipt
/// key's), checked by `tls-key-bound`, and the client's channel that pins it: evidence from a real
/// swtpm, a real TLS server (NIOSSL) with certificates made here, the real `AttestedNode`.
@Suite(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct TLSKeyBindingTests {
    let t: RunningTPM
    let attestor: Attestor
    let model: VerifiedModel
    let nonce: [UInt8] = (0..<16).map { _ in UInt8.random(in: 0...255) }
    let receiptKey = Receipt.keyDigest(P256.Signing.PrivateKey().publicKey)

    init() async throws {
        t = try await RunningTPM()
        var profile = try FirmwareProfile.load(path: EvidenceAppraisalTests.profilePath)
        let publisher = ECDSAPrivateKey.p256(.init())
        profile.modelSigners = [.init(name: "test publisher", publicKeyFingerprint: publisher.publicKey.fingerprint)]
        profile.allowLocalSigners = false
        let dir = t.directory.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("weights".utf8).write(to: dir.appendingPathComponent("w.gguf"))
        model = try await ModelVerifier.verify(model: dir.path, bundle: try ModelSigner.sign(model: dir.path, key: publisher),
                                               trust: .publicKey(publisher.publicKey))
        attestor = Attestor(tpm: t.tpm, profile: profile, store: EventLogStore(directory: t.directory.appendingPathComponent("state")))
        try await attestor.measure(model)
        try await attestor.measureReceiptKey(sha256: receiptKey)
    }

    /// The serving process, its TLS key measured (as `serve` does) when given.
    func serving(tlsKey: String?) async throws -> Attestor {
        if let tlsKey { try await attestor.measureTLSKey(sha256: tlsKey, receiptKeySHA256: receiptKey) }
        return attestor.serving(model: ModelMeasurement(verified: model, profile: attestor.profile.id), receiptKeySHA256: receiptKey, tlsKeySHA256: tlsKey)
    }

    func verifier(trusting evidence: Evidence, presented: String? = nil) -> EvidenceVerifier {
        var profile = attestor.profile
        profile.trustedAKs = [evidence.ak.name]
        return EvidenceVerifier(profile: profile, presentedTLSKeySHA256: presented)
    }

    func trustingProfile() async throws -> FirmwareProfile {
        var profile = attestor.profile
        profile.trustedAKs = [try await attestor.evidence(nonce: nonce).ak.name]
        return profile
    }

    // MARK: - The binding in the evidence

    @Test func bindsTheServedCertificatesKeyToTheServingProcess() async throws {
        let certificate = try TestCertificate()
        let node = try await serving(tlsKey: certificate.keySHA256)
        let evidence = try await node.evidence(nonce: nonce)
        #expect(evidence.tlsKeySHA256 == certificate.keySHA256)
        #expect(evidence.eventLog.last?.type == TLSKeyMeasurement.eventType)
        let appraisal = verifier(trusting: evidence, presented: certificate.keySHA256).appraise(evidence, nonce: nonce)
        #expect(appraisal.result == .pass, "\(appraisal.checks)")
        #expect(appraisal.checks.map(\.check) == EvidenceVerifier.checkNames)
        #expect(appraisal.tlsKeySHA256 == certificate.keySHA256)
        // The key `verify --tls-certificate` computes from the PEM is the one measured.
        #expect(try TLSKeyMeasurement.keyDigest(certificatePEM: certificate.pem, source: "test") == certificate.keySHA256)
    }

    @Test func refusesCertificateNotBoundByEvidence() async throws {
        let bound = try TestCertificate(), other = try TestCertificate()
        let evidence = try await serving(tlsKey: bound.keySHA256).evidence(nonce: nonce)
        let appraisal = verifier(trusting: evidence, presented: other.keySHA256).appraise(evidence, nonce: nonce)
        #expect(appraisal.failedCheck == "tls-key-bound", "\(appraisal.checks)")
    }

    @Test func refusesEvidenceWithoutTLSKeyBinding() async throws {
        let presented = try TestCertificate()
        let evidence = try await serving(tlsKey: nil).evidence(nonce: nonce)
        #expect(evidence.tlsKeySHA256 == nil)
        #expect(verifier(trusting: evidence, presented: presented.keySHA256).appraise(evidence, nonce: nonce).failedCheck == "tls-key-bound")
        // A plain-HTTP node's evidence (and evidence from before TLS keys were bound) still verifies.
        let plain = verifier(trusting: evidence).appraise(evidence, nonce: nonce)
        #expect(plain.result == .pass, "\(plain.checks)")
        #expect(plain.checks.first { $0.check == "tls-key-bound" }?.detail.hasPrefix("no TLS key is bound") == true)
    }

    @Test func refusesTLSKeyClaimedWithoutItsEvent() async throws {
        // The evidence claims a TLS key the log never bound to this process (a forged field).
        var evidence = try await serving(tlsKey: nil).evidence(nonce: nonce)
        let forged = try TestCertificate()
        evidence.tlsKeySHA256 = forged.keySHA256
        #expect(verifier(trusting: evidence, presented: forged.keySHA256).appraise(evidence, nonce: nonce).failedCheck == "tls-key-bound")
    }

    @Test func refusesTLSKeyOfAnotherProcess() async throws {
        // Process A binds its certificate; process B (another receipt key, same TPM) claims A's TLS key.
        let a = try TestCertificate()
        _ = try await serving(tlsKey: a.keySHA256)
        let keyB = Receipt.keyDigest(P256.Signing.PrivateKey().publicKey)
        try await attestor.measureReceiptKey(sha256: keyB)
        let processB = attestor.serving(model: ModelMeasurement(verified: model, profile: attestor.profile.id), receiptKeySHA256: keyB)
        var evidence = try await processB.evidence(nonce: nonce)
        evidence.tlsKeySHA256 = a.keySHA256
        let appraisal = verifier(trusting: evidence, presented: a.keySHA256).appraise(evidence, nonce: nonce)
        #expect(appraisal.failedCheck == "tls-key-bound", "\(appraisal.checks)")
    }

    @Test func refusesRotatedOutTLSKey() async throws {
        // The certificate was rotated (a new TLS-key event for the process): the old key no longer speaks for it.
        let old = try TestCertificate(), new = try TestCertificate()
        _ = try await serving(tlsKey: old.keySHA256)
        let node = try await serving(tlsKey: new.keySHA256)
        var evidence = try await node.evidence(nonce: nonce)
        #expect(verifier(trusting: evidence, presented: new.keySHA256).appraise(evidence, nonce: nonce).result == .pass)
        evidence.tlsKeySHA256 = old.keySHA256
        #expect(verifier(trusting: evidence, presented: old.keySHA256).appraise(evidence, nonce: nonce).failedCheck == "tls-key-bound")
    }

    @Test func refusesTLSKeyEventMovedToAnotherPCR() async throws {
        var evidence = try await serving(tlsKey: try TestCertificate().keySHA256).evidence(nonce: nonce)
        let i = evidence.eventLog.lastIndex { $0.type == TLSKeyMeasurement.eventType }!
        evidence.eventLog[i].pcr = attestor.profile.measurementPCR
        #expect(verifier(trusting: evidence).appraise(evidence, nonce: nonce).failedCheck == "event-log-replay")
    }

    // MARK: - The channel: attested over each connection, pinned

    @Test func attestsOverTheConnectionAndPinsTheBoundKey() async throws {
        let certificate = try TestCertificate()
        let node = try await serving(tlsKey: certificate.keySHA256)
        let profile = try await trustingProfile()
        let receiptKey = self.receiptKey
        try await TLSNode.run(node, certificate: certificate) { url, _ in
            let channel = AttestedNode(configuration: .init(node: url, verifier: EvidenceVerifier(profile: profile)))
            let first = await channel.reattest()
            #expect(try first.get().tlsKeySHA256 == certificate.keySHA256)
            // Pooled connection reused; a new one is pinned and attested again.
            let (c, attested) = try await channel.connection()
            #expect(c.peerKeySHA256 == certificate.keySHA256 && attested.receiptKeySHA256 == receiptKey)
            await channel.release(c)
            #expect(try await channel.reattest().get().tlsKeySHA256 == certificate.keySHA256)
        }
    }

    @Test func refusesCertificateNotBoundByEvidenceOnTheWire() async throws {
        // The node's evidence binds one key; the endpoint presents another certificate (a man in the middle
        // relaying the real node's evidence): refused before anything but the evidence request was sent.
        let bound = try TestCertificate(), presented = try TestCertificate()
        let node = try await serving(tlsKey: bound.keySHA256)
        let profile = try await trustingProfile()
        try await TLSNode.run(node, certificate: presented) { url, seen in
            let channel = AttestedNode(configuration: .init(node: url, verifier: EvidenceVerifier(profile: profile)))
            let result = await channel.reattest()
            guard case .failure(let failure) = result else { Issue.record("attested a certificate the evidence does not bind"); return }
            #expect(failure.check == "evidence:tls-key-bound", "\(failure)")
            await #expect(throws: ChannelFailure.self) { try await channel.connection() }
            #expect(seen.paths().allSatisfy { $0.hasPrefix("/v1/attestation?nonce=") })
        }
    }

    @Test func refusesEvidenceWithoutTLSKeyBindingOnTheWire() async throws {
        let certificate = try TestCertificate()
        let node = try await serving(tlsKey: nil)
        let profile = try await trustingProfile()
        try await TLSNode.run(node, certificate: certificate) { url, _ in
            let channel = AttestedNode(configuration: .init(node: url, verifier: EvidenceVerifier(profile: profile)))
            guard case .failure(let failure) = await channel.reattest() else { Issue.record("attested evidence without a TLS key"); return }
            #expect(failure.check == "evidence:tls-key-bound", "\(failure)")
        }
    }

    @Test func pinnedConnectionRefusesAnyOtherCertificateInTheHandshake() async throws {
        // Even a certificate with another key for the same address gets no request: the handshake fails.
        let bound = try TestCertificate(), other = try TestCertificate()
        let node = try await serving(tlsKey: bound.keySHA256)
        try await TLSNode.run(node, certificate: other) { url, seen in
            await #expect(throws: NodeConnection.Refused.self) {
                _ = try await NodeConnection.open(url: url, trust: .pinned(bound.keySHA256))
            }
            #expect(seen.paths().isEmpty)
            let recorded = try await NodeConnection.open(url: url, trust: .recordOnly)
            #expect(recorded.peerKeySHA256 == other.keySHA256)
            recorded.close()
        }
    }
}

/// A self-signed P-256 certificate for 127.0.0.1, made for one test.
struct TestCertificate {
    let key = P256.Signing.PrivateKey()
    let der: [UInt8]
    let pem: String
    let keySHA256: String

    init() throws {
        let name = try DistinguishedName { CommonName("127.0.0.1") }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-60), notValidAfter: Date().addingTimeInterval(3600),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { SubjectAlternativeNames([.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))]) },
            issuerPrivateKey: .init(key))
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        der = serializer.serializedBytes
        pem = try certificate.serializeAsPEM().pemString
        keySHA256 = try TLSKeyMeasurement.keyDigest(certificateDER: der)
    }

    var tlsConfiguration: TLSConfiguration {
        get throws {
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: [.certificate(try NIOSSLCertificate(bytes: der, format: .der))],
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem)))
            configuration.minimumTLSVersion = .tlsv12
            return configuration
        }
    }
}

/// The node's routes over TLS with a given certificate, on a free loopback port; records the request targets it saw.
enum TLSNode {
    /// The request targets the server saw.
    final class Seen: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: [String] = []
        func append(_ path: String) { lock.withLock { seen.append(path) } }
        func paths() -> [String] { lock.withLock { seen } }
    }

    static func run(_ attestor: Attestor, certificate: TestCertificate, _ body: @Sendable (URL, Seen) async throws -> Void) async throws {
        let readiness = Readiness()
        await readiness.set(ready: true, reason: "test")
        let seen = Seen()
        let router = Router()
        router.add(middleware: Recorder(seen: seen))
        NodeRoutes(attestor: attestor, readiness: readiness).register(on: router)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, server: try .tls(.http1(), tlsConfiguration: try certificate.tlsConfiguration),
                              configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) })
        let server = Task { try await app.run() }
        defer { server.cancel() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw NodeError("server did not start") }
        try await body(URL(string: "https://127.0.0.1:\(port)")!, seen)
    }

    struct Recorder<Context: RequestContext>: RouterMiddleware {
        let seen: Seen
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            seen.append(request.uri.description)
            return try await next(request, context)
        }
    }
}
