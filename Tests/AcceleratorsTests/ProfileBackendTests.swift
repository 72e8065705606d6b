import Accelerators
import Attestation
import Foundation
import Testing

/// The profile schema's `backend` (string or object) and the modeled platforms' profiles.
struct ProfileBackendTests {
    static let modeledProfiles = ["bluefield-3-modeled.json", "bluefield-4-modeled.json", "vera-modeled.json"]

    static func path(_ name: String) -> String { TestPaths.profiles.appendingPathComponent(name).path }

    /// The JSON of `name` with `edit` applied, written to a temporary file; returns its path.
    static func edited(_ name: String, _ edit: (inout [String: Any]) -> Void) throws -> String {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path(name)))) as? [String: Any])
        edit(&object)
        let dir = try TestPaths.temporaryDirectory("profile")
        let url = dir.appendingPathComponent(name)
        try JSONSerialization.data(withJSONObject: object).write(to: url)
        return url.path
    }

    static func editBackend(_ name: String, _ edit: @escaping (inout [String: Any]) -> Void) throws -> String {
        try edited(name) { profile in
            var backend = profile["backend"] as? [String: Any] ?? [:]
            edit(&backend)
            profile["backend"] = backend
        }
    }

    /// The reason a profile is refused by `securenode profile check` (schema, then the device model).
    static func refusal(_ path: String) -> String? {
        do {
            let profile = try FirmwareProfile.load(path: path)
            _ = try ProfileBackendCheck.check(path: path, profile: profile)
            return nil
        } catch let error as AttestationError {
            return error.reason
        } catch {
            return String(describing: error)
        }
    }

    @Test(arguments: modeledProfiles)
    func modeledProfilesPassTheCheck(name: String) throws {
        let profile = try FirmwareProfile.load(path: Self.path(name))
        #expect(profile.backend.selectsDevice)
        #expect(name.hasPrefix(profile.backend.kind))
        let summary = try ProfileBackendCheck.check(path: Self.path(name), profile: profile)
        #expect(summary?.contains("model matches the built-in one") == true)
        // Reference values are exactly the modeled device's measurements (nothing else allowed).
        let spec = try #require(DeviceCatalog.spec(kind: profile.backend.kind))
        let expected = Dictionary(uniqueKeysWithValues: ModeledDevice.measurements(spec: spec, firmware: spec.firmware).map { (String($0.index), [$0.digest]) })
        #expect(profile.backend.deviceReferenceValues == expected)
        #expect(profile.backend.vendorCAs == ["${SECURENODE_STATE_DIR}/devices/\(spec.kind)/vendor-ca.pem"])
    }

    @Test func cpuProfilesKeepTheirStringBackend() throws {
        for name in ["swtpm-dev.json", "generic-x86-uefi-secureboot.json"] {
            let profile = try FirmwareProfile.load(path: Self.path(name))
            #expect(profile.backend == "cpu" && !profile.backend.selectsDevice)
            #expect(try ProfileBackendCheck.check(path: Self.path(name), profile: profile) == nil)
            // Written back as it was: the string "cpu".
            let json = String(decoding: try JSONEncoder().encode(profile.backend), as: UTF8.self)
            #expect(json == "\"cpu\"")
        }
    }

    @Test func refusesUnknownBackendKind() throws {
        let p = try Self.editBackend("bluefield-3-modeled.json") { $0["kind"] = "bluefield-9" }
        #expect(Self.refusal(p)?.contains("backend.kind \"bluefield-9\" is not available") == true)
        let s = try Self.edited("swtpm-dev.json") { $0["backend"] = "gpu" }
        #expect(Self.refusal(s)?.contains("backend.kind \"gpu\" is not available") == true)
    }

    @Test func refusesDeviceFieldsOnTheCPUBackend() throws {
        let p = try Self.editBackend("bluefield-3-modeled.json") { $0["kind"] = "cpu" }
        #expect(Self.refusal(p)?.contains("backend.deviceReferenceValues and backend.vendorCAs are only for a device backend") == true)
    }

    @Test func refusesADeviceBackendWithoutVendorCAs() throws {
        let p = try Self.editBackend("vera-modeled.json") { $0["vendorCAs"] = [String]() }
        #expect(Self.refusal(p)?.contains("backend.vendorCAs must name at least one device vendor CA for vera") == true)
    }

    @Test func refusesADeviceBackendWithoutReferenceValues() throws {
        let p = try Self.editBackend("vera-modeled.json") { $0["deviceReferenceValues"] = [String: [String]]() }
        #expect(Self.refusal(p)?.contains("backend.deviceReferenceValues must pin at least one measurement block") == true)
    }

    @Test(arguments: ["0", "255", "01", "x"])
    func refusesABadMeasurementIndex(key: String) throws {
        let p = try Self.editBackend("bluefield-3-modeled.json") { $0["deviceReferenceValues"] = [key: [String(repeating: "ab", count: 48)]] }
        #expect(Self.refusal(p)?.contains("backend.deviceReferenceValues key \"\(key)\" is not a measurement index 1-254") == true)
    }

    @Test func refusesAReferenceValueThatIsNotSHA384() throws {
        let sha256 = String(repeating: "ab", count: 32)
        let p = try Self.editBackend("bluefield-3-modeled.json") { $0["deviceReferenceValues"] = ["1": [sha256]] }
        #expect(Self.refusal(p)?.contains("backend.deviceReferenceValues[1]: \"\(sha256)\" is not a SHA-384 value") == true)
    }

    @Test func refusesAModelThatDriftedFromTheBuiltInOne() throws {
        let p = try Self.editBackend("bluefield-3-modeled.json") { backend in
            var model = backend["model"] as! [String: Any]
            var bandwidth = model["memoryBandwidth"] as! [String: Any]
            bandwidth["value"] = 200e9
            model["memoryBandwidth"] = bandwidth
            backend["model"] = model
        }
        #expect(Self.refusal(p)?.contains("backend.model.memoryBandwidth.value differs from the built-in bluefield-3 model") == true)
        let q = try Self.editBackend("vera-modeled.json") { backend in backend["model"] = nil }
        #expect(Self.refusal(q)?.contains("backend.model is missing") == true)
    }

    @Test func refusesReferenceValuesThatMissTheModeledFirmware() throws {
        let other = String(repeating: "cd", count: 48)
        let p = try Self.editBackend("bluefield-4-modeled.json") { backend in
            var refs = backend["deviceReferenceValues"] as! [String: Any]
            refs["1"] = [other]
            backend["deviceReferenceValues"] = refs
        }
        #expect(Self.refusal(p)?.contains("backend.deviceReferenceValues[1] does not allow the modeled bluefield-4 device's mutable-firmware measurement") == true)
    }
}
