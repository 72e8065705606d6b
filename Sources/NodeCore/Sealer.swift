import Attestation
import Crypto
import Foundation
import ModelSigning
import TPM

/// A sealed secret on disk (`securenode seal` writes it, owner-only, atomically).
public struct SealedSecretFile: Sendable, Codable, Equatable {
    public static let schemaName = "securenode.sealed.v1"
    public var schema: String
    public var profile: String
    /// PCRs (SHA-256 bank) the policy covers.
    public var pcrs: [Int]
    /// "pcr": bound to the PCR values at sealing time; "authorize": to any PCR values the
    /// policy-authorization key approves (PolicyAuthorize).
    public var policy: String
    /// TPM name (hex) of the policy-authorization key, for "authorize".
    public var authorizationKeyName: String?
    /// For "authorize": the policyRef (hex) the object's PolicyAuthorize names, SHA-256 naming the
    /// profile and its seal PCRs (``PolicyDigests/sealPolicyRef(profile:pcrs:)``). Informative: the
    /// node recomputes it from the profile.
    public var policyRef: String?
    /// Marshaled TPM2B_PUBLIC and TPM2B_PRIVATE (base64).
    public var `public`: String
    public var `private`: String
}

/// Seals the node's secrets to the profile's PCR policy.
public struct Sealer: Sendable {
    public let tpm: TPM
    public let profile: FirmwareProfile
    /// The PCRs sealed to: the profile's seal PCRs, or a subset a caller chose (the node keys leave
    /// out the PCRs the node extends itself, see ``NodeKeyStore``). Approvals are bound to this set.
    public let pcrs: [Int]

    public init(tpm: TPM, profile: FirmwareProfile, pcrs: [Int]? = nil) {
        self.tpm = tpm
        self.profile = profile
        self.pcrs = pcrs ?? profile.seal.pcrs
    }

    /// Seals `secret` to `pcrs`: to their current values, or, with an authorization
    /// key, to whatever values that key approves.
    public func seal(_ secret: [UInt8], authorizationKey: P256.Signing.PublicKey?) async throws -> SealedSecretFile {
        guard !secret.isEmpty, secret.count <= 128 else {
            throw NodeError("a sealed secret must be 1 to 128 bytes (seal a key, not a document); got \(secret.count)")
        }
        try Self.checkSealPCRs(pcrs, profile: profile.id)
        let authPolicy: [UInt8]
        var keyName: String?
        var policyRef: String?
        if let authorizationKey {
            let name = PolicyDigests.externalSigningKey(authorizationKey).name
            let ref = PolicyDigests.sealPolicyRef(profile: profile.id, pcrs: pcrs)
            authPolicy = PolicyDigests.policyAuthorize(keyName: name, policyRef: ref)
            keyName = hexString(name)
            policyRef = hexString(ref)
        } else {
            authPolicy = PolicyDigests.policyPCR(values: try await tpm.pcrValues(pcrs))
        }
        let object = try await tpm.seal(secret, authPolicy: authPolicy)
        return SealedSecretFile(schema: SealedSecretFile.schemaName, profile: profile.id, pcrs: pcrs,
                                policy: authorizationKey == nil ? "pcr" : "authorize", authorizationKeyName: keyName, policyRef: policyRef,
                                public: Data(object.publicArea).base64EncodedString(),
                                private: Data(object.privateArea).base64EncodedString())
    }

