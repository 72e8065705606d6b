import Accelerators
@testable import Attestation
import Crypto
import Foundation
import ModelSigning
import SwiftASN1
import Testing
import X509

extension EvidenceVerifier {
    /// The device checks alone, exactly as the appraisal runs them after the TPM checks (which the
    /// synthetic evidence of these tests would not pass: the swtpm suite runs the whole appraisal).
    func deviceChecks(_ evidence: Evidence, nonce: [UInt8], validated: Bool = true) async -> [Appraisal.Check] {
        let certificates = validated ? await validateDeviceCertificates(evidence.devices ?? []) : nil
        let runner = OrderedChecks()
        appraiseDevices(evidence, nonce: nonce, certificates: certificates) { name, body in runner.run(name, body) }
        return runner.checks
    }
}

extension [Appraisal.Check] {
    var failedCheck: String? { first { $0.result == .fail }?.check }
    var failure: String { first { $0.result == .fail }?.detail ?? "" }
}

/// Modeled device attestation without a TPM: provisioning, the signed transcript, and the four
/// device checks, each tampering named.
struct DeviceAttestationTests {
    let state: URL
    let profile: FirmwareProfile
    let nonce: [UInt8] = (0 ..< 16).map { _ in UInt8.random(in: 0...255) }

    init() throws {
        state = try TestPaths.temporaryDirectory("device")
        profile = try FirmwareProfile.load(path: TestPaths.profiles.appendingPathComponent("bluefield-3-modeled.json").path)
    }

    func device(_ spec: DeviceSpec = DeviceCatalog.blueField3, firmware: String? = nil, in directory: URL? = nil) throws -> ModeledDevice {
        try ModeledDeviceStore.device(spec: spec, stateDirectory: directory ?? state, firmware: firmware)
    }

    static func certificate(_ pem: String) throws -> Certificate { try Certificate(pemEncoded: pem) }

    func verifier(trusting device: ModeledDevice, profile: FirmwareProfile? = nil) throws -> EvidenceVerifier {
        EvidenceVerifier(profile: profile ?? self.profile, vendorCAs: [try Self.certificate(device.vendorCAPEM)])
    }

    /// Evidence with only the device part filled (the TPM part is not looked at by the device checks).
    static func evidence(_ devices: [DeviceEvidence]?) -> Evidence {
        Evidence(nonce: "00", quote: .init(attest: "", signature: ""), ak: .init(public: "", pem: "", name: ""),
                 pcrs: .init(bank: "sha256", values: [:]), eventLog: [], ekCertificate: nil, model: nil, profile: "test", devices: devices)
    }

    @Test func acceptsFreshDeviceEvidence() async throws {
        let d = try device()
        let checks = try await verifier(trusting: d).deviceChecks(Self.evidence([try d.evidence(nonce: nonce)]), nonce: nonce)
        #expect(checks.map(\.check) == EvidenceVerifier.deviceCheckNames)
        #expect(checks.allSatisfy { $0.result == .pass }, "\(checks)")
        #expect(checks[0].detail.contains("bluefield-3, modeled"))
    }

    @Test func refusesWrongFirmwareMeasurement() async throws {
        let d = try device(firmware: "securenode-modeled-firmware/bluefield-3/0-not-approved")
        let checks = try await verifier(trusting: d).deviceChecks(Self.evidence([try d.evidence(nonce: nonce)]), nonce: nonce)
        #expect(checks.failedCheck == "device-measurements")
        #expect(checks.failure.contains("measurement 1 (mutable-firmware)"))
        #expect(checks.prefix(3).allSatisfy { $0.result == .pass }, "genuine device, genuine signature, fresh: only the firmware is wrong")
    }

    @Test func refusesBadDeviceSignature() async throws {
        let d = try device()
        var e = try d.evidence(nonce: nonce)
        var raw = try #require(Data(base64Encoded: e.signature))
        raw[10] ^= 0x01
        e.signature = raw.base64EncodedString()
        let checks = try await verifier(trusting: d).deviceChecks(Self.evidence([e]), nonce: nonce)
        #expect(checks.failedCheck == "device-signature")
    }

