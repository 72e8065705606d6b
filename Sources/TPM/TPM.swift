import CTSS2
import Dispatch

/// The node's TPM. Every ESAPI call runs on this object's own serial dispatch queue (never on
/// Swift's cooperative pool, since ESAPI blocks on I/O). The connection is opened lazily and
/// reopened after the TPM was unreachable, so the node recovers when a TPM comes back.
public final class TPM: @unchecked Sendable {
    public let tcti: String
    private let queue: DispatchQueue
    /// Touched only on `queue`.
    private var context: TPMContext?
    /// The EK is fixed for a TPM; deriving it (an RSA primary key) is slow, so it is kept for the
    /// life of the connection. Touched only on `queue`.
    private var endorsement: EndorsementKey?

    public init(tcti: String) {
        self.tcti = tcti
        self.queue = DispatchQueue(label: "securenode.tpm")
    }

    /// Runs `body` with a live context on the TPM queue. An unavailable TPM drops the context so
    /// that the next call reconnects.
    func perform<T: Sendable>(_ body: @escaping @Sendable (TPMContext) throws(TPMError) -> T) async throws(TPMError) -> T {
        let result: Result<T, TPMError> = await withCheckedContinuation { continuation in
            queue.async {
                var outcome = self.attempt(body)
                if case .failure(let error) = outcome, error.isOutOfObjectMemory, let context = self.context {
                    // Without a resource manager (swtpm, or a crashed client on /dev/tpm0) the
                    // three transient slots can be left full: flush them and try once more.
                    do throws(TPMError) {
                        try context.flushAllTransients()
                        outcome = self.attempt(body)
                    } catch {
                        outcome = .failure(error)
                    }
                }
                if case .failure(let error) = outcome, error.kind == .unavailable {
                    self.context = nil
                    self.endorsement = nil
                }
                continuation.resume(returning: outcome)
            }
        }
        return try result.get()
    }

    /// One try of `body`, connecting first if needed. Runs on `queue`.
    private func attempt<T>(_ body: (TPMContext) throws(TPMError) -> T) -> Result<T, TPMError> {
        do throws(TPMError) {
            if context == nil { context = try TPMContext(tcti: tcti) }
            return .success(try body(context!))
        } catch {
            return .failure(error)
        }
    }

    /// Current values of `indices` in the SHA-256 bank.
    public func pcrValues(_ indices: [Int]) async throws(TPMError) -> [Int: [UInt8]] {
        try await perform { ctx throws(TPMError) in try ctx.pcrRead(bank: SN_ALG_SHA256, indices: indices) }
    }

    /// Extends a SHA-256 digest into PCR `index`.
    public func extend(pcr index: Int, sha256 digest: [UInt8]) async throws(TPMError) {
        guard digest.count == 32 else {
            throw TPMError(.state, command: "TPM2_PCR_Extend", detail: "a SHA-256 digest is 32 bytes, got \(digest.count)")
        }
        try await perform { ctx throws(TPMError) in try ctx.pcrExtend(index: index, sha256: digest) }
    }

    /// The RSA-2048 endorsement key (template L-1) and its certificate from NV 0x01c00002.
    public func endorsementKey() async throws(TPMError) -> EndorsementKey {
        try await perform { ctx throws(TPMError) in
            if let known = self.endorsement { return known }
            let template = KeyTemplates.endorsementRSA2048()
            var pub: TPM2B_PUBLIC?
            // Most TPMs keep the EK persistent at 0x81010001 (TCG EK Credential Profile); use it when
            // it is the L-1 template's key, else derive it (an RSA primary: slow on some TPMs).
            if let persistent = try ctx.fromTPMHandle(0x8101_0001) {
                defer { ctx.close(persistent) }
                let candidate = try ctx.readPublic(persistent)
                if candidate.publicArea.type == template.publicArea.type,
                   candidate.publicArea.objectAttributes == template.publicArea.objectAttributes,
                   TPM2B.bytes(size: candidate.publicArea.authPolicy.size, buffer: candidate.publicArea.authPolicy.buffer)
                    == TPM2B.bytes(size: template.publicArea.authPolicy.size, buffer: template.publicArea.authPolicy.buffer) {
                    pub = candidate
                }
            }
            if pub == nil {
                let (handle, derived) = try ctx.createPrimary(hierarchy: SN_ESYS_TR_RH_ENDORSEMENT, template: template)
                ctx.flush(handle)
                pub = derived
            }
            let area = try TPM2B.marshal(pub!, Tss2_MU_TPM2B_PUBLIC_Marshal, "TPM2B_PUBLIC")
            let cert = try ctx.nvRead(index: 0x01c0_0002)
            let ek = EndorsementKey(publicArea: area, certificateDER: cert)
            self.endorsement = ek
            return ek
        }
    }

