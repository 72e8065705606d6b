import Crypto
import CryptoExtras
import Foundation

/// TPMS_ATTEST of a quote (TPM 2.0 Part 2, 10.12.12), decoded from the signed bytes.
public struct QuoteAttestation: Sendable, Equatable {
    public static let generatedValue: UInt32 = 0xFF54_4347  // TPM_GENERATED_VALUE
    public static let quoteType: UInt16 = 0x8018            // TPM_ST_ATTEST_QUOTE

    public let qualifiedSigner: [UInt8]
    public let extraData: [UInt8]
    public let clock: UInt64
    public let resetCount: UInt32
    public let restartCount: UInt32
    public let safe: Bool
    public let firmwareVersion: UInt64
    /// Hash algorithm and PCR indices of the quoted selection (one bank).
    public let pcrBank: UInt16
    public let pcrIndices: [Int]
    public let pcrDigest: [UInt8]

    public init(bytes: [UInt8]) throws(AttestationError) {
        var r = TPMBinaryReader(bytes, what: "TPMS_ATTEST")
        guard try r.u32("magic") == Self.generatedValue else {
            throw AttestationError(.malformed, "TPMS_ATTEST.magic is not TPM_GENERATED_VALUE: not produced by a TPM")
        }
        guard try r.u16("type") == Self.quoteType else {
            throw AttestationError(.malformed, "TPMS_ATTEST.type is not TPM_ST_ATTEST_QUOTE")
        }
        qualifiedSigner = try r.sized("qualifiedSigner", max: 68)
        extraData = try r.sized("extraData", max: 64)
        clock = try r.u64("clockInfo.clock")
        resetCount = try r.u32("clockInfo.resetCount")
        restartCount = try r.u32("clockInfo.restartCount")
        safe = try r.u8("clockInfo.safe") == 1
        firmwareVersion = try r.u64("firmwareVersion")
        let selections = try r.u32("attested.quote.pcrSelect.count")
        guard selections == 1 else {
            throw AttestationError(.unsupported, "TPMS_ATTEST quotes \(selections) PCR banks; exactly one is supported")
        }
        pcrBank = try r.u16("pcrSelect[0].hash")
        let size = Int(try r.u8("pcrSelect[0].sizeofSelect"))
        guard size <= 4 else { throw AttestationError(.malformed, "TPMS_ATTEST.pcrSelect[0].sizeofSelect is \(size)") }
        let mask = try r.take(size, "pcrSelect[0].pcrSelect")
        pcrIndices = (0..<(size * 8)).filter { mask[$0 / 8] & (1 << ($0 % 8)) != 0 }
        pcrDigest = try r.sized("attested.quote.pcrDigest", max: 64)
        try r.expectEnd()
    }
}

/// TPMT_SIGNATURE (RSASSA or ECDSA).
public enum TPMSignature: Sendable, Equatable {
    case rsassa(hash: UInt16, signature: [UInt8])
    case ecdsa(hash: UInt16, r: [UInt8], s: [UInt8])

    public init(bytes: [UInt8]) throws(AttestationError) {
        var r = TPMBinaryReader(bytes, what: "TPMT_SIGNATURE")
        let alg = try r.u16("sigAlg")
        let hash = try r.u16("hash")
        switch alg {
        case TPMAlgorithm.rsassa:
            self = .rsassa(hash: hash, signature: try r.sized("signature", max: 512))
        case TPMAlgorithm.ecdsa:
            self = .ecdsa(hash: hash, r: try r.sized("signatureR", max: 66), s: try r.sized("signatureS", max: 66))
        default:
            throw AttestationError(.unsupported, "TPMT_SIGNATURE.sigAlg 0x\(String(alg, radix: 16)) is not RSASSA or ECDSA")
        }
        try r.expectEnd()
    }
}

/// An attestation key's public area (TPM2B_PUBLIC), its TPM name, and its key for signature checks.
public struct TPMPublicKey: Sendable, Equatable {
    public enum Key: Sendable, Equatable {
        case rsa(modulus: [UInt8], exponent: UInt32)
        case eccP256(x: [UInt8], y: [UInt8])
    }

    /// The marshaled TPM2B_PUBLIC as received.
    public let marshaled: [UInt8]
    public let nameAlg: UInt16
    public let objectAttributes: UInt32
    public let key: Key
    /// TPM name: nameAlg (2 bytes) || H(TPMT_PUBLIC).
    public let name: [UInt8]

    public static let restricted: UInt32 = 0x0001_0000
    public static let sign: UInt32 = 0x0004_0000
    public static let fixedTPM: UInt32 = 0x0000_0002

