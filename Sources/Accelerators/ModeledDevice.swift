import Attestation
import Crypto
import Foundation
import ModelSigning
import SwiftASN1
import X509

/// A modeled device's identity and its SPDM-style measurement responder: an ECDSA P-384 device
/// key with a certificate from a modeled vendor CA, and the measurements of its (modeled)
/// firmware and configuration, signed for a nonce.
///
/// Nothing here is hardware: the key is a file in the node's state directory, which is exactly
/// what a real device protects against. It exercises the evidence format and the verifier, so
/// that a real SPDM responder (BlueField's, over MCTP or DOE) can take its place behind
/// ``DeviceAttester``.
public struct ModeledDevice: DeviceAttester {
    public let spec: DeviceSpec
    /// The firmware identity the device runs (its measurement is SHA-384 of these bytes).
    public let firmware: String
    /// The device certificate (PEM), issued by the vendor CA.
    public let certificatePEM: String
    /// The vendor CA certificate (PEM): what a verifier trusts (`backend.vendorCAs`).
    public let vendorCAPEM: String
    let key: P384.Signing.PrivateKey

    public var kind: String { spec.kind }

    /// Measurement block indices.
    public static let firmwareIndex = 1
    public static let configurationIndex = 2

    /// The canonical description of the device's configuration that block 2 measures:
    /// `securenode.modeled-device-configuration.v1` then one `name=value` line each for kind,
    /// placement, cores, memoryBytes and hostLink, in that order, each line ending in "\n".
    public static func configuration(of spec: DeviceSpec) -> String {
        "securenode.modeled-device-configuration.v1\n"
            + "kind=\(spec.kind)\nplacement=\(spec.placement.rawValue)\ncores=\(Int(spec.cores.value))\n"
            + "memoryBytes=\(Int(spec.memoryCapacity.value))\nhostLink=\(spec.hostLink?.name ?? "none")\n"
    }

    /// The measurement blocks of a device of `spec` running `firmware`: block 1 (mutable firmware)
    /// is SHA-384 of the firmware identity's UTF-8 bytes; block 2 (hardware configuration) is
    /// SHA-384 of ``configuration(of:)``. These are also the profiles' reference values.
    public static func measurements(spec: DeviceSpec, firmware: String) -> [DeviceEvidence.Measurement] {
        [.init(index: firmwareIndex, type: .mutableFirmware, digest: Array(SHA384.hash(data: Array(firmware.utf8)))),
         .init(index: configurationIndex, type: .hardwareConfiguration, digest: Array(SHA384.hash(data: Array(configuration(of: spec).utf8))))]
    }

    public var measurements: [DeviceEvidence.Measurement] { Self.measurements(spec: spec, firmware: firmware) }

    /// Signs the measurements for `nonce` (GET_MEASUREMENTS with a signature request): the
    /// signature covers ``DeviceEvidence/transcript(kind:nonce:measurements:)``.
    public func evidence(nonce: [UInt8]) throws -> DeviceEvidence {
        let blocks = measurements
        let transcript = try DeviceEvidence.transcript(kind: kind, nonce: nonce, measurements: blocks)
        let signature = try key.signature(for: transcript)
        return DeviceEvidence(kind: kind, modeled: true, nonce: nonce, measurements: blocks,
                              signature: Array(signature.rawRepresentation), certificates: [certificatePEM])
    }
}

/// Where a modeled device keeps its identity: `<state-dir>/devices/<kind>/`, owner-only.
///
/// - `device.key.pem`: the device's P-384 private key (mode 0600; never leaves the state directory)
/// - `device.pem`: its certificate, issued by the vendor CA
/// - `vendor-ca.pem`: the modeled vendor CA's certificate (the trust anchor a verifier is given)
/// - `firmware`: the firmware identity it measures
///
/// Provisioning makes the vendor CA, issues the device certificate and throws the CA's private key
/// away, as a vendor's factory would (only the certificate stays).
public enum ModeledDeviceStore {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    public static func directory(stateDirectory: URL, kind: String) -> URL {
        stateDirectory.appendingPathComponent("devices").appendingPathComponent(kind)
    }

