import Crypto
import Foundation
import ModelSigning
import SwiftASN1
import X509

/// Device certificate chains validated by swift-certificates (asynchronous), by index in
/// `Evidence.devices`: the device key on success, the reason otherwise. Made only by
/// ``EvidenceVerifier/validateDeviceCertificates(_:)``.
public struct DeviceCertificates: Sendable {
    public struct Validated: Sendable {
        public let key: P384.Signing.PublicKey
        public let subject: String
        public let root: String
    }

    let results: [Int: Result<Validated, AttestationError>]
}

extension EvidenceVerifier {
    /// Appraises evidence as received (JSON bytes), device evidence included: validates the device
    /// certificate chains, then runs every check in order.
    public func appraiseWithDevices(json data: [UInt8], nonce expectedNonce: [UInt8]) async -> Appraisal {
        let evidence = try? Evidence(json: Data(data))
        let certificates = await validateDeviceCertificates(evidence?.devices ?? [])
        return appraise(json: data, nonce: expectedNonce) { self.appraise($0, nonce: expectedNonce, deviceCertificates: certificates) }
    }

    /// Appraises decoded evidence, device evidence included.
    public func appraiseWithDevices(_ evidence: Evidence, nonce expectedNonce: [UInt8]) async -> Appraisal {
        appraise(evidence, nonce: expectedNonce, deviceCertificates: await validateDeviceCertificates(evidence.devices ?? []))
    }

    /// Validates each device's certificate chain against ``vendorCAs`` now: RFC 5280 (signatures,
    /// validity, basic and name constraints), a leaf fit for signing (key usage digitalSignature
    /// where it has one, not a CA), an ECDSA P-384 key, and the device kind in the leaf's subject
    /// (organizationalUnitName), so that a device certificate of another kind is not accepted.
    public func validateDeviceCertificates(_ devices: [DeviceEvidence]) async -> DeviceCertificates {
        var results: [Int: Result<DeviceCertificates.Validated, AttestationError>] = [:]
        for (i, device) in devices.enumerated() {
            results[i] = await validate(device, index: i)
        }
        return DeviceCertificates(results: results)
    }

    private func validate(_ device: DeviceEvidence, index i: Int) async -> Result<DeviceCertificates.Validated, AttestationError> {
        func fail(_ message: String) -> Result<DeviceCertificates.Validated, AttestationError> {
            .failure(AttestationError(.malformed, "devices[\(i)] (\(device.kind)): \(message)"))
        }
        var certificates: [Certificate] = []
        for (j, pem) in device.certificates.enumerated() {
            guard let parsed = try? CertificatePEM.certificates(pem: pem, source: "devices[\(i)].certificates[\(j)]"), parsed.count == 1 else {
                return fail("certificates[\(j)] is not one PEM X.509 certificate")
            }
            certificates += parsed
        }
        guard let leaf = certificates.first else { return fail("no device certificate") }
        guard !vendorCAs.isEmpty else {
            return fail("no device vendor CA is trusted: set the profile's backend.vendorCAs")
        }
        var verifier = Verifier(rootCertificates: CertificateStore(vendorCAs)) {
            RFC5280Policy()
            DeviceCertificatePolicy()
        }
        switch await verifier.validate(leaf: leaf, intermediates: CertificateStore(Array(certificates.dropFirst()))) {
        case .validCertificate(let chain):
            guard let key = P384.Signing.PublicKey(leaf.publicKey) else {
                return fail("the device certificate's key is not ECDSA P-384")
            }
            let units = leaf.subject.flatMap { $0 }.filter { $0.type == .RDNAttributeType.organizationalUnitName }.compactMap { String($0.value) }
            guard units.contains(device.kind) else {
                return fail("the device certificate (subject \"\(leaf.subject)\") is not for a \(device.kind) device (organizationalUnitName \(units))")
            }
            return .success(.init(key: key, subject: String(describing: leaf.subject),
                                  root: String(describing: chain.last?.subject ?? leaf.issuer)))
        case .couldNotValidate(let failures):
            return fail("the device certificate (subject \"\(leaf.subject)\", issuer \"\(leaf.issuer)\") does not chain to a trusted vendor CA"
                        + (failures.first.map { ": \($0.policyFailureReason)" } ?? ""))
        }
    }

