import TPMTestSupport
import Accelerators
import Attestation
import Crypto
import Foundation
import ModelSigning
import NodeCore
import SwiftASN1
import Testing
import X509

/// A node on a real swtpm whose profile selects the modeled BlueField-3: its evidence carries the
/// device's signed measurements and passes every check, TPM and device; each device tampering
/// fails its named check while every TPM check still passes.
@Suite(.enabled(if: TestPaths.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct ModeledNodeAttestationTests {
    let t: RunningTPM
    let state: URL
    let profile: FirmwareProfile
    let publisherKey = ECDSAPrivateKey.p256(.init())
    let model: VerifiedModel
    let nonce: [UInt8] = (0 ..< 16).map { _ in UInt8.random(in: 0...255) }

    init() async throws {
        t = try await RunningTPM()
        state = t.directory.appendingPathComponent("state")
        var profile = try FirmwareProfile.load(path: TestPaths.profiles.appendingPathComponent("bluefield-3-modeled.json").path)
        profile.modelSigners = [.init(name: "test publisher", publicKeyFingerprint: publisherKey.publicKey.fingerprint)]
        profile.allowLocalSigners = false
        self.profile = profile
        let modelDir = t.directory.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: modelDir, withIntermediateDirectories: true)
        try Data("weights".utf8).write(to: modelDir.appendingPathComponent("w.gguf"))
        let bundle = try ModelSigner.sign(model: modelDir.path, key: publisherKey)
        model = try await ModelVerifier.verify(model: modelDir.path, bundle: bundle, trust: .publicKey(publisherKey.publicKey))
    }

    /// The node as `securenode quote`/`serve` build it: devices from the profile, in the state directory.
    func attestor(profile: FirmwareProfile? = nil) throws -> Attestor {
        let p = profile ?? self.profile
        return Attestor(tpm: t.tpm, profile: p, store: EventLogStore(directory: state),
                        devices: try ModeledDeviceStore.attesters(for: p, stateDirectory: state))
    }

    /// The verifier an orchestrator runs: this AK trusted, the vendor CA from the node's state
    /// directory (as the profile's `${SECURENODE_STATE_DIR}/devices/bluefield-3/vendor-ca.pem` says).
    func verifier(for evidence: Evidence, vendorCA: String? = nil, profile: FirmwareProfile? = nil) throws -> EvidenceVerifier {
        var p = profile ?? self.profile
        p.trustedAKs = [evidence.ak.name]
        guard p.backend.selectsDevice else { return EvidenceVerifier(profile: p) }
        let pem = try vendorCA ?? String(contentsOf: ModeledDeviceStore.directory(stateDirectory: state, kind: "bluefield-3")
            .appendingPathComponent("vendor-ca.pem"), encoding: .utf8)
        return EvidenceVerifier(profile: p, vendorCAs: [try Certificate(pemEncoded: pem)])
    }

    func measuredEvidence(_ attestor: Attestor, nonce: [UInt8]? = nil) async throws -> Evidence {
        try await attestor.measure(model)
        return try await attestor.evidence(nonce: nonce ?? self.nonce)
    }

    /// The TPM checks all pass and the named device check is the one that fails.
    func expectOnlyDeviceCheckFails(_ appraisal: Appraisal, _ name: String) {
        #expect(appraisal.failedCheck == name, "\(appraisal.checks)")
        let tpmChecks = appraisal.checks.filter { EvidenceVerifier.checkNames.contains($0.check) }
        #expect(tpmChecks.count == EvidenceVerifier.checkNames.count && tpmChecks.allSatisfy { $0.result == .pass })
    }

    @Test func acceptsEvidenceWithItsDeviceAndNamesEveryCheck() async throws {
        let evidence = try await measuredEvidence(try attestor())
        let device = try #require(evidence.devices?.first)
        #expect(evidence.devices?.count == 1 && device.kind == "bluefield-3" && device.modeled)
        let v = try verifier(for: evidence)
        let appraisal = await v.appraiseWithDevices(evidence, nonce: nonce)
        #expect(appraisal.result == .pass, "\(appraisal.checks)")
        #expect(appraisal.checks.map(\.check) == EvidenceVerifier.checkNames + EvidenceVerifier.deviceCheckNames)
        // As received over HTTP: the JSON, evidence-format first.
        let json = await v.appraiseWithDevices(json: Array(evidence.jsonData()), nonce: nonce)
        #expect(json.result == .pass)
        #expect(json.checks.map(\.check) == ["evidence-format"] + v.expectedCheckNames)
        #expect(try Evidence(json: evidence.jsonData()) == evidence)
    }

    @Test func refusesWrongFirmwareMeasurement() async throws {
        // The node's device was provisioned with firmware the profile does not approve.
        _ = try ModeledDeviceStore.device(spec: DeviceCatalog.blueField3, stateDirectory: state,
                                          firmware: "securenode-modeled-firmware/bluefield-3/0-not-approved")
        let evidence = try await measuredEvidence(try attestor())
        expectOnlyDeviceCheckFails(try await verifier(for: evidence).appraiseWithDevices(evidence, nonce: nonce), "device-measurements")
    }

    @Test func refusesBadDeviceSignature() async throws {
        var evidence = try await measuredEvidence(try attestor())
        var raw = try #require(Data(base64Encoded: evidence.devices![0].signature))
        raw[raw.count - 1] ^= 0x80
        evidence.devices![0].signature = raw.base64EncodedString()
        expectOnlyDeviceCheckFails(try await verifier(for: evidence).appraiseWithDevices(evidence, nonce: nonce), "device-signature")
    }

    @Test func refusesWrongDeviceNonce() async throws {
        // Fresh TPM evidence, but the device part copied from the answer to an earlier challenge.
        let attestor = try attestor()
        let earlier: [UInt8] = (0 ..< 16).map { _ in UInt8.random(in: 0...255) }
        let old = try await measuredEvidence(attestor, nonce: earlier)
        var evidence = try await attestor.evidence(nonce: nonce)
        evidence.devices = old.devices
        expectOnlyDeviceCheckFails(try await verifier(for: evidence).appraiseWithDevices(evidence, nonce: nonce), "device-nonce")
    }

    @Test func refusesUntrustedDeviceCertificate() async throws {
        let evidence = try await measuredEvidence(try attestor())
        // The verifier trusts another vendor CA than the one that issued this device's certificate.
        let other = try ModeledDeviceStore.device(spec: DeviceCatalog.blueField3, stateDirectory: try TestPaths.temporaryDirectory("vendor"))
        let appraisal = try await verifier(for: evidence, vendorCA: other.vendorCAPEM).appraiseWithDevices(evidence, nonce: nonce)
        expectOnlyDeviceCheckFails(appraisal, "device-certificate")
    }

    @Test func refusesEvidenceWithoutTheDevice() async throws {
        var evidence = try await measuredEvidence(try attestor())
        evidence.devices = nil
        expectOnlyDeviceCheckFails(try await verifier(for: evidence).appraiseWithDevices(evidence, nonce: nonce), "device-certificate")
    }

    @Test func nodeRefusesToAttestWithoutItsDevice() async throws {
        let bare = Attestor(tpm: t.tpm, profile: profile, store: EventLogStore(directory: state))
        try await bare.measure(model)
        await #expect(throws: NodeError.self) { try await bare.evidence(nonce: nonce) }
    }

    @Test func cpuProfileEvidenceIsAsBefore() async throws {
        var cpu = try FirmwareProfile.load(path: TestPaths.profiles.appendingPathComponent("swtpm-dev.json").path)
        cpu.modelSigners = profile.modelSigners
        cpu.allowLocalSigners = false
        let evidence = try await measuredEvidence(try attestor(profile: cpu))
        #expect(evidence.devices == nil)
        #expect(!String(decoding: evidence.jsonData(), as: UTF8.self).contains("\"devices\""))
        let appraisal = try await verifier(for: evidence, profile: cpu).appraiseWithDevices(evidence, nonce: nonce)
        #expect(appraisal.result == .pass, "\(appraisal.checks)")
        #expect(appraisal.checks.map(\.check) == EvidenceVerifier.checkNames)
        // The synchronous appraisal, as existing callers use it, says the same.
        #expect(try verifier(for: evidence, profile: cpu).appraise(evidence, nonce: nonce).checks == appraisal.checks)
    }
}
