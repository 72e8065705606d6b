import TPMTestSupport
import Attestation
import Crypto
import Foundation
import ModelSigning
import NodeCore
import Testing
import TPM

@Suite(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct SealingTests {
    let t: RunningTPM
    let sealer: Sealer
    let secret = Array("node receipt key: 0123456789abcdef".utf8)

    init() async throws {
        t = try await RunningTPM()
        sealer = Sealer(tpm: t.tpm, profile: try FirmwareProfile.load(path: EvidenceAppraisalTests.profilePath))
    }

    @Test func sealsAndUnsealsUnderUnchangedPCRs() async throws {
        let sealed = try await sealer.seal(secret, authorizationKey: nil)
        #expect(sealed.policy == "pcr")
        #expect(sealed.pcrs == [0, 2, 4, 7, 15])
        #expect(try await sealer.unseal(sealed, approvals: [], authorizationKey: nil) == secret)
    }

    @Test func unsealFailsAfterUnapprovedPCRChange() async throws {
        let sealed = try await sealer.seal(secret, authorizationKey: nil)
        try await t.tpm.extend(pcr: 7, sha256: [UInt8](repeating: 0x07, count: 32))
        await #expect(throws: NodeError.self) { try await sealer.unseal(sealed, approvals: [], authorizationKey: nil) }
    }

    @Test func policyAuthorizeLetsThePublisherApproveAFirmwareUpdate() async throws {
        let publisher = P256.Signing.PrivateKey()
        let sealed = try await sealer.seal(secret, authorizationKey: publisher.publicKey)
        #expect(sealed.policy == "authorize")
        // The publisher approves today's values; the node unseals with that approval.
        let today = try PolicyApproval(values: try await t.tpm.pcrValues(sealed.pcrs), key: publisher)
        #expect(try await sealer.unseal(sealed, approvals: [today], authorizationKey: publisher.publicKey) == secret)

        // A firmware update changes PCR 0: the old approval no longer covers the platform...
        try await t.tpm.extend(pcr: 0, sha256: [UInt8](repeating: 0xF0, count: 32))
        await #expect(throws: NodeError.self) {
            try await sealer.unseal(sealed, approvals: [today], authorizationKey: publisher.publicKey)
        }
        // ...until the publisher approves the new values: the same blob unseals, no resealing.
        let updated = try PolicyApproval(values: try await t.tpm.pcrValues(sealed.pcrs), key: publisher)
        #expect(try await sealer.unseal(sealed, approvals: [today, updated], authorizationKey: publisher.publicKey) == secret)
    }

    @Test func approvalFromAnotherKeyIsRefused() async throws {
        let publisher = P256.Signing.PrivateKey()
        let impostor = P256.Signing.PrivateKey()
        let sealed = try await sealer.seal(secret, authorizationKey: publisher.publicKey)
        let forged = try PolicyApproval(values: try await t.tpm.pcrValues(sealed.pcrs), key: impostor)
        await #expect(throws: NodeError.self) {
            try await sealer.unseal(sealed, approvals: [forged], authorizationKey: publisher.publicKey)
        }
        // Even presented as the publisher's key name, the TPM itself checks the signature.
        var relabelled = forged
        relabelled.keyName = sealed.authorizationKeyName!
        let (keyPublic, _) = PolicyDigests.externalSigningKey(publisher.publicKey)
        await #expect(throws: TPMError.self) {
            try await t.tpm.unseal(SealedObject(publicArea: Array(Data(base64Encoded: sealed.public)!),
                                                privateArea: Array(Data(base64Encoded: sealed.private)!)),
                                   pcrs: sealed.pcrs,
                                   authorization: PolicyAuthorization(keyPublic: keyPublic,
                                                                      approvedPolicy: ModelSigning.bytes(fromHex: relabelled.approvedPolicy)!,
                                                                      signature: ModelSigning.bytes(fromHex: relabelled.signature)!))
        }
    }

    @Test func softwarePolicyDigestMatchesTheTPMs() async throws {
        // The publisher computes PolicyPCR digests without a TPM: they must equal the TPM's own.
        let values = try await t.tpm.pcrValues([0, 2, 4, 7, 15])
        let predicted = PolicyDigests.policyPCR(values: values)
        let sealed = try await t.tpm.seal(secret, authPolicy: predicted)
        #expect(try await t.tpm.unseal(sealed, pcrs: [0, 2, 4, 7, 15], authorization: nil) == secret)
    }

    @Test func sealedFilesAreOwnerOnlyAndAtomic() throws {
        let path = t.file("sealed.json")
        try Sealer.writeOwnerOnly(Array("first".utf8), to: path)
        try Sealer.writeOwnerOnly(Array("second".utf8), to: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(FileManager.default.contents(atPath: path) == Data("second".utf8))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: t.directory.path).filter { $0.hasSuffix(".tmp") }
        #expect(leftovers.isEmpty)
    }
}
