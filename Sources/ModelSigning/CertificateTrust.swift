import Foundation
import SwiftASN1
@_spi(FixedExpiryValidationTime) import X509

/// Validates the certificate chain of a model-signing bundle.
///
/// Checks, in order:
/// 1. Every DER certificate in the bundle parses.
/// 2. A chain exists from the leaf (bundle certificate 0), through the bundle's other certificates,
///    to one of the trusted certificates. All given trusted certificates are trust anchors, as in
///    model-signing. Signatures, basic constraints, name constraints and validity are checked by
///    swift-certificates' RFC 5280 policy at the leaf's notBefore: the bundle carries no timestamp,
///    so, like model-signing, we validate at signing time and do not enforce later expiry.
/// 3. The leaf is fit for signing code: where it has a key usage extension it asserts
///    digitalSignature, where it has an extended key usage extension it lists codeSigning, and it has
///    at least one of the two. (model-signing accepts either; we also refuse a present extension
///    that names another purpose, e.g. a TLS server certificate.)
public struct CertificateTrust: Sendable {
    public let trustedRoots: [Certificate]

    public init(trustedRoots: [Certificate]) {
        self.trustedRoots = trustedRoots
    }

    /// The validated chain, leaf first.
    public func validate(bundleCertificates ders: [[UInt8]]) async throws(ModelSigningError) -> [Certificate] {
        var certificates: [Certificate] = []
        for (i, der) in ders.enumerated() {
            do {
                certificates.append(try Certificate(derEncoded: der))
            } catch {
                throw ModelSigningError(.invalidCertificate,
                    "verificationMaterial.x509CertificateChain.certificates[\(i)] is not a valid X.509 certificate")
            }
        }
        guard let leaf = certificates.first else {
            throw ModelSigningError(.malformedBundle, "the bundle's certificate chain is empty")
        }
        var verifier = Verifier(rootCertificates: CertificateStore(trustedRoots)) {
            RFC5280Policy(fixedExpiryValidationTime: leaf.notValidBefore)
            CodeSigningPurposePolicy()
        }
        var diagnostics: [String] = []
        let result = await verifier.validate(
            leaf: leaf, intermediates: CertificateStore(Array(certificates.dropFirst()))
        ) { diagnostics.append(String(describing: $0)) }
        switch result {
        case .validCertificate(let chain):
            return Array(chain)
        case .couldNotValidate(let failures):
            if let purpose = failures.lazy.map({ String(describing: $0.policyFailureReason) })
                .first(where: { $0.hasPrefix(CodeSigningPurposePolicy.marker) }) {
                throw ModelSigningError(.certificatePurpose,
                    "signing certificate \"\(leaf.subject)\" is not for code signing: "
                    + purpose.dropFirst(CodeSigningPurposePolicy.marker.count))
            }
            let detail = failures.first.map { "; \($0.policyFailureReason)" } ?? ""
            throw ModelSigningError(.untrustedCertificate,
                "signing certificate \"\(leaf.subject)\" (issuer \"\(leaf.issuer)\") does not chain to a trusted certificate\(detail)")
        }
    }
}

/// The leaf must be usable for code signing (see ``CertificateTrust``).
struct CodeSigningPurposePolicy: VerifierPolicy {
    static let marker = "code-signing purpose: "
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [
        .X509ExtensionID.keyUsage, .X509ExtensionID.extendedKeyUsage,
    ]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        let leaf = chain.leaf
        let keyUsage: KeyUsage?
        let extendedKeyUsage: ExtendedKeyUsage?
        do {
            keyUsage = try leaf.extensions.keyUsage
            extendedKeyUsage = try leaf.extensions.extendedKeyUsage
        } catch {
            return .failsToMeetPolicy(reason: Self.marker + "its key usage extensions cannot be parsed")
        }
        if keyUsage == nil && extendedKeyUsage == nil {
            return .failsToMeetPolicy(reason: Self.marker + "it has neither a key usage nor an extended key usage extension")
        }
        if let keyUsage, !keyUsage.digitalSignature {
            return .failsToMeetPolicy(reason: Self.marker + "its key usage does not include digitalSignature")
        }
        if let extendedKeyUsage, !extendedKeyUsage.contains(.codeSigning), !extendedKeyUsage.contains(.any) {
            return .failsToMeetPolicy(reason: Self.marker + "its extended key usage does not include codeSigning")
        }
        return .meetsPolicy
    }
}
