import Foundation

/// What the node returns for `GET /v1/attestation?nonce=HEX` and `securenode quote`.
/// The format is documented in firmware-profiles/README.md ("Evidence") and is stable: orchestrators
/// script against it. Binary fields are standard base64; digests and nonces are lower-case hex.
public struct Evidence: Sendable, Codable, Equatable {
    public static let currentVersion = 1

    public struct QuotePart: Sendable, Codable, Equatable {
        /// Marshaled TPMS_ATTEST (the signed bytes).
        public var attest: String
        /// Marshaled TPMT_SIGNATURE.
        public var signature: String
        public init(attest: String, signature: String) {
            self.attest = attest
            self.signature = signature
        }
    }

    public struct AKPart: Sendable, Codable, Equatable {
        /// Marshaled TPM2B_PUBLIC.
        public var `public`: String
        /// The same key as a PEM SubjectPublicKeyInfo.
        public var pem: String
        /// TPM name (hex): nameAlg || SHA-256(TPMT_PUBLIC).
        public var name: String
        public init(public: String, pem: String, name: String) {
            self.public = `public`
            self.pem = pem
            self.name = name
        }
    }

    public struct PCRPart: Sendable, Codable, Equatable {
        public var bank: String
        /// PCR index (decimal text) → value (hex).
        public var values: [String: String]
        public init(bank: String, values: [String: String]) {
            self.bank = bank
            self.values = values
        }
    }

    public struct ModelPart: Sendable, Codable, Equatable {
        public var name: String
        public var manifestRoot: String
        public var signer: String
        public var signerDescription: String
        public init(name: String, manifestRoot: String, signer: String, signerDescription: String) {
            self.name = name
            self.manifestRoot = manifestRoot
            self.signer = signer
            self.signerDescription = signerDescription
        }
    }

    public var version: Int
    public var nonce: String
    public var quote: QuotePart
    public var ak: AKPart
    public var pcrs: PCRPart
    public var eventLog: [EventLogEntry]
    /// PEM EK certificate, when the TPM holds one.
    public var ekCertificate: String?
    public var model: ModelPart?
    public var profile: String
    /// Signed measurements of the node's compute devices, when its profile selects a device backend
    /// (absent otherwise: evidence without devices is the format as it was).
    public var devices: [DeviceEvidence]?
    /// The serving process this evidence speaks for: SHA-256 (hex) of its receipt key, whose
    /// receipt-key event follows the event of `model` in the log. Absent in `securenode quote`'s
    /// evidence (no serving process).
    public var receiptKeySHA256: String?
    /// The key of the TLS certificate the serving process's API presents: SHA-256 (hex) of its DER
    /// SubjectPublicKeyInfo, whose TLS-key event (naming `receiptKeySHA256`) follows the receipt-key
    /// event in the log. Absent when the node serves plain HTTP, and in `securenode quote`'s evidence.
    public var tlsKeySHA256: String?

    public init(version: Int = Evidence.currentVersion, nonce: String, quote: QuotePart, ak: AKPart, pcrs: PCRPart,
                eventLog: [EventLogEntry], ekCertificate: String?, model: ModelPart?, profile: String,
                devices: [DeviceEvidence]? = nil, receiptKeySHA256: String? = nil, tlsKeySHA256: String? = nil) {
        self.version = version
        self.nonce = nonce
        self.quote = quote
        self.ak = ak
        self.pcrs = pcrs
        self.eventLog = eventLog
        self.ekCertificate = ekCertificate
        self.model = model
        self.profile = profile
        self.devices = devices
        self.receiptKeySHA256 = receiptKeySHA256
        self.tlsKeySHA256 = tlsKeySHA256
    }

    public static let maximumSize = 4 << 20

    public init(json data: Data) throws(AttestationError) {
        guard data.count <= Self.maximumSize else {
            throw AttestationError(.malformed, "evidence is \(data.count) bytes, more than \(Self.maximumSize)")
        }
        do {
            self = try JSONDecoder().decode(Evidence.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw AttestationError(.malformed, "evidence: missing field \"\((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))\"")
        } catch let DecodingError.typeMismatch(_, context) {
            throw AttestationError(.malformed, "evidence: wrong type at \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\"")
        } catch {
            throw AttestationError(.malformed, "evidence is not valid JSON")
        }
        guard version == Self.currentVersion else {
            throw AttestationError(.unsupported, "evidence version \(version) is not supported (expected \(Self.currentVersion))")
        }
    }

    public func jsonData(pretty: Bool = false) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)) ?? Data()
    }
}

/// What `securenode enroll` writes: an attestation key proven (by credential activation) to live
/// in the TPM whose EK certificate chains to a CA the profile trusts.
public struct EnrollmentRecord: Sendable, Codable, Equatable {
    public static let schemaName = "securenode.enrollment.v1"
    public var schema: String
    public var node: String
    public var profile: String
    /// TPM name of the enrolled AK (hex).
    public var akName: String
    /// Marshaled TPM2B_PUBLIC of the AK (base64).
    public var akPublic: String
    /// SHA-256 of the EK certificate's DER (hex).
    public var ekCertificateSHA256: String
    public var ekCertificateSubject: String
    public var enrolledAt: String

    public init(node: String, profile: String, akName: String, akPublic: String, ekCertificateSHA256: String,
                ekCertificateSubject: String, enrolledAt: String) {
        self.schema = Self.schemaName
        self.node = node
        self.profile = profile
        self.akName = akName
        self.akPublic = akPublic
        self.ekCertificateSHA256 = ekCertificateSHA256
        self.ekCertificateSubject = ekCertificateSubject
        self.enrolledAt = enrolledAt
    }

    public static func load(path: String) throws(AttestationError) -> EnrollmentRecord {
        guard let data = FileManager.default.contents(atPath: path),
              let record = try? JSONDecoder().decode(EnrollmentRecord.self, from: data) else {
            throw AttestationError(.invalidEnrollment, "cannot read enrollment record \(path)")
        }
        guard record.schema == Self.schemaName else {
            throw AttestationError(.invalidEnrollment, "\(path): schema is \"\(record.schema)\", expected \"\(Self.schemaName)\"")
        }
        return record
    }
}
