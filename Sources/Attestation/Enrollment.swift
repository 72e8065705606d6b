import Crypto
import Foundation
import ModelSigning
import SwiftASN1
import X509

/// The orchestrator's side of enrollment (no TPM): checks the node's EK certificate against the
/// profile's EK CAs, challenges the AK with MakeCredential, and checks the node's answer.
///
/// Checks, in order:
/// 1. The EK certificate chains to one of the trusted EK CAs (signatures, validity now, basic
///    constraints; the TCG subject-alternative-name, critical in EK certificates, is accepted), and
///    where it lists extended key usages they include tcg-kp-EKCertificate (2.23.133.8.1).
/// 2. The certificate's RSA key is the EK the node presented.
/// 3. The AK is a restricted, fixed-TPM signing key.
/// 4. (``EnrollmentClient``) the node's proof equals HMAC-SHA256 under the challenge's secret over the
///    challenger's nonce and the AK name (``CredentialChallenge/enrollmentProof(secret:nonce:akName:)``),
///    compared in constant time; the node never returns the secret itself.
public struct EnrollmentVerifier: Sendable {
    public let trustedCAs: [Certificate]

    public init(trustedCAs: [Certificate]) {
        self.trustedCAs = trustedCAs
    }

    /// Loads CA certificates from PEM files or directories of `*.pem`, each reference resolved by
    /// ``resolve(_:relativeTo:)``.
    /// A reference that does not exist (or names an unset variable) is reported in `missing` (the
    /// caller decides whether that is fatal); an unreadable or invalid one is an error.
    public static func loadCAs(_ references: [String], relativeTo base: URL, what: String = "EK CA") throws(AttestationError) -> (certificates: [Certificate], missing: [String]) {
        var certificates: [Certificate] = []
        var missing: [String] = []
        for reference in references {
            let url: URL
            switch resolve(reference, relativeTo: base) {
            case .success(let resolved): url = resolved
            case .failure(let unset):
                missing.append("\(reference) (\(unset.reason))")
                continue
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
                missing.append(url.path)
                continue
            }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).filter { $0.hasSuffix(".pem") }.sorted().map { url.appendingPathComponent($0) }
                : [url]
            for file in files {
                guard let text = try? String(contentsOf: file, encoding: .utf8) else {
                    throw AttestationError(.invalidEnrollment, "cannot read \(what) \(file.path)")
                }
                do {
                    certificates += try CertificatePEM.certificates(pem: text, source: file.path)
                } catch {
                    throw AttestationError(.invalidEnrollment, error.reason)
                }
            }
        }
        return (certificates, missing)
    }

    /// Where a path reference in a profile points. `${VAR}` is replaced by the environment
    /// variable's value (an unset or empty variable is an error naming it, not an empty string).
    /// An absolute result is used as is. A reference that starts with a variable whose value is a
    /// relative path (`SECURENODE_STATE_DIR=.state`) resolves against the current directory, as
    /// the shell that set the variable means it; any other relative path resolves against `base`
    /// (the profile's directory).
    public static func resolve(_ reference: String, relativeTo base: URL,
                               environment: [String: String] = ProcessInfo.processInfo.environment) -> Result<URL, AttestationError> {
        var out = reference
        var searchFrom = out.startIndex
        while let start = out.range(of: "${", range: searchFrom..<out.endIndex),
              let end = out.range(of: "}", range: start.upperBound..<out.endIndex) {
            let name = String(out[start.upperBound..<end.lowerBound])
            guard let value = environment[name], !value.isEmpty else {
                return .failure(AttestationError(.invalidProfile, "${\(name)} is not set"))
            }
            let offset = out.distance(from: out.startIndex, to: start.lowerBound) + value.count
            out.replaceSubrange(start.lowerBound..<end.upperBound, with: value)
            searchFrom = out.index(out.startIndex, offsetBy: offset)
        }
        if out.hasPrefix("/") { return .success(URL(fileURLWithPath: out).standardized) }
        let anchor = reference.hasPrefix("${") ? URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true) : base
        return .success(anchor.appendingPathComponent(out).standardized)
    }

    /// Steps 1-3; returns the EK certificate's subject for the record.
    public func checkIdentity(ekPublic: [UInt8], ekCertificate der: [UInt8]?, akPublic: [UInt8]) async throws(AttestationError) -> String {
        guard let der else { throw AttestationError(.invalidEnrollment, "the node's TPM has no EK certificate") }
        let certificate: Certificate
        do {
            certificate = try Certificate(derEncoded: der)
        } catch {
            throw AttestationError(.invalidEnrollment, "the EK certificate is not a valid X.509 certificate")
        }
        guard !trustedCAs.isEmpty else { throw AttestationError(.invalidEnrollment, "no EK CA is trusted: set the profile's ekCAs") }
        var verifier = Verifier(rootCertificates: CertificateStore(trustedCAs)) {
            RFC5280Policy()
            EKCertificatePolicy()
        }
        switch await verifier.validate(leaf: certificate, intermediates: CertificateStore(trustedCAs)) {
        case .validCertificate:
            break
        case .couldNotValidate(let failures):
            throw AttestationError(.invalidEnrollment,
                "the EK certificate (issuer \"\(certificate.issuer)\") does not chain to a trusted EK CA"
                + (failures.first.map { ": \($0.policyFailureReason)" } ?? ""))
        }
        let ek = try TPMPublicKey(marshaled: ekPublic)
        guard case .rsa(let modulus, _) = ek.key,
              let certKey = try? _RSAModulus.of(certificate), certKey == Array(modulus.drop { $0 == 0 }) else {
            throw AttestationError(.invalidEnrollment, "the EK certificate's key is not the EK the node presented")
        }
        let ak = try TPMPublicKey(marshaled: akPublic)
        guard ak.isRestrictedSigningKey else {
            throw AttestationError(.invalidEnrollment, "the AK is not a restricted, fixed-TPM signing key")
        }
        return String(describing: certificate.subject)
    }
}