    /// The attestation key at `persistentHandle`, created (deterministically, as a primary key in
    /// the endorsement hierarchy) and made persistent when absent. Nothing transient is left loaded.
    public func attestationKey(_ type: AttestationKeyType, persistentHandle: UInt32) async throws(TPMError) -> AttestationKey {
        try await perform { ctx throws(TPMError) in
            let template = KeyTemplates.attestation(type)
            if let existing = try ctx.fromTPMHandle(persistentHandle) {
                defer { ctx.close(existing) }
                let pub = try ctx.readPublic(existing)
                guard pub.publicArea.type == template.publicArea.type,
                      pub.publicArea.objectAttributes == template.publicArea.objectAttributes else {
                    throw TPMError(.state, command: "load attestation key",
                                   detail: "persistent handle 0x\(String(persistentHandle, radix: 16)) holds another kind of key")
                }
                return AttestationKey(type: type, persistentHandle: persistentHandle,
                                      publicArea: try TPM2B.marshal(pub, Tss2_MU_TPM2B_PUBLIC_Marshal, "TPM2B_PUBLIC"))
            }
            let (handle, pub) = try ctx.createPrimary(hierarchy: SN_ESYS_TR_RH_ENDORSEMENT, template: template)
            defer { ctx.flush(handle) }
            let persistent = try ctx.evictControl(handle, persistentHandle: persistentHandle)
            ctx.close(persistent)
            return AttestationKey(type: type, persistentHandle: persistentHandle,
                                  publicArea: try TPM2B.marshal(pub, Tss2_MU_TPM2B_PUBLIC_Marshal, "TPM2B_PUBLIC"))
        }
    }

    /// Removes a persistent key (tests and re-provisioning).
    public func evict(persistentHandle: UInt32) async throws(TPMError) {
        try await perform { ctx throws(TPMError) in
            guard let h = try ctx.fromTPMHandle(persistentHandle) else { return }
            try ctx.evict(h, persistentHandle: persistentHandle)
        }
    }

    /// TPM2_Quote with the attestation key over the SHA-256 PCRs `indices`, qualified by `nonce`.
    public func quote(attestationKeyHandle: UInt32, nonce: [UInt8], pcrs indices: [Int]) async throws(TPMError) -> Quote {
        try await quote(attestationKeyHandle: attestationKeyHandle, nonce: nonce, pcrs: indices, readingValues: false).quote
    }

    /// A quote together with the values of the quoted PCRs, read in the same turn on the TPM queue
    /// (no other command of this process runs in between), as tpm2-tools' `tpm2_quote -o` gives them.
    public func quoteWithValues(attestationKeyHandle: UInt32, nonce: [UInt8], pcrs indices: [Int]) async throws(TPMError) -> (quote: Quote, values: [Int: [UInt8]]) {
        try await quote(attestationKeyHandle: attestationKeyHandle, nonce: nonce, pcrs: indices, readingValues: true)
    }

    private func quote(attestationKeyHandle: UInt32, nonce: [UInt8], pcrs indices: [Int], readingValues: Bool) async throws(TPMError) -> (quote: Quote, values: [Int: [UInt8]]) {
        guard nonce.count <= 64 else {
            throw TPMError(.state, command: "TPM2_Quote", detail: "qualifying data is at most 64 bytes, got \(nonce.count)")
        }
        return try await perform { ctx throws(TPMError) in
            guard let ak = try ctx.fromTPMHandle(attestationKeyHandle) else {
                throw TPMError(.state, command: "TPM2_Quote",
                               detail: "no attestation key at 0x\(String(attestationKeyHandle, radix: 16))")
            }
            defer { ctx.close(ak) }
            let values = readingValues ? try ctx.pcrRead(bank: SN_ALG_SHA256, indices: indices) : [:]
            let (attest, signature) = try ctx.quote(signer: ak, nonce: nonce, bank: SN_ALG_SHA256, indices: indices)
            return (Quote(attest: attest, signature: signature), values)
        }
    }

    /// Resets a resettable PCR (16 or 23 at locality 0) to zeros.
    public func reset(pcr index: Int) async throws(TPMError) {
        guard index == 16 || index == 23 else {
            throw TPMError(.state, command: "TPM2_PCR_Reset", detail: "only PCRs 16 and 23 are resettable at locality 0, not \(index)")
        }
        try await perform { ctx throws(TPMError) in try ctx.pcrReset(index: index) }
    }

    /// Flushes every transient object and session (see ``TPMContext/flushAllTransients()``).
    public func flushTransients() async throws(TPMError) {
        try await perform { ctx throws(TPMError) in try ctx.flushAllTransients() }
    }
}