    /// The device of `spec` in `stateDirectory`, provisioned on first use. `firmware` (default: the
    /// spec's) is recorded at provisioning; a device already provisioned keeps its own.
    public static func device(spec: DeviceSpec, stateDirectory: URL, firmware: String? = nil) throws -> ModeledDevice {
        let dir = directory(stateDirectory: stateDirectory, kind: spec.kind)
        let keyFile = dir.appendingPathComponent("device.key.pem"), certificateFile = dir.appendingPathComponent("device.pem")
        let caFile = dir.appendingPathComponent("vendor-ca.pem"), firmwareFile = dir.appendingPathComponent("firmware")
        if !FileManager.default.fileExists(atPath: keyFile.path) {
            try provision(spec: spec, directory: dir, firmware: firmware ?? spec.firmware)
        }
        func read(_ url: URL) throws -> String {
            guard let text = try? String(contentsOf: url, encoding: .utf8) else {
                throw Failure("modeled \(spec.kind) device: cannot read \(url.path) (remove \(dir.path) to provision it again)")
            }
            return text
        }
        let key: P384.Signing.PrivateKey
        let certificate: Certificate
        do {
            key = try P384.Signing.PrivateKey(pemRepresentation: try read(keyFile))
            certificate = try Certificate(pemEncoded: try read(certificateFile))
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure("modeled \(spec.kind) device: \(dir.path) holds an invalid key or certificate: \(error)")
        }
        guard P384.Signing.PublicKey(certificate.publicKey)?.rawRepresentation == key.publicKey.rawRepresentation else {
            throw Failure("modeled \(spec.kind) device: \(certificateFile.path) is not the certificate of \(keyFile.path)")
        }
        return ModeledDevice(spec: spec, firmware: try read(firmwareFile), certificatePEM: try read(certificateFile),
                             vendorCAPEM: try read(caFile), key: key)
    }

    static func provision(spec: DeviceSpec, directory dir: URL, firmware: String) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let now = Date()
        let caKey = P384.Signing.PrivateKey()
        let caName = try DistinguishedName {
            OrganizationName("SecureNode modeled devices")
            CommonName("Modeled NVIDIA \(spec.kind) vendor CA")
        }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(20 * 365 * 86_400),
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA384,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(caKey.publicKey))
            },
            issuerPrivateKey: .init(caKey))
        let deviceKey = P384.Signing.PrivateKey()
        let serial = hexString(Array(SHA256.hash(data: deviceKey.publicKey.x963Representation)).prefix(8))
        let device = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(deviceKey.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(20 * 365 * 86_400),
            issuer: caName,
            subject: try DistinguishedName {
                OrganizationName("SecureNode modeled devices")
                OrganizationalUnitName(spec.kind)
                CommonName("\(spec.kind) device \(serial)")
            },
            signatureAlgorithm: .ecdsaWithSHA384,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                AuthorityKeyIdentifier(keyIdentifier: try ca.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: .init(caKey))
        // The CA key is not written anywhere: it goes out of scope here.
        try writeOwnerOnly(deviceKey.pemRepresentation, to: dir.appendingPathComponent("device.key.pem"))
        try writeOwnerOnly(try device.serializeAsPEM().pemString + "\n", to: dir.appendingPathComponent("device.pem"))
        try writeOwnerOnly(try ca.serializeAsPEM().pemString + "\n", to: dir.appendingPathComponent("vendor-ca.pem"))
        try writeOwnerOnly(firmware, to: dir.appendingPathComponent("firmware"))
    }

    /// Writes `text` to `url` atomically (a new owner-only file beside it, then rename).
    static func writeOwnerOnly(_ text: String, to url: URL) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString)")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Failure("cannot create \(temporary.path): errno \(errno)") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary.path, url.path) == 0 else {
            unlink(temporary.path)
            throw Failure("cannot write \(url.path): errno \(errno)")
        }
    }
}

extension ModeledDeviceStore {
    /// The devices a node with `profile` attests: the modeled device of its device backend
    /// (provisioned in `stateDirectory` on first use), or none for the `cpu` backend.
    public static func attesters(for profile: FirmwareProfile, stateDirectory: URL) throws -> [any DeviceAttester] {
        guard profile.backend.selectsDevice else { return [] }
        guard let spec = DeviceCatalog.spec(kind: profile.backend.kind) else {
            throw Failure("profile \(profile.id): no modeled device for backend \(profile.backend.kind)")
        }
        return [try device(spec: spec, stateDirectory: stateDirectory)]
    }
}
