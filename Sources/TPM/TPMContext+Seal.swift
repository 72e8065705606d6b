import CTSS2
import Crypto

/// Sealing: a keyed-hash object under the storage root key whose authPolicy is a PCR policy (or a
/// PolicyAuthorize by a publisher's key), and the policy session that unseals it.
extension TPMContext {
    /// The storage root key: ECC P-256, restricted decrypt, derived deterministically from the owner
    /// seed (TCG "SRK" template), so it needs no persistent handle. The caller flushes it.
    func createStorageRoot() throws(TPMError) -> ESYS_TR {
        var t = TPM2B_PUBLIC()
        t.publicArea.type = SN_ALG_ECC
        t.publicArea.nameAlg = SN_ALG_SHA256
        t.publicArea.objectAttributes = SN_OBJ_FIXEDTPM | SN_OBJ_FIXEDPARENT | SN_OBJ_SENSITIVEDATAORIGIN
            | SN_OBJ_USERWITHAUTH | SN_OBJ_NODA | SN_OBJ_RESTRICTED | SN_OBJ_DECRYPT
        t.publicArea.parameters.eccDetail.symmetric.algorithm = SN_ALG_AES
        t.publicArea.parameters.eccDetail.symmetric.keyBits.aes = 128
        t.publicArea.parameters.eccDetail.symmetric.mode.aes = SN_ALG_CFB
        t.publicArea.parameters.eccDetail.scheme.scheme = SN_ALG_NULL
        t.publicArea.parameters.eccDetail.curveID = SN_ECC_NIST_P256
        t.publicArea.parameters.eccDetail.kdf.scheme = SN_ALG_NULL
        return try createPrimary(hierarchy: SN_ESYS_TR_RH_OWNER, template: t).handle
    }

    /// Creates a sealed data object holding `secret` under `parent`, usable only by satisfying
    /// `authPolicy`. Returns marshaled TPM2B_PUBLIC and TPM2B_PRIVATE.
    func createSealed(parent: ESYS_TR, secret: [UInt8], authPolicy: [UInt8]) throws(TPMError) -> (public: [UInt8], private: [UInt8]) {
        var sensitive = TPM2B_SENSITIVE_CREATE()
        guard let size = TPM2B.fill(&sensitive.sensitive.data.buffer, with: secret) else {
            throw TPMError(.state, command: "TPM2_Create(seal)", detail: "a sealed secret is at most 128 bytes, got \(secret.count)")
        }
        sensitive.sensitive.data.size = size
        var t = TPM2B_PUBLIC()
        t.publicArea.type = SN_ALG_KEYEDHASH
        t.publicArea.nameAlg = SN_ALG_SHA256
        // No userWithAuth: only the policy can authorize unsealing.
        t.publicArea.objectAttributes = SN_OBJ_FIXEDTPM | SN_OBJ_FIXEDPARENT
        t.publicArea.authPolicy = TPM2B.digest(authPolicy)
        t.publicArea.parameters.keyedHashDetail.scheme.scheme = SN_ALG_NULL
        var outside = TPM2B_DATA()
        var creationPCR = TPML_PCR_SELECTION()
        var outPrivate: UnsafeMutablePointer<TPM2B_PRIVATE>?
        var outPublic: UnsafeMutablePointer<TPM2B_PUBLIC>?
        var creationData: UnsafeMutablePointer<TPM2B_CREATION_DATA>?
        var creationHash: UnsafeMutablePointer<TPM2B_DIGEST>?
        var ticket: UnsafeMutablePointer<TPMT_TK_CREATION>?
        // The secret travels in inSensitive, the command's first parameter: encrypted by a session salted to the parent.
        let encryption = try startEncryptionSession(saltKey: parent, decrypt: true, encrypt: false)
        defer { flush(encryption) }
        try check(Esys_Create(ctx, parent, SN_ESYS_TR_PASSWORD, encryption, SN_ESYS_TR_NONE, &sensitive, &t, &outside, &creationPCR,
                              &outPrivate, &outPublic, &creationData, &creationHash, &ticket), "TPM2_Create(seal)")
        defer { Esys_Free(outPrivate); Esys_Free(outPublic); Esys_Free(creationData); Esys_Free(creationHash); Esys_Free(ticket) }
        guard let outPrivate, let outPublic else { throw TPMError(.state, command: "TPM2_Create(seal)", detail: "no object returned") }
        return (try TPM2B.marshal(outPublic.pointee, Tss2_MU_TPM2B_PUBLIC_Marshal, "TPM2B_PUBLIC"),
                try TPM2B.marshal(outPrivate.pointee, Tss2_MU_TPM2B_PRIVATE_Marshal, "TPM2B_PRIVATE"))
    }

