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

    /// The publisher's approval of `values` for this node's profile.
    func approve(_ values: [Int: [UInt8]], _ key: P256.Signing.PrivateKey) throws -> PolicyApproval {
        try PolicyApproval(values: values, key: key, profile: sealer.profile.id, sealPCRs: sealer.profile.seal.pcrs)
    }

    func object(_ sealed: SealedSecretFile) -> SealedObject {
        SealedObject(publicArea: Array(Data(base64Encoded: sealed.public)!), privateArea: Array(Data(base64Encoded: sealed.private)!))
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
        let today = try approve(try await t.tpm.pcrValues(sealed.pcrs), publisher)
        #expect(try await sealer.unseal(sealed, approvals: [today], authorizationKey: publisher.publicKey) == secret)

        // A firmware update changes PCR 0: the old approval no longer covers the platform...
        try await t.tpm.extend(pcr: 0, sha256: [UInt8](repeating: 0xF0, count: 32))
        await #expect(throws: NodeError.self) {
            try await sealer.unseal(sealed, approvals: [today], authorizationKey: publisher.publicKey)
        }
        // ...until the publisher approves the new values: the same blob unseals, no resealing.
        let updated = try approve(try await t.tpm.pcrValues(sealed.pcrs), publisher)
        #expect(try await sealer.unseal(sealed, approvals: [today, updated], authorizationKey: publisher.publicKey) == secret)
    }

    @Test func approvalFromAnotherKeyIsRefused() async throws {
        let publisher = P256.Signing.PrivateKey()
        let impostor = P256.Signing.PrivateKey()
        let sealed = try await sealer.seal(secret, authorizationKey: publisher.publicKey)
        let forged = try approve(try await t.tpm.pcrValues(sealed.pcrs), impostor)
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
                                                                      signature: ModelSigning.bytes(fromHex: relabelled.signature)!,
                                                                      policyRef: ModelSigning.bytes(fromHex: relabelled.policyRef)!))
        }
    }

    @Test func refusesApprovalForResettablePCR() async throws {
        // The exact attack: the publisher once signed PCR 23 = zeros (an approval with no purpose,
        // as every approval was before policyRef). PCR 23 is reset to zeros, the sealed file edited
        // to select [23]: the approval "matches", and must still unseal nothing.
        let publisher = P256.Signing.PrivateKey()
        let sealed = try await sealer.seal(secret, authorizationKey: publisher.publicKey)
        let zeros: [Int: [UInt8]] = [23: [UInt8](repeating: 0, count: 32)]
        let policy = PolicyDigests.policyPCR(values: zeros)
        let legacySignature = Array(try publisher.signature(for: policy).rawRepresentation)
        var stolen = try approve(try await t.tpm.pcrValues(sealed.pcrs), publisher)
        stolen.pcrs = ["23": hexString(zeros[23]!)]
        stolen.approvedPolicy = hexString(policy)
        stolen.signature = hexString(legacySignature)
        try await t.tpm.extend(pcr: 23, sha256: [UInt8](repeating: 0x23, count: 32))
        try await t.tpm.reset(pcr: 23)
        var edited = sealed
        edited.pcrs = [23]
        // The node takes the PCR selection from its profile, not the file.
        await #expect(throws: NodeError.self) {
            try await sealer.unseal(edited, approvals: [stolen], authorizationKey: publisher.publicKey)
        }
        // The TPM itself refuses, with or without the policyRef: the approval does not sign it.
        let (keyPublic, _) = PolicyDigests.externalSigningKey(publisher.publicKey)
        let ref = PolicyDigests.sealPolicyRef(profile: sealer.profile.id, pcrs: sealer.profile.seal.pcrs)
        for policyRef in [[], ref] {
            await #expect(throws: TPMError.self) {
                try await t.tpm.unseal(object(sealed), pcrs: [23],
                                       authorization: PolicyAuthorization(keyPublic: keyPublic, approvedPolicy: policy,
                                                                          signature: legacySignature, policyRef: policyRef))
            }
        }
        // And the publisher tool no longer signs such an approval: PCR 23 is resettable.
        #expect(throws: AttestationError.self) {
            try PolicyApproval(values: zeros, key: publisher, profile: sealer.profile.id, sealPCRs: [23])
        }
    }

    @Test func refusesApprovalOverFewerPCRs() async throws {
        let publisher = P256.Signing.PrivateKey()
        let sealed = try await sealer.seal(secret, authorizationKey: publisher.publicKey)
        var fewer = try await t.tpm.pcrValues(sealed.pcrs)
        fewer.removeValue(forKey: 15)
        // The publisher tool refuses...
        #expect(throws: AttestationError.self) { try approve(fewer, publisher) }
        // ...and a hand-made approval over fewer PCRs (signed with the right policyRef) is refused by the node...
        let ref = PolicyDigests.sealPolicyRef(profile: sealer.profile.id, pcrs: sealer.profile.seal.pcrs)
        let policy = PolicyDigests.policyPCR(values: fewer)
        var weak = try approve(try await t.tpm.pcrValues(sealed.pcrs), publisher)
        weak.pcrs = Dictionary(uniqueKeysWithValues: fewer.map { (String($0.key), hexString($0.value)) })
        weak.approvedPolicy = hexString(policy)
        weak.signature = hexString(Array(try publisher.signature(for: policy + ref).rawRepresentation))
        var edited = sealed
        edited.pcrs = [0, 2, 4, 7]
        await #expect(throws: NodeError.self) { try await sealer.unseal(edited, approvals: [weak], authorizationKey: publisher.publicKey) }
        await #expect(throws: NodeError.self) { try await sealer.unseal(sealed, approvals: [weak], authorizationKey: publisher.publicKey) }
    }

    @Test func refusesApprovalForAnotherPurpose() async throws {
        // An approval the publisher signed for another profile (same PCRs, same values) unseals nothing here.
        let publisher = P256.Signing.PrivateKey()
        let sealed = try await sealer.seal(secret, authorizationKey: publisher.publicKey)
        let values = try await t.tpm.pcrValues(sealed.pcrs)
        let other = try PolicyApproval(values: values, key: publisher, profile: "another-profile", sealPCRs: sealer.profile.seal.pcrs)
        await #expect(throws: NodeError.self) { try await sealer.unseal(sealed, approvals: [other], authorizationKey: publisher.publicKey) }
        // Relabelled as this profile's, the TPM refuses: the signature covers the other policyRef.
        let (keyPublic, _) = PolicyDigests.externalSigningKey(publisher.publicKey)
        await #expect(throws: TPMError.self) {
            try await t.tpm.unseal(object(sealed), pcrs: sealed.pcrs,
                                   authorization: PolicyAuthorization(keyPublic: keyPublic, approvedPolicy: ModelSigning.bytes(fromHex: other.approvedPolicy)!,
                                                                      signature: ModelSigning.bytes(fromHex: other.signature)!,
                                                                      policyRef: PolicyDigests.sealPolicyRef(profile: sealer.profile.id, pcrs: sealed.pcrs)))
        }
        // With its own policyRef, it does not match the object's policy.
        await #expect(throws: TPMError.self) {
            try await t.tpm.unseal(object(sealed), pcrs: sealed.pcrs,
                                   authorization: PolicyAuthorization(keyPublic: keyPublic, approvedPolicy: ModelSigning.bytes(fromHex: other.approvedPolicy)!,
                                                                      signature: ModelSigning.bytes(fromHex: other.signature)!,
                                                                      policyRef: ModelSigning.bytes(fromHex: other.policyRef)!))
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
