import Crypto
import Foundation
import Testing
import X509
@testable import ModelSigning

@Suite struct CertificateMethodTests {
    let scratch: Scratch
    let model: String
    let pki: TestPKI

    init() throws {
        scratch = try Scratch()
        model = try scratch.makeModel()
        pki = try TestPKI()
    }

    func sign(with leaf: TestPKI.Issued, chain: [Certificate]? = nil) throws -> SigstoreBundle {
        try ModelSigner.sign(model: model, key: .p256(leaf.key), certificateChain: chain ?? [leaf.certificate, pki.intermediate.certificate])
    }

    func verify(_ bundle: SigstoreBundle, trusting roots: [Certificate]? = nil) async throws -> VerifiedModel {
        try await ModelVerifier.verify(model: model, bundle: bundle,
                                       trust: .certificates(CertificateTrust(trustedRoots: roots ?? [pki.root.certificate])))
    }

    func expectRefusal(_ code: ModelSigningError.Code, _ bundle: SigstoreBundle, trusting roots: [Certificate]? = nil,
                       sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            _ = try await verify(bundle, trusting: roots)
            Issue.record("expected refusal \(code), but the model verified", sourceLocation: sourceLocation)
        } catch let error as ModelSigningError {
            #expect(error.code == code, "\(error.reason)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func verifiesChainToTrustedRoot() async throws {
        let leaf = try pki.leaf()
        let verified = try await verify(try sign(with: leaf))
        guard case .certificate(let subject, let fingerprint, let root) = verified.signer else {
            Issue.record("expected a certificate signer")
            return
        }
        #expect(subject.contains("model publisher"))
        #expect(root.contains("Root CA"))
        #expect(fingerprint == ECDSAPublicKey.p256(leaf.key.publicKey).fingerprint)
    }

    @Test func acceptsDigitalSignatureKeyUsageWithoutEKU() async throws {
        _ = try await verify(try sign(with: try pki.leaf(.digitalSignatureOnly)))
    }

    @Test func refusesUntrustedRoot() async throws {
        let otherPKI = try TestPKI(name: "Someone Else")
        await expectRefusal(.untrustedCertificate, try sign(with: try pki.leaf()), trusting: [otherPKI.root.certificate])
    }

    @Test func refusesChainMissingIntermediate() async throws {
        let leaf = try pki.leaf()
        await expectRefusal(.untrustedCertificate, try sign(with: leaf, chain: [leaf.certificate]))
    }

    @Test func refusesSelfIssuedLeafPosingAsPublisher() async throws {
        // A leaf that names the real intermediate as issuer but is signed by another key.
        let forger = TestPKI.Issued(key: P256.Signing.PrivateKey(), certificate: pki.intermediate.certificate)
        let forged = try TestPKI.issue(subject: "model publisher", by: forger)
        await expectRefusal(.untrustedCertificate, try sign(with: forged))
    }

    @Test func refusesTLSServerCertificate() async throws {
        await expectRefusal(.certificatePurpose, try sign(with: try pki.leaf(.tlsServer)))
    }

    @Test func refusesCertificateWithoutSigningPurpose() async throws {
        await expectRefusal(.certificatePurpose, try sign(with: try pki.leaf(.none)))
    }

    @Test func acceptsCertificateThatExpiredAfterSigning() async throws {
        // No timestamp in the bundle: validity is checked at the leaf's notBefore (as model-signing does).
        let leaf = try pki.leaf(notBefore: Date().addingTimeInterval(-7200), notAfter: Date().addingTimeInterval(-3600))
        _ = try await verify(try sign(with: leaf))
    }

    @Test func refusesKeyBundleCheckedAgainstCertificates() async throws {
        let bundle = try ModelSigner.sign(model: model, key: .p256(P256.Signing.PrivateKey()))
        await expectRefusal(.verificationMaterialMismatch, bundle)
    }

    @Test func refusesPrivateKeyThatIsNotTheCertificates() throws {
        let leaf = try pki.leaf()
        #expect(throws: ModelSigningError(.keyMismatch, "")) {
            try ModelSigner.sign(model: model, key: .p256(P256.Signing.PrivateKey()),
                                 certificateChain: [leaf.certificate, pki.intermediate.certificate])
        }
    }

    @Test func refusesGarbageCertificateInBundle() async throws {
        var bundle = try sign(with: try pki.leaf())
        bundle.verificationMaterial = .certificateChain([[0x30, 0x03, 0x02, 0x01, 0x01]])
        await expectRefusal(.invalidCertificate, bundle)
    }

    @Test func refusesTamperedFileUnderCertificateMethod() async throws {
        let bundle = try sign(with: try pki.leaf())
        try scratch.write("model/config.json", "{\"architecture\": \"evil\"}\n")
        await expectRefusal(.hashMismatch, bundle)
    }
}
