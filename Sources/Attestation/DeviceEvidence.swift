import Foundation
import ModelSigning

/// Signed measurements from a compute device (SPDM-style: GET_MEASUREMENTS answered for a nonce),
/// carried in `Evidence.devices`. Documented in firmware-profiles/README.md ("Device evidence").
///
/// The signature covers ``transcript``, rebuilt by the verifier from these fields (never taken from
/// the evidence): the kind, the nonce and every measurement block, in order.
public struct DeviceEvidence: Sendable, Codable, Equatable {
    public static let signatureAlgorithmName = "ecdsa-p384-sha384"

    /// One measurement block, as in SPDM's DMTF measurement specification: an index, what is
    /// measured, and the SHA-384 digest of it.
    public struct Measurement: Sendable, Codable, Equatable {
        /// 1...254 (SPDM measurement indices; 0 and 255 are request codes, not blocks).
        public var index: Int
        /// ``MeasurementType`` raw value, e.g. "mutable-firmware".
        public var type: String
        /// SHA-384, lower-case hex (96 digits).
        public var digest: String

        public init(index: Int, type: MeasurementType, digest: [UInt8]) {
            self.index = index
            self.type = type.rawValue
            self.digest = hexString(digest)
        }
    }

    /// Backend kind of the device ("bluefield-3", "bluefield-4", "vera").
    public var kind: String
    /// True for the modeled devices of this repository (no real hardware answered).
    public var modeled: Bool
    /// The nonce the device signed (hex): the verifier's nonce.
    public var nonce: String
    public var measurements: [Measurement]
    /// Always ``signatureAlgorithmName``: ECDSA P-384 over SHA-384 of the transcript.
    public var signatureAlgorithm: String
    /// Base64 of the raw signature r || s (48 + 48 bytes, big-endian), as SPDM encodes ECDSA.
    public var signature: String
    /// PEM certificates, the device's (leaf) first, then any intermediates; the vendor root is
    /// not included (the verifier has it from the profile's `backend.vendorCAs`).
    public var certificates: [String]

    public init(kind: String, modeled: Bool, nonce: [UInt8], measurements: [Measurement], signature: [UInt8], certificates: [String]) {
        self.kind = kind
        self.modeled = modeled
        self.nonce = hexString(nonce)
        self.measurements = measurements
        self.signatureAlgorithm = Self.signatureAlgorithmName
        self.signature = Data(signature).base64EncodedString()
        self.certificates = certificates
    }

    /// The exact bytes the device signs (all integers big-endian):
    ///
    ///     "securenode.device-measurements.v1"  (33 ASCII bytes)
    ///     0x00
    ///     u8  length of kind,  kind (ASCII)
    ///     u8  length of nonce, nonce (raw bytes, 8-64)
    ///     u8  number of blocks
    ///     per block, in order: u8 index, u8 type code (``MeasurementType/code``),
    ///                          u16 digest length (48), digest (raw bytes)
    ///
    /// Fails (naming the field) when a field cannot be encoded: a kind or nonce longer than 255
    /// bytes, a block index outside 1...254, an unknown type, or a digest that is not SHA-384 hex.
    public static func transcript(kind: String, nonce: [UInt8], measurements: [Measurement]) throws(AttestationError) -> [UInt8] {
        let kindBytes = Array(kind.utf8)
        guard !kindBytes.isEmpty, kindBytes.count <= 255, kindBytes.allSatisfy({ $0 >= 0x21 && $0 < 0x7f }) else {
            throw AttestationError(.malformed, "device kind \"\(kind)\" is not 1-255 printable ASCII characters")
        }
        guard nonce.count <= 255 else { throw AttestationError(.malformed, "device nonce is longer than 255 bytes") }
        guard measurements.count <= 255 else { throw AttestationError(.malformed, "more than 255 measurement blocks") }
        var out = Array(transcriptLabel.utf8) + [0]
        out.append(UInt8(kindBytes.count))
        out += kindBytes
        out.append(UInt8(nonce.count))
        out += nonce
        out.append(UInt8(measurements.count))
        for (i, block) in measurements.enumerated() {
            guard (1...254).contains(block.index) else {
                throw AttestationError(.malformed, "measurements[\(i)].index \(block.index) is not 1-254")
            }
            guard let type = MeasurementType(rawValue: block.type) else {
                throw AttestationError(.malformed, "measurements[\(i)].type \"\(block.type)\" is not a known measurement type")
            }
            guard let digest = bytes(fromHex: block.digest), digest.count == 48 else {
                throw AttestationError(.malformed, "measurements[\(i)].digest is not a SHA-384 value (96 hex digits)")
            }
            out.append(UInt8(block.index))
            out.append(type.code)
            out += [0, 48]
            out += digest
        }
        return out
    }

    public static let transcriptLabel = "securenode.device-measurements.v1"
}

/// What a measurement block measures: SPDM's DMTFSpecMeasurementValueType codes (DSP0274).
public enum MeasurementType: String, Sendable, CaseIterable, Codable {
    case immutableROM = "immutable-rom"
    case mutableFirmware = "mutable-firmware"
    case hardwareConfiguration = "hardware-configuration"
    case firmwareConfiguration = "firmware-configuration"

    public var code: UInt8 {
        switch self {
        case .immutableROM: 0x00
        case .mutableFirmware: 0x01
        case .hardwareConfiguration: 0x02
        case .firmwareConfiguration: 0x03
        }
    }
}

/// A device that answers for a nonce with signed measurements (a modeled one in this repository;
/// a real SPDM responder later). The node puts its answers in `Evidence.devices`.
public protocol DeviceAttester: Sendable {
    /// Backend kind, as in the profile's `backend.kind`.
    var kind: String { get }
    func evidence(nonce: [UInt8]) throws -> DeviceEvidence
}
