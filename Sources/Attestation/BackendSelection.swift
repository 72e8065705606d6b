import Foundation
import ModelSigning

/// A profile's `backend`: which compute backend the node runs and, for a device backend, how the
/// verifier appraises the device's evidence. See firmware-profiles/README.md ("backend").
///
/// In JSON it is either a string, `"cpu"` (profiles written before device backends), or an object:
///
///     {"kind": "bluefield-3",
///      "model": { the modeled device, every number with its source: documentation, checked by
///                 `securenode profile check` against the built-in model, ignored here },
///      "deviceReferenceValues": {"1": ["<SHA-384 hex>", ...], "2": [...]},
///      "vendorCAs": ["<PEM file or directory>", ...]}
public struct BackendSelection: Sendable, Codable, Equatable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The real backend: the host CPU.
    public static let cpuKind = "cpu"
    /// The modeled device backends (the Accelerators module implements each).
    public static let deviceKinds = ["bluefield-3", "bluefield-4", "vera"]

    public var kind: String
    /// Measurement block index (decimal text, 1-254) → allowed SHA-384 digests (hex, any of).
    /// Every listed index must be present in the device's evidence; unlisted blocks are not pinned.
    public var deviceReferenceValues: [String: [String]]
    /// PEM files (or directories of `*.pem`) of the device vendor CAs trusted to issue device
    /// certificates; relative to the profile's directory, `${VAR}` expanded.
    public var vendorCAs: [String]

    public init(kind: String, deviceReferenceValues: [String: [String]] = [:], vendorCAs: [String] = []) {
        self.kind = kind
        self.deviceReferenceValues = deviceReferenceValues
        self.vendorCAs = vendorCAs
    }

    public init(stringLiteral kind: String) { self.init(kind: kind) }

    /// Whether the backend is a device whose evidence the verifier must appraise.
    public var selectsDevice: Bool { kind != Self.cpuKind }
    public var description: String { kind }

    enum CodingKeys: String, CodingKey { case kind, deviceReferenceValues, vendorCAs }

    public init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let kind = try? single.decode(String.self) {
            self.init(kind: kind)
            return
        }
        guard let keyed = try? decoder.container(keyedBy: CodingKeys.self) else {
            throw DecodingError.typeMismatch(BackendSelection.self, .init(codingPath: decoder.codingPath,
                debugDescription: "backend is a string or an object"))
        }
        self.init(kind: try keyed.decode(String.self, forKey: .kind),
                  deviceReferenceValues: try keyed.decodeIfPresent([String: [String]].self, forKey: .deviceReferenceValues) ?? [:],
                  vendorCAs: try keyed.decodeIfPresent([String].self, forKey: .vendorCAs) ?? [])
    }

    /// A plain CPU backend is written as the string `"cpu"`, as before; anything else as an object.
    public func encode(to encoder: any Encoder) throws {
        if kind == Self.cpuKind, deviceReferenceValues.isEmpty, vendorCAs.isEmpty {
            var single = encoder.singleValueContainer()
            try single.encode(kind)
            return
        }
        var keyed = encoder.container(keyedBy: CodingKeys.self)
        try keyed.encode(kind, forKey: .kind)
        try keyed.encode(deviceReferenceValues, forKey: .deviceReferenceValues)
        try keyed.encode(vendorCAs, forKey: .vendorCAs)
    }

    /// The schema's rules for `backend`; the message names the field (the caller prefixes the profile).
    func validate() throws(AttestationError) {
        func fail(_ message: String) -> AttestationError { AttestationError(.invalidProfile, message) }
        let known = [Self.cpuKind] + Self.deviceKinds
        guard known.contains(kind) else {
            throw fail("backend.kind \"\(kind)\" is not available (one of \(known.joined(separator: ", ")))")
        }
        guard selectsDevice else {
            guard deviceReferenceValues.isEmpty, vendorCAs.isEmpty else {
                throw fail("backend.deviceReferenceValues and backend.vendorCAs are only for a device backend, not \"cpu\"")
            }
            return
        }
        guard !vendorCAs.isEmpty, vendorCAs.allSatisfy({ !$0.isEmpty }) else {
            throw fail("backend.vendorCAs must name at least one device vendor CA for \(kind)")
        }
        guard !deviceReferenceValues.isEmpty else {
            throw fail("backend.deviceReferenceValues must pin at least one measurement block of the \(kind) device")
        }
        for (key, values) in deviceReferenceValues.sorted(by: { $0.key < $1.key }) {
            guard let index = Int(key), String(index) == key, (1...254).contains(index) else {
                throw fail("backend.deviceReferenceValues key \"\(key)\" is not a measurement index 1-254")
            }
            guard !values.isEmpty else { throw fail("backend.deviceReferenceValues[\(key)] allows no value") }
            for value in values where ModelSigning.bytes(fromHex: value)?.count != 48 {
                throw fail("backend.deviceReferenceValues[\(key)]: \"\(value)\" is not a SHA-384 value (96 hex digits)")
            }
        }
    }
}