public struct EndorsementKey: Sendable, Equatable {
    /// Marshaled TPM2B_PUBLIC.
    public let publicArea: [UInt8]
    /// DER X.509 EK certificate from NV, when the manufacturer provisioned one.
    public let certificateDER: [UInt8]?
}

public struct AttestationKey: Sendable, Equatable {
    public let type: AttestationKeyType
    public let persistentHandle: UInt32
    /// Marshaled TPM2B_PUBLIC.
    public let publicArea: [UInt8]
}

public struct Quote: Sendable, Equatable {
    /// Marshaled TPMS_ATTEST: the bytes the attestation key signed.
    public let attest: [UInt8]
    /// Marshaled TPMT_SIGNATURE.
    public let signature: [UInt8]
}

// MARK: sealing

/// A sealed data object: marshaled TPM2B_PUBLIC and TPM2B_PRIVATE (encrypted by the TPM's storage
/// root key; useless outside that TPM).
public struct SealedObject: Sendable, Equatable {
    public let publicArea: [UInt8]
    public let privateArea: [UInt8]
    public init(publicArea: [UInt8], privateArea: [UInt8]) {
        self.publicArea = publicArea
        self.privateArea = privateArea
    }
}

/// A publisher's approval of a PCR policy, for objects sealed with PolicyAuthorize.
public struct PolicyAuthorization: Sendable, Equatable {
    /// Marshaled TPM2B_PUBLIC of the publisher's P-256 verification key.
    public let keyPublic: [UInt8]
    /// The PolicyPCR digest the publisher approved.
    public let approvedPolicy: [UInt8]
    /// ECDSA signature r || s over SHA-256(approvedPolicy || policyRef).
    public let signature: [UInt8]
    /// The policyRef the sealed object's PolicyAuthorize names (at most 64 bytes; empty for none).
    public let policyRef: [UInt8]
    public init(keyPublic: [UInt8], approvedPolicy: [UInt8], signature: [UInt8], policyRef: [UInt8] = []) {
        self.keyPublic = keyPublic
        self.approvedPolicy = approvedPolicy
        self.signature = signature
        self.policyRef = policyRef
    }
}

extension TPM {
    /// Seals `secret` (at most 128 bytes) so that only a session satisfying `authPolicy` can unseal it.
    public func seal(_ secret: [UInt8], authPolicy: [UInt8]) async throws(TPMError) -> SealedObject {
        try await perform { ctx throws(TPMError) in
            let srk = try ctx.createStorageRoot()
            defer { ctx.flush(srk) }
            let (pub, priv) = try ctx.createSealed(parent: srk, secret: secret, authPolicy: authPolicy)
            return SealedObject(publicArea: pub, privateArea: priv)
        }
    }

    /// Unseals with a policy session: PolicyPCR over `pcrs` (current values), then, for objects
    /// sealed to a PolicyAuthorize, the publisher's approval of those values.
    public func unseal(_ object: SealedObject, pcrs: [Int], authorization: PolicyAuthorization?) async throws(TPMError) -> [UInt8] {
        try await perform { ctx throws(TPMError) in
            let srk = try ctx.createStorageRoot()
            defer { ctx.flush(srk) }
            let handle = try ctx.load(parent: srk, public: object.publicArea, private: object.privateArea)
            defer { ctx.flush(handle) }
            let session = try ctx.startPolicySession()
            defer { ctx.flush(session) }
            try ctx.policyPCR(session: session, indices: pcrs)
            if let authorization {
                try ctx.policyAuthorize(session: session, approvedPolicy: authorization.approvedPolicy, policyRef: authorization.policyRef,
                                        keyPublic: authorization.keyPublic, signatureRS: authorization.signature)
            }
            return try ctx.unseal(object: handle, session: session, saltKey: srk)
        }
    }
}

// MARK: enrollment

extension TPM {
    /// Proves that the AK at `attestationKeyHandle` lives in the TPM that holds the EK: decrypts an
    /// orchestrator's MakeCredential challenge (TPM2_ActivateCredential).
    public func activateCredential(attestationKeyHandle: UInt32, credentialBlob: [UInt8], encryptedSecret: [UInt8]) async throws(TPMError) -> [UInt8] {
        try await perform { ctx throws(TPMError) in
            guard let ak = try ctx.fromTPMHandle(attestationKeyHandle) else {
                throw TPMError(.state, command: "TPM2_ActivateCredential",
                               detail: "no attestation key at 0x\(String(attestationKeyHandle, radix: 16))")
            }
            defer { ctx.close(ak) }
            let (ek, _) = try ctx.createPrimary(hierarchy: SN_ESYS_TR_RH_ENDORSEMENT, template: KeyTemplates.endorsementRSA2048())
            defer { ctx.flush(ek) }
            return try ctx.activateCredential(activate: ak, ek: ek, credentialBlob: credentialBlob, encryptedSecret: encryptedSecret)
        }
    }
}
