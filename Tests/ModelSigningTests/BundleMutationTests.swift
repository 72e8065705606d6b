import Crypto
import Foundation
import Testing
@testable import ModelSigning

/// Structured fuzzing of the bundle parser and verifier: thousands of seeded mutations of a valid
/// bundle. Each must be refused with a ModelSigningError or, if the mutation left the signed content
/// intact (e.g. inside ignored JSON whitespace), verify to the same manifest. Never a crash.
@Suite struct BundleMutationTests {
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test func mutatedBundlesNeverCrashOrVerifyWrongly() async throws {
        let scratch = try Scratch()
        let model = try scratch.makeModel()
        let key = ECDSAPrivateKey.p256(.init())
        let bundle = try ModelSigner.sign(model: model, key: key)
        let original = bundle.jsonBytes()
        let root = try ModelManifest(statement: bundle.payload).rootDigest
        var rng = SplitMix64(state: 0x5EC0_12E0_DE00_0001)
        let interesting: [UInt8] = Array("{}[]\",:0-9eE.\\ntruefalsenull=+/A".utf8) + [0, 0xff, 0x80, 0xc3]
        var refused = 0, accepted = 0
        for _ in 0..<1500 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: bytes[i] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
                case 1: bytes[i] = interesting.randomElement(using: &rng)!
                case 2: bytes.removeSubrange(i..<min(bytes.count, i + Int.random(in: 1...16, using: &rng)))
                case 3: bytes.insert(contentsOf: bytes[i..<min(bytes.count, i + 8)], at: i)
                default: bytes = Array(bytes.prefix(i))
                }
                if bytes.isEmpty { bytes = [0x7b] }
            }
            do {
                let parsed = try SigstoreBundle(json: bytes)
                let verified = try await ModelVerifier.verify(model: model, bundle: parsed, trust: .publicKey(key.publicKey))
                #expect(verified.manifest.rootDigest == root)
                accepted += 1
            } catch {  // typed throws: always a ModelSigningError
                refused += 1
            }
        }
        #expect(refused > 1000)
        #expect(refused + accepted == 1500)
    }
}