    func load(parent: ESYS_TR, public publicBytes: [UInt8], private privateBytes: [UInt8]) throws(TPMError) -> ESYS_TR {
        var pub = TPM2B_PUBLIC()
        var priv = TPM2B_PRIVATE()
        try TPM2B.unmarshal(publicBytes, into: &pub, Tss2_MU_TPM2B_PUBLIC_Unmarshal, "TPM2B_PUBLIC")
        try TPM2B.unmarshal(privateBytes, into: &priv, Tss2_MU_TPM2B_PRIVATE_Unmarshal, "TPM2B_PRIVATE")
        var handle: ESYS_TR = SN_ESYS_TR_NONE
        try check(Esys_Load(ctx, parent, SN_ESYS_TR_PASSWORD, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &priv, &pub, &handle), "TPM2_Load")
        return handle
    }

    /// An HMAC session salted with `saltKey` (a decrypt key in this TPM: the storage root or the
    /// EK) whose parameter encryption is AES-128-CFB: `decrypt` encrypts a command's first
    /// parameter on its way to the TPM, `encrypt` the response's first parameter on its way back.
    /// The session key derives from a salt only the TPM can decrypt, so whoever watches the bus
    /// (or the TCTI) sees neither secret. The caller flushes it.
    func startEncryptionSession(saltKey: ESYS_TR, decrypt: Bool, encrypt: Bool) throws(TPMError) -> ESYS_TR {
        var symmetric = TPMT_SYM_DEF()
        symmetric.algorithm = SN_ALG_AES
        symmetric.keyBits.aes = 128
        symmetric.mode.aes = SN_ALG_CFB
        var session: ESYS_TR = SN_ESYS_TR_NONE
        try check(Esys_StartAuthSession(ctx, saltKey, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE,
                                        nil, SN_SE_HMAC, &symmetric, SN_ALG_SHA256, &session), "TPM2_StartAuthSession(salted, AES-128-CFB)")
        var attributes: TPMA_SESSION = SN_SESSION_CONTINUESESSION
        if decrypt { attributes |= SN_SESSION_DECRYPT }
        if encrypt { attributes |= SN_SESSION_ENCRYPT }
        let rc = Esys_TRSess_SetAttributes(ctx, session, attributes, 0xFF)
        guard rc == SN_RC_SUCCESS else {
            flush(session)
            throw TPMError(command: "Esys_TRSess_SetAttributes", rc: rc)
        }
        return session
    }

    func startPolicySession() throws(TPMError) -> ESYS_TR {
        var symmetric = TPMT_SYM_DEF()
        symmetric.algorithm = SN_ALG_NULL
        var session: ESYS_TR = SN_ESYS_TR_NONE
        try check(Esys_StartAuthSession(ctx, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE,
                                        nil, SN_SE_POLICY, &symmetric, SN_ALG_SHA256, &session), "TPM2_StartAuthSession(policy)")
        return session
    }

    func policyPCR(session: ESYS_TR, indices: [Int]) throws(TPMError) {
        var empty = TPM2B_DIGEST()
        var selection = Self.selection(bank: SN_ALG_SHA256, indices: indices)
        try check(Esys_PolicyPCR(ctx, session, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &empty, &selection), "TPM2_PolicyPCR")
    }

    func policyDigest(session: ESYS_TR) throws(TPMError) -> [UInt8] {
        var digest: UnsafeMutablePointer<TPM2B_DIGEST>?
        try check(Esys_PolicyGetDigest(ctx, session, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &digest), "TPM2_PolicyGetDigest")
        defer { Esys_Free(digest) }
        return digest.map { TPM2B.bytes(size: $0.pointee.size, buffer: $0.pointee.buffer) } ?? []
    }

