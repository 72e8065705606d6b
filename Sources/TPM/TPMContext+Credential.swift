import CTSS2

extension TPMContext {
    /// TPM2_ActivateCredential: recovers a credential that MakeCredential bound to this TPM's EK
    /// and to the object `activate` (the AK). The EK's policy (PolicySecret with the endorsement
    /// hierarchy) is satisfied with a policy session.
    func activateCredential(activate: ESYS_TR, ek: ESYS_TR, credentialBlob: [UInt8], encryptedSecret: [UInt8]) throws(TPMError) -> [UInt8] {
        var blob = TPM2B_ID_OBJECT()
        var secret = TPM2B_ENCRYPTED_SECRET()
        try TPM2B.unmarshal(credentialBlob, into: &blob, Tss2_MU_TPM2B_ID_OBJECT_Unmarshal, "TPM2B_ID_OBJECT")
        try TPM2B.unmarshal(encryptedSecret, into: &secret, Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal, "TPM2B_ENCRYPTED_SECRET")
        let session = try startPolicySession()
        defer { flush(session) }
        var timeout: UnsafeMutablePointer<TPM2B_TIMEOUT>?
        var ticket: UnsafeMutablePointer<TPMT_TK_AUTH>?
        try check(Esys_PolicySecret(ctx, SN_ESYS_TR_RH_ENDORSEMENT, session, SN_ESYS_TR_PASSWORD, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE,
                                    nil, nil, nil, 0, &timeout, &ticket), "TPM2_PolicySecret(endorsement)")
        Esys_Free(timeout)
        Esys_Free(ticket)
        // The recovered credential (certInfo, the response's first parameter) comes back encrypted
        // by a session salted to the EK.
        let encryption = try startEncryptionSession(saltKey: ek, decrypt: false, encrypt: true)
        defer { flush(encryption) }
        var certInfo: UnsafeMutablePointer<TPM2B_DIGEST>?
        try check(Esys_ActivateCredential(ctx, activate, ek, SN_ESYS_TR_PASSWORD, session, encryption, &blob, &secret, &certInfo),
                  "TPM2_ActivateCredential")
        defer { Esys_Free(certInfo) }
        return certInfo.map { TPM2B.bytes(size: $0.pointee.size, buffer: $0.pointee.buffer) } ?? []
    }
}