    /// Unseals, choosing among `approvals` the one for the current PCR values (for "authorize").
    public func unseal(_ file: SealedSecretFile, approvals: [PolicyApproval], authorizationKey: P256.Signing.PublicKey?) async throws -> [UInt8] {
        guard file.schema == SealedSecretFile.schemaName, let pub = Data(base64Encoded: file.public),
              let priv = Data(base64Encoded: file.private) else {
            throw NodeError("not a SecureNode sealed secret (\(SealedSecretFile.schemaName))")
        }
        let object = SealedObject(publicArea: Array(pub), privateArea: Array(priv))
        // The PCR selection comes from the profile, not the (editable) file.
        try Self.checkSealPCRs(pcrs, profile: profile.id)
        guard file.profile == profile.id, file.pcrs.sorted() == pcrs.sorted() else {
            throw NodeError("the sealed file says profile \(file.profile), PCRs \(file.pcrs.sorted()), but this node's profile \(profile.id) seals to PCRs "
                            + "\(pcrs.sorted()): the file was edited or belongs to another profile; refusing to unseal")
        }
        let current = try await tpm.pcrValues(pcrs)
        var authorization: PolicyAuthorization?
        if file.policy == "authorize" {
            guard let authorizationKey else {
                throw NodeError("this secret is sealed to a policy-authorization key: give its public key")
            }
            let (keyPublic, name) = PolicyDigests.externalSigningKey(authorizationKey)
            guard hexString(name) == file.authorizationKeyName else {
                throw NodeError("the policy-authorization key given is not the one this secret was sealed to")
            }
            let ref = PolicyDigests.sealPolicyRef(profile: profile.id, pcrs: pcrs)
            guard file.policyRef == nil || file.policyRef?.lowercased() == hexString(ref) else {
                throw NodeError("the sealed file names policyRef \(file.policyRef ?? ""), not profile \(profile.id)'s \(hexString(ref)): refusing to unseal")
            }
            let wanted = hexString(PolicyDigests.policyPCR(values: current))
            let required = Set(pcrs.map(String.init))
            // An approval counts only for this purpose (profile, policyRef) and exactly these PCRs.
            guard let approval = approvals.first(where: { $0.schema == PolicyApproval.schemaName && $0.approvedPolicy == wanted
                    && $0.keyName == file.authorizationKeyName && $0.profile == profile.id
                    && $0.policyRef.lowercased() == hexString(ref) && Set($0.pcrs.keys) == required }) else {
                throw NodeError(approvals.isEmpty
                    ? "this secret needs a publisher approval of the current values of PCRs \(file.pcrs) (securenode approve-policy)"
                    : "no approval covers the current values of PCRs \(file.pcrs): the platform changed and the publisher has not approved it")
            }
            guard let sig = ModelSigning.bytes(fromHex: approval.signature), let policy = ModelSigning.bytes(fromHex: approval.approvedPolicy),
                  let signature = try? P256.Signing.ECDSASignature(rawRepresentation: sig),
                  authorizationKey.isValidSignature(signature, for: policy + ref) else {
                throw NodeError("the approval for the current PCR values is not signed by the policy-authorization key")
            }
            authorization = PolicyAuthorization(keyPublic: keyPublic, approvedPolicy: policy, signature: sig, policyRef: ref)
        }
        let result: Result<[UInt8], TPMError>
        do {
            result = .success(try await tpm.unseal(object, pcrs: pcrs, authorization: authorization))
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success(let secret):
            return secret
        case .failure(let error) where error.kind == .command && error.command.hasPrefix("TPM2_Load"):
            // The storage root derives from this TPM's owner seed: another TPM's blob does not load.
            throw NodeError("sealed under a different TPM (was the state directory copied from another machine?): \(error.decoded)")
        case .failure(let error) where error.kind == .command && error.command.hasPrefix("TPM2_Unseal"):
            throw NodeError("the TPM refused to unseal: PCRs \(file.pcrs) no longer hold the values this secret was sealed to (\(error.decoded))")
        case .failure(let error):
            throw error
        }
    }

    /// Refuses a seal PCR selection that protects nothing: empty, or with a PCR software can reset.
    static func checkSealPCRs(_ pcrs: [Int], profile: String) throws {
        guard !pcrs.isEmpty else { throw NodeError("profile \(profile) seals to no PCRs: the secret would unseal on any platform state") }
        let resettable = pcrs.filter { PolicyDigests.resettablePCRs.contains($0) }.sorted()
        guard resettable.isEmpty else {
            throw NodeError("profile \(profile) seals to PCRs \(resettable), which software can reset and set to any value")
        }
    }

    /// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename) with
    /// owner-only permissions.
    public static func writeOwnerOnly(_ bytes: [UInt8], to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw NodeError("cannot create \(temporary.path): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
            guard n > 0 else {
                close(fd)
                unlink(temporary.path)
                throw NodeError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            written += n
        }
        guard fsync(fd) == 0, close(fd) == 0, rename(temporary.path, url.path) == 0 else {
            unlink(temporary.path)
            throw NodeError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