    /// PolicyAuthorize: the TPM checks `signature` (r || s, P-256 ECDSA-SHA256) by the external key
    /// over H(approvedPolicy || policyRef), then accepts `approvedPolicy` as the session's policy
    /// (the object's authPolicy names the key and the policyRef: an approval for another policyRef fails).
    func policyAuthorize(session: ESYS_TR, approvedPolicy: [UInt8], policyRef ref: [UInt8], keyPublic: [UInt8], signatureRS: [UInt8]) throws(TPMError) {
        var pub = TPM2B_PUBLIC()
        try TPM2B.unmarshal(keyPublic, into: &pub, Tss2_MU_TPM2B_PUBLIC_Unmarshal, "TPM2B_PUBLIC(policy key)")
        var key: ESYS_TR = SN_ESYS_TR_NONE
        // Loaded in the owner hierarchy: a key in the NULL hierarchy yields a NULL ticket, which
        // PolicyAuthorize refuses.
        try check(Esys_LoadExternal(ctx, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, nil, &pub, SN_ESYS_TR_RH_OWNER, &key),
                  "TPM2_LoadExternal(policy key)")
        defer { flush(key) }
        var approvalDigest = TPM2B.digest(Array(SHA256.hash(data: approvedPolicy + ref)))
        var signature = TPMT_SIGNATURE()
        signature.sigAlg = SN_ALG_ECDSA
        signature.signature.ecdsa.hash = SN_ALG_SHA256
        guard signatureRS.count == 64,
              let rs = TPM2B.fill(&signature.signature.ecdsa.signatureR.buffer, with: Array(signatureRS[0..<32])),
              let ss = TPM2B.fill(&signature.signature.ecdsa.signatureS.buffer, with: Array(signatureRS[32..<64])) else {
            throw TPMError(.state, command: "TPM2_VerifySignature", detail: "the approval signature is not a 64-byte r || s")
        }
        signature.signature.ecdsa.signatureR.size = rs
        signature.signature.ecdsa.signatureS.size = ss
        var ticket: UnsafeMutablePointer<TPMT_TK_VERIFIED>?
        try check(Esys_VerifySignature(ctx, key, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &approvalDigest, &signature, &ticket),
                  "TPM2_VerifySignature(policy approval)")
        defer { Esys_Free(ticket) }
        guard let ticket else { throw TPMError(.state, command: "TPM2_VerifySignature", detail: "no ticket") }
        var name: UnsafeMutablePointer<TPM2B_NAME>?
        try check(Esys_TR_GetName(ctx, key, &name), "Esys_TR_GetName(policy key)")
        defer { Esys_Free(name) }
        guard let name else { throw TPMError(.state, command: "Esys_TR_GetName", detail: "no name") }
        var approved = TPM2B.digest(approvedPolicy)
        var policyRef = TPM2B_NONCE()
        guard let refSize = TPM2B.fill(&policyRef.buffer, with: ref) else {
            throw TPMError(.state, command: "TPM2_PolicyAuthorize", detail: "a policyRef is at most 64 bytes, got \(ref.count)")
        }
        policyRef.size = refSize
        try check(Esys_PolicyAuthorize(ctx, session, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &approved, &policyRef,
                                       name, ticket), "TPM2_PolicyAuthorize")
    }

    /// TPM2_Unseal with the policy session, and the response (the secret) encrypted by a session
    /// salted to `saltKey` (the storage root).
    func unseal(object: ESYS_TR, session: ESYS_TR, saltKey: ESYS_TR) throws(TPMError) -> [UInt8] {
        let encryption = try startEncryptionSession(saltKey: saltKey, decrypt: false, encrypt: true)
        defer { flush(encryption) }
        var data: UnsafeMutablePointer<TPM2B_SENSITIVE_DATA>?
        try check(Esys_Unseal(ctx, object, session, encryption, SN_ESYS_TR_NONE, &data), "TPM2_Unseal")
        defer { Esys_Free(data) }
        return data.map { TPM2B.bytes(size: $0.pointee.size, buffer: $0.pointee.buffer) } ?? []
    }
}