    @Test func refusesMeasurementEditedAfterSigning() async throws {
        // A device running unapproved firmware; its answer is edited to show the approved digest.
        let d = try device(firmware: "securenode-modeled-firmware/bluefield-3/0-not-approved")
        var e = try d.evidence(nonce: nonce)
        e.measurements[0].digest = try #require(profile.backend.deviceReferenceValues["1"]?.first)
        let checks = try await verifier(trusting: d).deviceChecks(Self.evidence([e]), nonce: nonce)
        #expect(checks.failedCheck == "device-signature")
    }

    @Test func refusesWrongDeviceNonce() async throws {
        // The device's answer to an earlier challenge, replayed for this one.
        let d = try device()
        let old: [UInt8] = (0 ..< 16).map { _ in UInt8.random(in: 0...255) }
        let checks = try await verifier(trusting: d).deviceChecks(Self.evidence([try d.evidence(nonce: old)]), nonce: nonce)
        #expect(checks.failedCheck == "device-nonce")
        #expect(checks.failure.contains("stale or replayed"))
        #expect(checks[1].result == .pass, "the replayed answer is genuinely signed")
    }

    @Test func refusesRelabelledNonce() async throws {
        let d = try device()
        var e = try d.evidence(nonce: (0 ..< 16).map { _ in 7 })
        e.nonce = hexString(nonce)
        let checks = try await verifier(trusting: d).deviceChecks(Self.evidence([e]), nonce: nonce)
        #expect(checks.failedCheck == "device-signature")
    }

    @Test func refusesUntrustedDeviceCertificate() async throws {
        // A device whose certificate comes from a CA the verifier does not trust (another "vendor").
        let d = try device()
        let other = try device(in: try TestPaths.temporaryDirectory("other-vendor"))
        let checks = try await verifier(trusting: other).deviceChecks(Self.evidence([try d.evidence(nonce: nonce)]), nonce: nonce)
        #expect(checks.failedCheck == "device-certificate")
        #expect(checks.failure.contains("does not chain to a trusted vendor CA"))
    }

    @Test func refusesADeviceCertificateOfAnotherKind() async throws {
        // A genuine Vera device answering as a BlueField-3, with Vera's vendor CA trusted.
        let vera = try device(DeviceCatalog.vera)
        var e = try vera.evidence(nonce: nonce)
        e.kind = "bluefield-3"
        let checks = try await verifier(trusting: vera).deviceChecks(Self.evidence([e]), nonce: nonce)
        #expect(checks.failedCheck == "device-certificate")
        #expect(checks.failure.contains("is not for a bluefield-3 device"))
    }

    @Test func refusesMissingOrExtraDevices() async throws {
        let d = try device()
        let v = try verifier(trusting: d)
        #expect(await v.deviceChecks(Self.evidence(nil), nonce: nonce).failure.contains("the evidence has no device evidence"))
        let e = try d.evidence(nonce: nonce)
        #expect(await v.deviceChecks(Self.evidence([e, e]), nonce: nonce).failure.contains("selects one bluefield-3 device, but the evidence has 2"))
        let vera = try device(DeviceCatalog.vera).evidence(nonce: nonce)
        #expect(await v.deviceChecks(Self.evidence([vera]), nonce: nonce).failure.contains("devices[0] is a vera device"))
    }

    @Test func aCPUProfileRefusesDeviceEvidence() async throws {
        let d = try device()
        let cpu = try FirmwareProfile.load(path: TestPaths.profiles.appendingPathComponent("swtpm-dev.json").path)
        let checks = try await verifier(trusting: d, profile: cpu).deviceChecks(Self.evidence([try d.evidence(nonce: nonce)]), nonce: nonce)
        #expect(checks.failedCheck == "device-certificate")
        #expect(checks.failure.contains("selects the cpu backend"))
        #expect(EvidenceVerifier(profile: cpu).expectedCheckNames == EvidenceVerifier.checkNames)
    }

