/// Why a model, a bundle, a key or a certificate was refused.
///
/// Equality is on ``code`` only: tests and callers branch on what went wrong, the ``reason`` is for
/// people (it names the file, field or certificate at fault).
public struct ModelSigningError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        // Bundle structure
        case malformedBundle           // not JSON, wrong shape, bad base64
        case unsupportedMediaType      // not a sigstore bundle v0.3
        case unsupportedPayloadType    // DSSE payloadType is not in-toto
        case wrongStatementType        // in-toto _type
        case wrongPredicateType        // not https://model_signing/signature/v1.0
        case subjectCount              // exactly one subject is required
        case unsupportedSerialization  // only files + sha256 are accepted
        case manifestInconsistent      // subject digest != digest over the listed resources
        case unsafeResourceName        // a manifest path that is absolute, has "..", or is not canonical
        case duplicateResource         // a path listed twice in the manifest
        // Signature and identity
        case keyMismatch               // bundle key hint names another key
        case signatureInvalid          // ECDSA signature does not verify over the payload
        case verificationMaterialMismatch // key bundle checked with a certificate, or the reverse
        case untrustedCertificate      // chain does not lead to a trusted root
        case certificatePurpose        // leaf lacks digitalSignature / codeSigning
        case invalidKey                // unreadable or unsupported PEM key
        case invalidCertificate        // unreadable certificate
        // The model on disk
        case modelNotFound
        case symlink
        case specialFile               // FIFO, socket, device
        case extraFiles
        case missingFiles
        case hashMismatch
        case fileChanged               // the file changed size while it was read
        case io
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { reason }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}