    public init(marshaled bytes: [UInt8]) throws(AttestationError) {
        marshaled = bytes
        var outer = TPMBinaryReader(bytes, what: "TPM2B_PUBLIC")
        let area = try outer.sized("publicArea", max: 1024)
        try outer.expectEnd()
        var r = TPMBinaryReader(area, what: "TPMT_PUBLIC")
        let type = try r.u16("type")
        nameAlg = try r.u16("nameAlg")
        guard nameAlg == TPMAlgorithm.sha256 else {
            throw AttestationError(.unsupported, "TPMT_PUBLIC.nameAlg 0x\(String(nameAlg, radix: 16)) is not SHA-256")
        }
        objectAttributes = try r.u32("objectAttributes")
        _ = try r.sized("authPolicy", max: 64)
        func skipSymmetric() throws(AttestationError) {
            if try r.u16("parameters.symmetric.algorithm") != TPMAlgorithm.null {
                _ = try r.u16("parameters.symmetric.keyBits")
                _ = try r.u16("parameters.symmetric.mode")
            }
        }
        func skipScheme(_ field: String) throws(AttestationError) {
            if try r.u16("\(field).scheme") != TPMAlgorithm.null { _ = try r.u16("\(field).details.hashAlg") }
        }
        switch type {
        case TPMAlgorithm.rsa:
            try skipSymmetric()
            try skipScheme("parameters.scheme")
            _ = try r.u16("parameters.keyBits")
            let e = try r.u32("parameters.exponent")
            let n = try r.sized("unique.rsa", max: 512)
            key = .rsa(modulus: n, exponent: e == 0 ? 65537 : e)
        case TPMAlgorithm.ecc:
            try skipSymmetric()
            try skipScheme("parameters.scheme")
            let curve = try r.u16("parameters.curveID")
            guard curve == TPMAlgorithm.eccNistP256 else {
                throw AttestationError(.unsupported, "TPMT_PUBLIC curve 0x\(String(curve, radix: 16)) is not NIST P-256")
            }
            try skipScheme("parameters.kdf")
            key = .eccP256(x: try r.sized("unique.ecc.x", max: 32), y: try r.sized("unique.ecc.y", max: 32))
        default:
            throw AttestationError(.unsupported, "TPMT_PUBLIC.type 0x\(String(type, radix: 16)) is not RSA or ECC")
        }
        try r.expectEnd()
        name = [0x00, 0x0B] + Array(SHA256.hash(data: area))
    }

    /// A restricted signing key that cannot leave its TPM: what an attestation key must be.
    public var isRestrictedSigningKey: Bool {
        objectAttributes & (Self.restricted | Self.sign | Self.fixedTPM) == (Self.restricted | Self.sign | Self.fixedTPM)
    }

    /// Verifies a TPM signature over `message` (hashed with SHA-256, as the AK's scheme says).
    public func isValid(_ signature: TPMSignature, over message: [UInt8]) -> Bool {
        switch (key, signature) {
        case (.rsa(let n, let e), .rsassa(let hash, let sig)):
            guard hash == TPMAlgorithm.sha256 else { return false }
            let exponent = withUnsafeBytes(of: e.bigEndian) { Array($0).drop { $0 == 0 } }
            guard let pub = try? _RSA.Signing.PublicKey(n: n, e: Array(exponent)) else { return false }
            return pub.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: sig), for: message, padding: .insecurePKCS1v1_5)
        case (.eccP256(let x, let y), .ecdsa(let hash, let r, let s)):
            guard hash == TPMAlgorithm.sha256, let pub = try? P256.Signing.PublicKey(x963Representation: [0x04] + pad(x) + pad(y)),
                  let sig = try? P256.Signing.ECDSASignature(rawRepresentation: pad(r) + pad(s)) else { return false }
            return pub.isValidSignature(sig, for: message)
        default:
            return false
        }
    }

    private func pad(_ v: [UInt8]) -> [UInt8] { v.count >= 32 ? Array(v.suffix(32)) : [UInt8](repeating: 0, count: 32 - v.count) + v }

    /// The key as a PEM SubjectPublicKeyInfo, for tools like tpm2_checkquote and openssl.
    public var pem: String {
        switch key {
        case .rsa(let n, let e):
            let exponent = withUnsafeBytes(of: e.bigEndian) { Array($0).drop { $0 == 0 } }
            return (try? _RSA.Signing.PublicKey(n: n, e: Array(exponent)).pemRepresentation) ?? ""
        case .eccP256(let x, let y):
            return (try? P256.Signing.PublicKey(x963Representation: [0x04] + pad(x) + pad(y)).pemRepresentation) ?? ""
        }
    }
}