    @Test func unvalidatedChainsFailClosed() async throws {
        let d = try device()
        let checks = try await verifier(trusting: d).deviceChecks(Self.evidence([try d.evidence(nonce: nonce)]), nonce: nonce, validated: false)
        #expect(checks.failedCheck == "device-certificate")
        #expect(checks.failure.contains("was not validated"))
    }

    @Test func transcriptIsTheDocumentedBytes() throws {
        let digest = [UInt8](repeating: 0xAB, count: 48)
        let blocks = [DeviceEvidence.Measurement(index: 1, type: .mutableFirmware, digest: digest),
                      DeviceEvidence.Measurement(index: 2, type: .hardwareConfiguration, digest: digest)]
        let bytes = try DeviceEvidence.transcript(kind: "vera", nonce: [1, 2, 3, 4, 5, 6, 7, 8], measurements: blocks)
        var expected = Array("securenode.device-measurements.v1".utf8) + [0]
        expected += [4] + Array("vera".utf8)
        expected += [8, 1, 2, 3, 4, 5, 6, 7, 8]
        expected += [2]
        expected += [1, 0x01, 0, 48] + digest
        expected += [2, 0x02, 0, 48] + digest
        #expect(bytes == expected)
        #expect(bytes.count == 34 + 5 + 9 + 1 + 2 * 52)
    }

    @Test func transcriptRefusesWhatItCannotEncode() {
        let digest = [UInt8](repeating: 1, count: 48)
        var bad = DeviceEvidence.Measurement(index: 0, type: .mutableFirmware, digest: digest)
        #expect(throws: AttestationError.self) { try DeviceEvidence.transcript(kind: "vera", nonce: [1], measurements: [bad]) }
        bad.index = 1
        bad.type = "bios"
        #expect((try? DeviceEvidence.transcript(kind: "vera", nonce: [1], measurements: [bad])) == nil)
        bad.type = MeasurementType.mutableFirmware.rawValue
        bad.digest = String(repeating: "ab", count: 32)
        #expect((try? DeviceEvidence.transcript(kind: "vera", nonce: [1], measurements: [bad])) == nil)
    }

    @Test func provisioningKeepsTheKeyOwnerOnlyAndForgetsTheCAKey() throws {
        let first = try device()
        let again = try device()
        #expect(first.certificatePEM == again.certificatePEM, "provisioned once, then loaded")
        let dir = ModeledDeviceStore.directory(stateDirectory: state, kind: "bluefield-3")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(files == ["device.key.pem", "device.pem", "firmware", "vendor-ca.pem"])
        let mode = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("device.key.pem").path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let dirMode = try FileManager.default.attributesOfItem(atPath: dir.path)[.posixPermissions] as? Int
        #expect(dirMode == 0o700)
        let keys = try files.filter { try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8).contains("PRIVATE KEY") }
        #expect(keys == ["device.key.pem"], "the vendor CA's private key is not kept")
        let leaf = try Self.certificate(first.certificatePEM)
        #expect(String(describing: leaf.subject).contains("OU=bluefield-3"))
        #expect(P384.Signing.PublicKey(leaf.publicKey) != nil)
    }

    @Test func refusesAKeyThatIsNotTheCertificates() throws {
        _ = try device()
        let other = try TestPaths.temporaryDirectory("swap")
        _ = try device(in: other)
        let dir = ModeledDeviceStore.directory(stateDirectory: state, kind: "bluefield-3")
        let otherCertificate = try String(contentsOf: ModeledDeviceStore.directory(stateDirectory: other, kind: "bluefield-3").appendingPathComponent("device.pem"), encoding: .utf8)
        try otherCertificate.write(to: dir.appendingPathComponent("device.pem"), atomically: true, encoding: .utf8)
        #expect(throws: ModeledDeviceStore.Failure.self) { try device() }
    }

    @Test func evidenceWithoutDevicesIsTheOldFormat() throws {
        let old = Self.evidence(nil)
        let json = String(decoding: old.jsonData(), as: UTF8.self)
        #expect(!json.contains("devices"))
        #expect(try Evidence(json: old.jsonData()).devices == nil)
        let d = try device()
        let with = Self.evidence([try d.evidence(nonce: nonce)])
        #expect(try Evidence(json: with.jsonData()) == with)
    }
}
