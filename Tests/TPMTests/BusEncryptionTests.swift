import TPMTestSupport
import Attestation
import Crypto
import Foundation
import ModelSigning
import NodeCore
import SoftwareTPM
import Testing
import TPM

/// Secrets do not cross the bus in clear: a capture of every byte between the node and swtpm (a
/// recording relay on the TCTI's TCP connection) never holds a sealed secret or an activated
/// credential, because seal, unseal and ActivateCredential run with a salted AES-128-CFB session.
@Suite(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct BusEncryptionTests {
    let t: RunningTPM
    let recorder: TPMTrafficRecorder
    let tpm: TPM

    init() async throws {
        t = try await RunningTPM()
        recorder = try TPMTrafficRecorder(upstreamPort: t.swtpm.port)
        tpm = TPM(tcti: recorder.tcti)
    }

    @Test func captureSeesCommandsInClear() async throws {
        // The capture works: an unencrypted command's parameter (a PCR extend's digest) is in it.
        let marker = (0..<32).map { _ in UInt8.random(in: 0...255) }
        try await tpm.extend(pcr: 7, sha256: marker)
        let seen = recorder.captured.containsBytes(marker)
        #expect(seen)
    }

    @Test func sealedSecretNeverCrossesTheBusInClear() async throws {
        let secret = (0..<48).map { _ in UInt8.random(in: 0...255) }
        let sealer = Sealer(tpm: tpm, profile: try FirmwareProfile.load(path: EvidenceAppraisalTests.profilePath))
        let sealed = try await sealer.seal(secret, authorizationKey: nil)
        #expect(try await sealer.unseal(sealed, approvals: [], authorizationKey: nil) == secret)
        let captured = recorder.captured
        #expect(captured.count > 1000)
        let leaked = captured.containsBytes(Array(secret.prefix(16)))
        #expect(!leaked, "the sealed secret crossed the TCTI in clear")
    }

    @Test func activatedCredentialNeverCrossesTheBusInClear() async throws {
        let ek = try await tpm.endorsementKey()
        let ak = try await tpm.attestationKey(.rsa2048, persistentHandle: 0x8101_0002)
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let challenge = try CredentialChallenge.make(ekPublic: ek.publicArea, akName: try TPMPublicKey(marshaled: ak.publicArea).name, secret: secret)
        let recovered = try await tpm.activateCredential(attestationKeyHandle: ak.persistentHandle, credentialBlob: challenge.credentialBlob,
                                                         encryptedSecret: challenge.encryptedSecret)
        #expect(recovered == secret)
        let leaked = recorder.captured.containsBytes(Array(secret.prefix(16)))
        #expect(!leaked, "the activated credential crossed the TCTI in clear")
    }
}
