import Crypto
import Foundation
import Testing
@testable import ModelSigning

/// Facts of the model-signing format, checked against independently known values.
@Suite struct FormatTests {
    @Test func preAuthenticationEncodingIsDSSEv1() {
        let pae = DSSE.preAuthenticationEncoding(payload: Array("{}".utf8))
        #expect(String(decoding: pae, as: UTF8.self) == "DSSEv1 28 application/vnd.in-toto+json 2 {}")
    }

    @Test func resourcesSortByPathComponentsLikePython() {
        // model-signing's fixture order: PurePosixPath comparison, component by component, by code point.
        let names = ["sp ace é.txt", "a.txt", "dir/z", "a-b", "B.txt", "a/b"]
        let sorted = names.sorted(by: ModelPath.componentOrder)
        #expect(sorted == ["B.txt", "a/b", "a-b", "a.txt", "dir/z", "sp ace é.txt"])
    }

    @Test func rootDigestIsSHA256OfConcatenatedRawDigests() {
        let a = Array(SHA256.hash(data: Array("a".utf8)))
        let b = Array(SHA256.hash(data: Array("b".utf8)))
        let root = ModelManifest.rootDigest(of: [.init(name: "a", sha256: a), .init(name: "b", sha256: b)])
        #expect(root == Array(SHA256.hash(data: a + b)))
    }

    @Test func keyHintIsSHA256OfOpenSSLPEMText() throws {
        let key = P256.Signing.PrivateKey()
        let pub = ECDSAPublicKey.p256(key.publicKey)
        #expect(pub.pemText.hasSuffix("-----END PUBLIC KEY-----\n"))
        #expect(pub.pemText.split(separator: "\n").allSatisfy { $0.count <= 64 })
        #expect(pub.hint == hexString(Array(SHA256.hash(data: Array(pub.pemText.utf8)))))
        // The PEM we print parses back to the same key.
        #expect(try ECDSAPublicKey(pem: pub.pemText).spkiDER == pub.spkiDER)
    }

    @Test func statementIsASCIIAndParsesBack() throws {
        let manifest = ModelManifest(subjectName: "modèle", resources: [
            .init(name: "z.bin", sha256: [UInt8](repeating: 1, count: 32)),
            .init(name: "é.txt", sha256: [UInt8](repeating: 2, count: 32)),
        ], ignorePaths: [".git", "model.sig"])
        let json = manifest.statementJSON()
        #expect(json.allSatisfy { $0 < 0x80 })
        let parsed = try ModelManifest(statement: json)
        #expect(parsed == manifest)
        #expect(parsed.resources.map(\.name) == ["z.bin", "é.txt"])
    }

    @Test func constantTimeEqualsComparesContentAndLength() {
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(constantTimeEquals([UInt8](), [UInt8]()))
    }

    @Test func hexRoundTrip() {
        let bytes: [UInt8] = [0, 1, 0xab, 0xff]
        #expect(hexString(bytes) == "0001abff")
        #expect(ModelSigning.bytes(fromHex: "0001ABff") == bytes)
        #expect(ModelSigning.bytes(fromHex: "abc") == nil)
        #expect(ModelSigning.bytes(fromHex: "zz") == nil)
    }
}

/// Bundles that are not well-formed are refused with the field named, never a crash.
@Suite struct MalformedBundleTests {
    func refusal(_ text: String) -> ModelSigningError? {
        do {
            _ = try SigstoreBundle(json: Array(text.utf8))
            return nil
        } catch {
            return error
        }
    }

    @Test func refusesNonJSON() {
        #expect(refusal("not json")?.code == .malformedBundle)
        #expect(refusal("")?.code == .malformedBundle)
        #expect(refusal("[]")?.code == .malformedBundle)
    }

    @Test func refusesWrongMediaType() {
        let e = refusal(#"{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.3"}"#)
        #expect(e?.code == .unsupportedMediaType)
    }

    @Test func refusesMissingEnvelope() {
        let e = refusal(#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":""}}}"#)
        #expect(e?.code == .malformedBundle)
        #expect(e?.reason.contains("dsseEnvelope") == true)
    }

    @Test func refusesBadBase64Payload() {
        let e = refusal(#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{}},"dsseEnvelope":{"payload":"***","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AAAA"}]}}"#)
        #expect(e?.code == .malformedBundle)
        #expect(e?.reason.contains("dsseEnvelope.payload") == true)
    }

    @Test func refusesWrongTypes() {
        let e = refusal(#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{}},"dsseEnvelope":{"payload":5,"payloadType":"x","signatures":[]}}"#)
        #expect(e?.reason.contains("must be a JSON string") == true)
    }

    @Test func refusesEmptySignatures() {
        let e = refusal(#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{}},"dsseEnvelope":{"payload":"e30=","payloadType":"x","signatures":[]}}"#)
        #expect(e?.reason.contains("signatures is empty") == true)
    }

    @Test func refusesKeylessSigstoreBundles() {
        let e = refusal(#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"certificate":{"rawBytes":"AA=="}}}"#)
        #expect(e?.code == .unsupportedMediaType)
    }

    @Test func refusesPayloadThatIsNotJSON() {
        #expect(throws: ModelSigningError(.malformedBundle, "")) { try ModelManifest(statement: Array("{".utf8)) }
    }
}
