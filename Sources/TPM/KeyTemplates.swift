import CTSS2

/// Public-area templates for the keys the node creates.
public enum AttestationKeyType: String, Sendable, Codable {
    /// RSA-2048, RSASSA-PKCS1-v1_5 with SHA-256.
    case rsa2048 = "rsa2048"
    /// ECC NIST P-256, ECDSA with SHA-256.
    case eccP256 = "ecc-p256"
}

enum KeyTemplates {
    /// TCG EK Credential Profile template L-1: the RSA-2048 endorsement key whose certificate
    /// manufacturers store at NV index 0x01c00002.
    static func endorsementRSA2048() -> TPM2B_PUBLIC {
        var t = TPM2B_PUBLIC()
        t.publicArea.type = SN_ALG_RSA
        t.publicArea.nameAlg = SN_ALG_SHA256
        t.publicArea.objectAttributes = SN_OBJ_FIXEDTPM | SN_OBJ_FIXEDPARENT | SN_OBJ_SENSITIVEDATAORIGIN
            | SN_OBJ_ADMINWITHPOLICY | SN_OBJ_RESTRICTED | SN_OBJ_DECRYPT
        // PolicySecret(TPM_RH_ENDORSEMENT)
        t.publicArea.authPolicy = TPM2B.digest([
            0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
            0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
        ])
        t.publicArea.parameters.rsaDetail.symmetric.algorithm = SN_ALG_AES
        t.publicArea.parameters.rsaDetail.symmetric.keyBits.aes = 128
        t.publicArea.parameters.rsaDetail.symmetric.mode.aes = SN_ALG_CFB
        t.publicArea.parameters.rsaDetail.scheme.scheme = SN_ALG_NULL
        t.publicArea.parameters.rsaDetail.keyBits = 2048
        t.publicArea.parameters.rsaDetail.exponent = 0
        t.publicArea.unique.rsa.size = 256  // 256 zero bytes
        return t
    }

    /// A restricted signing key (an attestation key) in the endorsement hierarchy.
    static func attestation(_ type: AttestationKeyType) -> TPM2B_PUBLIC {
        var t = TPM2B_PUBLIC()
        t.publicArea.nameAlg = SN_ALG_SHA256
        t.publicArea.objectAttributes = SN_OBJ_FIXEDTPM | SN_OBJ_FIXEDPARENT | SN_OBJ_SENSITIVEDATAORIGIN
            | SN_OBJ_USERWITHAUTH | SN_OBJ_RESTRICTED | SN_OBJ_SIGN_ENCRYPT
        switch type {
        case .rsa2048:
            t.publicArea.type = SN_ALG_RSA
            t.publicArea.parameters.rsaDetail.symmetric.algorithm = SN_ALG_NULL
            t.publicArea.parameters.rsaDetail.scheme.scheme = SN_ALG_RSASSA
            t.publicArea.parameters.rsaDetail.scheme.details.rsassa.hashAlg = SN_ALG_SHA256
            t.publicArea.parameters.rsaDetail.keyBits = 2048
            t.publicArea.parameters.rsaDetail.exponent = 0
        case .eccP256:
            t.publicArea.type = SN_ALG_ECC
            t.publicArea.parameters.eccDetail.symmetric.algorithm = SN_ALG_NULL
            t.publicArea.parameters.eccDetail.scheme.scheme = SN_ALG_ECDSA
            t.publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg = SN_ALG_SHA256
            t.publicArea.parameters.eccDetail.curveID = SN_ECC_NIST_P256
            t.publicArea.parameters.eccDetail.kdf.scheme = SN_ALG_NULL
        }
        return t
    }
}
