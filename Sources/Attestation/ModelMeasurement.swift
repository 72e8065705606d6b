import Crypto
import Foundation
import ModelSigning

/// The canonical model event the node measures after a model passes signature verification.
///
/// Its bytes are compact JSON with sorted keys and no spaces:
/// `{"event":"securenode.model.v1","manifestRoot":HEX,"modelName":NAME,"profile":ID,"signer":HEX}`;
/// the measured digest is SHA-256 of exactly those bytes.
public struct ModelMeasurement: Sendable, Equatable, Codable {
    public static let eventType = "securenode.model.v1"
    /// SHA-256 root digest of the signed manifest (hex).
    public var manifestRoot: String
    /// The manifest's subject name (informative).
    public var modelName: String
    /// The signer's key fingerprint: SHA-256 of its DER SubjectPublicKeyInfo (hex).
    public var signer: String
    /// The firmware profile the node runs under.
    public var profile: String

    public init(manifestRoot: String, modelName: String, signer: String, profile: String) {
        self.manifestRoot = manifestRoot
        self.modelName = modelName
        self.signer = signer
        self.profile = profile
    }

    public init(verified: VerifiedModel, profile: String) {
        self.init(manifestRoot: verified.rootDigestHex, modelName: verified.manifest.subjectName,
                  signer: verified.signer.fingerprint, profile: profile)
    }

    public var canonicalBytes: [UInt8] {
        let text = "{\"event\":\(Self.quote(Self.eventType)),\"manifestRoot\":\(Self.quote(manifestRoot)),"
            + "\"modelName\":\(Self.quote(modelName)),\"profile\":\(Self.quote(profile)),\"signer\":\(Self.quote(signer))}"
        return Array(text.utf8)
    }

    public var digest: [UInt8] { Array(SHA256.hash(data: canonicalBytes)) }

    /// Parses the canonical bytes back, refusing anything that would not re-encode identically.
    public init(canonical bytes: [UInt8]) throws(AttestationError) {
        struct Raw: Decodable { let event: String; let manifestRoot: String; let modelName: String; let profile: String; let signer: String }
        guard let raw = try? JSONDecoder().decode(Raw.self, from: Data(bytes)), raw.event == Self.eventType else {
            throw AttestationError(.malformed, "model event is not a \(Self.eventType) event")
        }
        self.init(manifestRoot: raw.manifestRoot, modelName: raw.modelName, signer: raw.signer, profile: raw.profile)
        guard canonicalBytes == bytes else { throw AttestationError(.malformed, "model event is not in canonical form") }
    }

    static func quote(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
}

/// One measured event: what was extended into which PCR.
public struct EventLogEntry: Sendable, Equatable, Codable {
    public var pcr: Int
    public var type: String
    /// SHA-256 of `event`'s UTF-8 bytes (hex): the value extended into the PCR.
    public var digest: String
    /// The event's canonical bytes as text.
    public var event: String

    public init(pcr: Int, type: String, digest: String, event: String) {
        self.pcr = pcr
        self.type = type
        self.digest = digest
        self.event = event
    }

    public init(pcr: Int, measurement: ModelMeasurement) {
        self.init(pcr: pcr, type: ModelMeasurement.eventType, digest: hexString(measurement.digest),
                  event: String(decoding: measurement.canonicalBytes, as: UTF8.self))
    }
}

/// Replays an event log: PCR_new = SHA-256(PCR_old || digest), from all zeros.
public enum EventLogReplay {
    public static func replay(_ log: [EventLogEntry]) -> [Int: [UInt8]] {
        var pcrs: [Int: [UInt8]] = [:]
        for entry in log {
            let old = pcrs[entry.pcr] ?? [UInt8](repeating: 0, count: 32)
            let digest = ModelSigning.bytes(fromHex: entry.digest) ?? []
            pcrs[entry.pcr] = Array(SHA256.hash(data: old + digest))
        }
        return pcrs
    }
}
