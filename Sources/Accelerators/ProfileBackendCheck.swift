import Attestation
import Foundation

/// The device side of a profile that selects a device backend, checked against the built-in model:
/// `backend.model` (the device spec with its sources, for readers of the profile) must equal
/// ``DeviceCatalog``'s spec, so that the documentation in a profile never drifts from the numbers
/// the node uses; and `backend.deviceReferenceValues` must allow the measurements of a device of
/// that spec running its catalog firmware. `FirmwareProfile.validate()` (Attestation) checks the
/// rest of `backend`.
public enum ProfileBackendCheck {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Checks the profile at `path` (already loaded and validated as `profile`); returns a summary.
    /// A `cpu` profile has nothing to check here.
    public static func check(path: String, profile: FirmwareProfile) throws(Failure) -> String? {
        guard profile.backend.selectsDevice else { return nil }
        let kind = profile.backend.kind
        func fail(_ message: String) -> Failure { Failure(description: "profile \(profile.id): \(message)") }
        guard let spec = DeviceCatalog.spec(kind: kind) else { throw fail("backend.kind \(kind) has no device model") }
        guard let data = FileManager.default.contents(atPath: path),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let backend = root["backend"] as? [String: Any] else {
            throw fail("cannot read backend from \(path)")
        }
        guard let model = backend["model"] else {
            throw fail("backend.model is missing: it documents the modeled \(kind) device (`securenode backends profile-backend \(kind)` prints it)")
        }
        let builtIn: Any
        do {
            builtIn = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(spec))
        } catch {
            throw fail("cannot encode the built-in \(kind) model")
        }
        if let path = firstDifference(model, builtIn, path: "backend.model") {
            throw fail("\(path) differs from the built-in \(kind) model (`securenode backends profile-backend \(kind)` prints it)")
        }
        for block in ModeledDevice.measurements(spec: spec, firmware: spec.firmware) {
            guard let allowed = profile.backend.deviceReferenceValues[String(block.index)] else {
                throw fail("backend.deviceReferenceValues does not pin measurement \(block.index) (\(block.type)) of the modeled \(kind) device")
            }
            guard allowed.contains(where: { $0.lowercased() == block.digest }) else {
                throw fail("backend.deviceReferenceValues[\(block.index)] does not allow the modeled \(kind) device's \(block.type) measurement \(block.digest)")
            }
        }
        return "backend \(kind) (modeled): model matches the built-in one, \(profile.backend.deviceReferenceValues.count) pinned measurement(s), "
            + "\(profile.backend.vendorCAs.count) vendor CA reference(s)"
    }

    /// The profile's `backend` object for `kind`: the model, reference values for the catalog
    /// firmware, and the vendor CA of a node whose state directory is `$SECURENODE_STATE_DIR`.
    public static func backendObject(kind: String) throws(Failure) -> [String: Any] {
        guard let spec = DeviceCatalog.spec(kind: kind) else { throw Failure(description: "no modeled device \(kind)") }
        let model: Any
        do {
            model = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(spec))
        } catch {
            throw Failure(description: "cannot encode the \(kind) model")
        }
        var references: [String: [String]] = [:]
        for block in ModeledDevice.measurements(spec: spec, firmware: spec.firmware) { references[String(block.index)] = [block.digest] }
        return ["kind": kind, "model": model, "deviceReferenceValues": references,
                "vendorCAs": ["${SECURENODE_STATE_DIR}/devices/\(kind)/vendor-ca.pem"]]
    }

    /// The dotted path of the first difference between two JSON values, or nil when they are equal.
    static func firstDifference(_ a: Any, _ b: Any, path: String) -> String? {
        switch (a, b) {
        case let (x as [String: Any], y as [String: Any]):
            for key in Set(x.keys).union(y.keys).sorted() {
                guard let u = x[key], let v = y[key] else { return "\(path).\(key)" }
                if let d = firstDifference(u, v, path: "\(path).\(key)") { return d }
            }
            return nil
        case let (x as [Any], y as [Any]):
            guard x.count == y.count else { return path }
            for (i, (u, v)) in zip(x, y).enumerated() {
                if let d = firstDifference(u, v, path: "\(path)[\(i)]") { return d }
            }
            return nil
        case let (x as String, y as String):
            return x == y ? nil : path
        case let (x as NSNumber, y as NSNumber):
            return x == y ? nil : path
        default:
            return path
        }
    }
}
