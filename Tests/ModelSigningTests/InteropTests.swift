import Crypto
import Foundation
import Testing
import X509
@testable import ModelSigning

/// Compatibility both ways with the real `model_signing` tool (PyPI model-signing 1.1.x).
@Suite(.enabled(if: ModelSigningTool.available, "model_signing (PyPI) is not installed; run scripts/setup.sh"))
struct InteropTests {
    let scratch: Scratch
    let model: String
    let keyPath: String
    let publicKeyPath: String
    let key: ECDSAPrivateKey

    init() throws {
        scratch = try Scratch()
        model = try scratch.makeModel()
        let k = ECDSAPrivateKey.p256(.init())
        key = k
        guard case .p256(let raw) = k else { throw ModelSigningError(.invalidKey, "") }
        keyPath = try scratch.write("test-only-signing-key.pem", raw.pemRepresentation)
        publicKeyPath = try scratch.write("publisher.pub.pem", k.publicKey.pemText)
    }

    func run(_ arguments: [String]) throws -> ModelSigningTool.Outcome {
        try ModelSigningTool.run(arguments)
    }

    @Test func weVerifyWhatTheToolSignsWithAKey() async throws {
        let sig = scratch.file("tool.sig")
        let signed = try run(["sign", "key", model, "--private_key", keyPath, "--signature", sig])
        try #require(signed.status == 0, "\(signed.output)")
        let bundle = try SigstoreBundle(json: Array(try Data(contentsOf: URL(fileURLWithPath: sig))))
        let verified = try await ModelVerifier.verify(model: model, bundle: bundle, trust: .publicKey(key.publicKey),
                                                      options: .init(signaturePath: sig))
        #expect(verified.manifest.resources.count == 5)
        // Our own signature over the same model names the same root digest.
        #expect(try ModelSigner.sign(model: model, key: key).payload.count > 0)
        #expect(try ModelManifest(statement: ModelSigner.sign(model: model, key: key).payload).rootDigest
                == verified.manifest.rootDigest)
    }

    @Test func toolVerifiesWhatWeSignWithAKey() throws {
        let sig = scratch.file("ours.sig")
        try Data(try ModelSigner.sign(model: model, key: key, signaturePath: sig).jsonBytes())
            .write(to: URL(fileURLWithPath: sig))
        let outcome = try run(["verify", "key", model, "--public_key", publicKeyPath, "--signature", sig])
        #expect(outcome.status == 0, "\(outcome.output)")
        #expect(outcome.output.contains("Verification succeeded"))
    }

    @Test func toolAndWeBothRefuseATamperedModel() async throws {
        let sig = scratch.file("ours.sig")
        let bundle = try ModelSigner.sign(model: model, key: key, signaturePath: sig)
        try Data(bundle.jsonBytes()).write(to: URL(fileURLWithPath: sig))
        try scratch.write("model/weights/part-1.bin", "changed")
        let outcome = try run(["verify", "key", model, "--public_key", publicKeyPath, "--signature", sig])
        #expect(outcome.status != 0)
        await #expect(throws: ModelSigningError(.hashMismatch, "")) {
            try await ModelVerifier.verify(model: model, bundle: bundle, trust: .publicKey(key.publicKey))
        }
    }

    @Test func weVerifyWhatTheToolSignsWithACertificate() async throws {
        let pki = try TestPKI()
        let leaf = try pki.leaf()
        let leafKey = try scratch.write("test-only-leaf-key.pem", leaf.keyPEM)
        let leafCert = try scratch.write("leaf.pem", leaf.pem)
        let intermediate = try scratch.write("intermediate.pem", pki.intermediate.pem)
        let sig = scratch.file("tool-cert.sig")
        let signed = try run(["sign", "certificate", model, "--private_key", leafKey, "--signing_certificate", leafCert,
                              "--certificate_chain", intermediate, "--signature", sig])
        try #require(signed.status == 0, "\(signed.output)")
        let bundle = try SigstoreBundle(json: Array(try Data(contentsOf: URL(fileURLWithPath: sig))))
        let verified = try await ModelVerifier.verify(
            model: model, bundle: bundle, trust: .certificates(CertificateTrust(trustedRoots: [pki.root.certificate])),
            options: .init(signaturePath: sig))
        #expect(verified.signer.fingerprint == ECDSAPublicKey.p256(leaf.key.publicKey).fingerprint)
    }

    @Test func toolVerifiesWhatWeSignWithACertificate() throws {
        let pki = try TestPKI()
        let leaf = try pki.leaf()
        let root = try scratch.write("root.pem", pki.root.pem)
        let sig = scratch.file("ours-cert.sig")
        let bundle = try ModelSigner.sign(model: model, key: .p256(leaf.key),
                                          certificateChain: [leaf.certificate, pki.intermediate.certificate], signaturePath: sig)
        try Data(bundle.jsonBytes()).write(to: URL(fileURLWithPath: sig))
        let outcome = try run(["verify", "certificate", model, "--certificate_chain", root, "--signature", sig])
        #expect(outcome.status == 0, "\(outcome.output)")
        // And with a root it does not trust, it refuses, as we do.
        let other = try scratch.write("other-root.pem", try TestPKI(name: "Other").root.pem)
        #expect(try run(["verify", "certificate", model, "--certificate_chain", other, "--signature", sig]).status != 0)
    }
}