/// EK certificates: the critical subject-alternative-name (TPM manufacturer, model, version) is
/// understood; an extended key usage, if present, must include tcg-kp-EKCertificate.
struct EKCertificatePolicy: VerifierPolicy {
    static let tcgEKCertificate: ASN1ObjectIdentifier = [2, 23, 133, 8, 1]
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [.X509ExtensionID.subjectAlternativeName]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        guard let eku = try? chain.leaf.extensions.extendedKeyUsage else { return .meetsPolicy }
        return eku.contains(ExtendedKeyUsage.Usage(oid: Self.tcgEKCertificate))
            ? .meetsPolicy : .failsToMeetPolicy(reason: "the EK certificate's extended key usage lacks tcg-kp-EKCertificate")
    }
}

/// The RSA modulus of a certificate's key (DER SubjectPublicKeyInfo → RSAPublicKey).
enum _RSAModulus {
    static func of(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate.publicKey)
        let spki = try DER.parse(serializer.serializedBytes)
        // SubjectPublicKeyInfo ::= SEQUENCE { algorithm, subjectPublicKey BIT STRING }
        guard case .constructed(let nodes) = spki.content else { throw AttestationError(.malformed, "SPKI") }
        var iterator = nodes.makeIterator()
        _ = iterator.next()
        guard let bits = iterator.next() else { throw AttestationError(.malformed, "SPKI") }
        let bitString = try ASN1BitString(derEncoded: bits)
        let rsa = try DER.parse(Array(bitString.bytes))
        guard case .constructed(let parts) = rsa.content else { throw AttestationError(.malformed, "RSAPublicKey") }
        var p = parts.makeIterator()
        guard let n = p.next() else { throw AttestationError(.malformed, "RSAPublicKey") }
        let integer = try ArraySlice<UInt8>(derEncoded: n)
        return Array(integer.drop { $0 == 0 })
    }
}

/// SHA-256 of bytes (a small helper so callers need not import Crypto).
public enum SHA256Hash {
    public static func of(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }
}