    /// The device checks, run by ``appraise(_:nonce:deviceCertificates:)`` after `model-allowed`.
    ///
    /// 1. `device-certificate`: the profile's device backend has exactly one device in the evidence,
    ///    of the profile's kind, whose certificate chain was validated (``validateDeviceCertificates(_:)``);
    ///    a `cpu` profile refuses evidence that carries devices.
    /// 2. `device-signature`: the ECDSA P-384 signature (raw r || s) verifies under the device
    ///    certificate's key over ``DeviceEvidence/transcript(kind:nonce:measurements:)`` rebuilt from
    ///    the evidence's fields.
    /// 3. `device-nonce`: the signed nonce equals the verifier's (freshness).
    /// 4. `device-measurements`: every measurement index the profile pins is present once and its
    ///    digest is one of the profile's reference values (constant-time comparisons).
    func appraiseDevices(_ evidence: Evidence, nonce expectedNonce: [UInt8], certificates: DeviceCertificates?,
                         _ run: (String, () throws(AttestationError) -> String) -> Void) {
        let devices = evidence.devices ?? []
        let kind = profile.backend.kind
        var key: P384.Signing.PublicKey?
        var device: DeviceEvidence?

        run("device-certificate") { () throws(AttestationError) -> String in
            guard profile.backend.selectsDevice else {
                throw AttestationError(.malformed, "profile \(profile.id) selects the cpu backend, but the evidence carries evidence from \(devices.count) device(s)")
            }
            guard devices.count == 1 else {
                throw AttestationError(.malformed, devices.isEmpty
                    ? "profile \(profile.id) selects a \(kind) device, but the evidence has no device evidence"
                    : "profile \(profile.id) selects one \(kind) device, but the evidence has \(devices.count)")
            }
            guard devices[0].kind == kind else {
                throw AttestationError(.malformed, "devices[0] is a \(devices[0].kind) device, but profile \(profile.id) selects \(kind)")
            }
            guard let result = certificates?.results[0] else {
                throw AttestationError(.malformed, "devices[0]: the certificate chain was not validated (appraise with appraiseWithDevices)")
            }
            switch result {
            case .failure(let error): throw error
            case .success(let validated):
                key = validated.key
                device = devices[0]
                return "devices[0] (\(kind)\(devices[0].modeled ? ", modeled" : "")): \(validated.subject), issued under vendor CA \(validated.root)"
            }
        }
        run("device-signature") { () throws(AttestationError) -> String in
            guard let key, let device else { throw AttestationError(.malformed, "no device key") }
            guard device.signatureAlgorithm == DeviceEvidence.signatureAlgorithmName else {
                throw AttestationError(.unsupported, "devices[0].signatureAlgorithm \"\(device.signatureAlgorithm)\" is not \(DeviceEvidence.signatureAlgorithmName)")
            }
            guard let raw = Data(base64Encoded: device.signature), raw.count == 96,
                  let signature = try? P384.Signing.ECDSASignature(rawRepresentation: raw) else {
                throw AttestationError(.malformed, "devices[0].signature is not base64 of a 96-byte P-384 signature (r || s)")
            }
            guard let nonce = ModelSigning.bytes(fromHex: device.nonce) else {
                throw AttestationError(.malformed, "devices[0].nonce is not hex")
            }
            let transcript = try DeviceEvidence.transcript(kind: device.kind, nonce: nonce, measurements: device.measurements)
            guard key.isValidSignature(signature, for: transcript) else {
                throw AttestationError(.malformed, "devices[0]: the signature does not verify under the device certificate's key: the measurements, nonce or kind were changed, or another key signed")
            }
            return "measurements signed by the device key (\(device.measurements.count) block(s))"
        }
        run("device-nonce") { () throws(AttestationError) -> String in
            guard let device, let nonce = ModelSigning.bytes(fromHex: device.nonce) else { throw AttestationError(.malformed, "no device nonce") }
            guard constantTimeEquals(nonce, expectedNonce) else {
                throw AttestationError(.malformed, "devices[0] signed nonce \(hexString(nonce)), not \(hexString(expectedNonce)): stale or replayed")
            }
            return "the device signed the nonce"
        }
        run("device-measurements") { () throws(AttestationError) -> String in
            guard let device else { throw AttestationError(.malformed, "no device measurements") }
            let pinned = profile.backend.deviceReferenceValues.compactMap { key, values in Int(key).map { ($0, values) } }.sorted { $0.0 < $1.0 }
            for (index, allowed) in pinned {
                let blocks = device.measurements.filter { $0.index == index }
                guard blocks.count == 1, let block = blocks.first else {
                    throw AttestationError(.malformed, blocks.isEmpty
                        ? "devices[0] has no measurement block \(index), which profile \(profile.id) pins"
                        : "devices[0] has \(blocks.count) measurement blocks with index \(index)")
                }
                guard let digest = ModelSigning.bytes(fromHex: block.digest), digest.count == 48 else {
                    throw AttestationError(.malformed, "devices[0] measurement \(index) is not a SHA-384 value")
                }
                var matched = false
                for value in allowed {
                    if let reference = ModelSigning.bytes(fromHex: value), constantTimeEquals(reference, digest) { matched = true }
                }
                guard matched else {
                    throw AttestationError(.malformed, "devices[0] measurement \(index) (\(block.type)) = \(block.digest) is not a reference value of profile \(profile.id)")
                }
            }
            return "\(pinned.count) pinned measurement(s) hold reference values"
        }
    }

    /// The CA certificates of the profile's `backend.vendorCAs` (PEM files or directories, relative
    /// to the profile's directory, `${VAR}` expanded). A missing file is an error that names it.
    public static func loadVendorCAs(profile: FirmwareProfile, profilePath: String) throws(AttestationError) -> [Certificate] {
        guard profile.backend.selectsDevice else { return [] }
        let base = URL(fileURLWithPath: profilePath).deletingLastPathComponent()
        let (certificates, missing) = try EnrollmentVerifier.loadCAs(profile.backend.vendorCAs, relativeTo: base, what: "device vendor CA")
        guard missing.isEmpty else {
            throw AttestationError(.invalidProfile, "profile \(profile.id): backend.vendorCAs \(missing.joined(separator: ", ")) does not exist"
                                   + " (a modeled device's vendor CA is made when the node first attests; set SECURENODE_STATE_DIR to its state directory)")
        }
        return certificates
    }
}

/// Device certificates sign measurements: the leaf is not a CA, and where it has a key usage
/// extension it asserts digitalSignature.
struct DeviceCertificatePolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = []

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        let leaf = chain.leaf
        if let constraints = try? leaf.extensions.basicConstraints, case .isCertificateAuthority = constraints {
            return .failsToMeetPolicy(reason: "the device certificate is a CA certificate")
        }
        if let usage = try? leaf.extensions.keyUsage, !usage.digitalSignature {
            return .failsToMeetPolicy(reason: "the device certificate's key usage lacks digitalSignature")
        }
        return .meetsPolicy
    }
}
