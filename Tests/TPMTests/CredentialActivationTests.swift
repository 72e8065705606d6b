@testable import Attestation
import TPMTestSupport
import Foundation
import ModelSigning
import SoftwareTPM
import Testing
import TPM

/// Software MakeCredential (the orchestrator, no TPM) against a real swtpm's ActivateCredential.
@Suite(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct CredentialActivationTests {
    @Test func tpmRecoversTheCredentialForItsOwnAK() async throws {
        let t = try await RunningTPM()
        let ek = try await t.tpm.endorsementKey()
        let ak = try await t.tpm.attestationKey(.rsa2048, persistentHandle: 0x8101_0002)
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let challenge = try CredentialChallenge.make(ekPublic: ek.publicArea, akName: try TPMPublicKey(marshaled: ak.publicArea).name, secret: secret)
        let recovered = try await t.tpm.activateCredential(attestationKeyHandle: ak.persistentHandle,
                                                           credentialBlob: challenge.credentialBlob,
                                                           encryptedSecret: challenge.encryptedSecret)
        #expect(recovered == secret)
    }

    @Test func credentialForAnotherAKIsRefusedByTheTPM() async throws {
        let t = try await RunningTPM()
        let ek = try await t.tpm.endorsementKey()
        let ak = try await t.tpm.attestationKey(.rsa2048, persistentHandle: 0x8101_0002)
        let other = try await t.tpm.attestationKey(.eccP256, persistentHandle: 0x8101_0003)
        let challenge = try CredentialChallenge.make(ekPublic: ek.publicArea, akName: try TPMPublicKey(marshaled: other.publicArea).name,
                                                     secret: Array("only for the other key".utf8))
        await #expect(throws: TPMError.self) {
            try await t.tpm.activateCredential(attestationKeyHandle: ak.persistentHandle, credentialBlob: challenge.credentialBlob,
                                               encryptedSecret: challenge.encryptedSecret)
        }
    }

    @Test func credentialForAnotherTPMsEKIsRefused() async throws {
        let a = try await RunningTPM()
        let b = try await RunningTPM()  // a copy of the same manufactured state has the same EK: re-provision b
        let (swtpm, state) = (b.swtpm, b.directory.appendingPathComponent("tpm"))
        try await offPool {
            swtpm.stop()
            try FileManager.default.removeItem(at: state)
            try swtpm.start()
        }
        let otherTPM = TPM(tcti: b.swtpm.tcti)
        let ekB = try await otherTPM.endorsementKey()
        let ekA = try await a.tpm.endorsementKey()
        #expect(ekA.publicArea != ekB.publicArea)
        let ak = try await a.tpm.attestationKey(.rsa2048, persistentHandle: 0x8101_0002)
        let challenge = try CredentialChallenge.make(ekPublic: ekB.publicArea, akName: try TPMPublicKey(marshaled: ak.publicArea).name,
                                                     secret: Array("for tpm b".utf8))
        await #expect(throws: TPMError.self) {
            try await a.tpm.activateCredential(attestationKeyHandle: ak.persistentHandle, credentialBlob: challenge.credentialBlob,
                                               encryptedSecret: challenge.encryptedSecret)
        }
    }

    /// Expected values computed independently from TPM 2.0 Part 1, 11.4.10.2 with Python's hmac:
    /// HMAC-SHA256(key, be32(i) || label || 0x00 || contextU || contextV || be32(bits)), concatenated, truncated.
    @Test func kdfaMatchesIndependentlyComputedValues() {
        let key = [UInt8](repeating: 0x11, count: 32)
        #expect(hexString(CredentialChallenge.kdfa(key: key, label: "STORAGE", contextU: [1, 2], contextV: [], bits: 128))
                == "87931c7f74eb3c3d4cbef4c9091c36cc")
        #expect(hexString(CredentialChallenge.kdfa(key: key, label: "INTEGRITY", contextU: [], contextV: [], bits: 256))
                == "94789f5bdf2e06996955def207b39ac5450e89e24dd1474bd9efc38901e2fd81")
        // Two HMAC blocks (counter 1 and 2), truncated to 384 bits.
        #expect(hexString(CredentialChallenge.kdfa(key: key, label: "STORAGE", contextU: [1, 2], contextV: [], bits: 384))
                == "38946d6c5f3ba53ffd2dc0dde57ee1b3d4d745b5a31df95095c46714af36c4dd61d898c732439d38eeef5b6965607633")
    }
}
