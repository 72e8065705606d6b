import Crypto
import Foundation
import ModelSigning

/// The event the node measures when it starts serving: the SHA-256 of its per-boot receipt key's
/// DER SubjectPublicKeyInfo. Extended into the measurement PCR after the model event, it binds
/// the key to the TPM: a quote over that PCR, with the event log, proves which receipt key the
/// node that loaded that model holds (the private key never leaves the process's memory).
///
/// When the operator replaced the model's own chat template (`model.chat_template`,
/// `--chat-template-file`), the event also carries `chatTemplateSHA256`, the SHA-256 of that file's
/// bytes: the template decides what the model is asked (system text, tool prompts), and the model's
/// own template is covered by the signed manifest, an operator's file is not. A quote then proves
/// which template the process renders chats with; without the field, it renders the model's own.
///
/// When the process computes decoding rows as prompt rows (`limits.decoding: prompt-rows`, the
/// default with several slots; it changes the numbers the node generates), the event
/// carries `"decoding":"prompt-rows"`; without the field, it decodes with llama.cpp's one-token kernels.
///
/// Canonical bytes (keys sorted): `{"event":"securenode.receipt-key.v1","keySHA256":HEX,"profile":ID}`,
/// with `"chatTemplateSHA256":HEX,` and then `"decoding":"prompt-rows",` before `"event"` when present.
public struct ReceiptKeyMeasurement: Sendable, Equatable {
    public static let eventType = "securenode.receipt-key.v1"
    /// The `decoding` value of a process that computes decoding rows as prompt rows.
    public static let promptRowsDecoding = "prompt-rows"
    public var keySHA256: String
    public var profile: String
    /// SHA-256 (hex) of the operator's chat template file; nil: the model's own template (or none).
    public var chatTemplateSHA256: String?
    /// Decoding rows computed as prompt rows (`limits.decoding`).
    public var decodesAsPromptRows: Bool

    public init(keySHA256: String, profile: String, chatTemplateSHA256: String? = nil, decodesAsPromptRows: Bool = false) {
        self.keySHA256 = keySHA256
        self.profile = profile
        self.chatTemplateSHA256 = chatTemplateSHA256?.lowercased()
        self.decodesAsPromptRows = decodesAsPromptRows
    }

    public var canonicalBytes: [UInt8] {
        let template = chatTemplateSHA256.map { "\"chatTemplateSHA256\":\(ModelMeasurement.quote($0))," } ?? ""
        let decoding = decodesAsPromptRows ? "\"decoding\":\(ModelMeasurement.quote(Self.promptRowsDecoding))," : ""
        return Array("{\(template)\(decoding)\"event\":\"\(Self.eventType)\",\"keySHA256\":\(ModelMeasurement.quote(keySHA256)),\"profile\":\(ModelMeasurement.quote(profile))}".utf8)
    }

    public var digest: [UInt8] { Array(SHA256.hash(data: canonicalBytes)) }

    public init(canonical bytes: [UInt8]) throws(AttestationError) {
        struct Raw: Decodable { let event: String; let keySHA256: String; let profile: String; let chatTemplateSHA256: String?; let decoding: String? }
        guard let raw = try? JSONDecoder().decode(Raw.self, from: Data(bytes)), raw.event == Self.eventType else {
            throw AttestationError(.malformed, "not a \(Self.eventType) event")
        }
        if let decoding = raw.decoding, decoding != Self.promptRowsDecoding {
            throw AttestationError(.malformed, "receipt-key event names an unknown decoding \(ModelMeasurement.quote(decoding))")
        }
        self.init(keySHA256: raw.keySHA256, profile: raw.profile, chatTemplateSHA256: raw.chatTemplateSHA256,
                  decodesAsPromptRows: raw.decoding != nil)
        guard canonicalBytes == bytes else { throw AttestationError(.malformed, "receipt-key event is not in canonical form") }
    }

    /// What the process renders chats with, for check details.
    public var chatTemplateDescription: String {
        chatTemplateSHA256.map { "the operator's chat template (SHA-256 \($0))" } ?? "the model's own chat template"
    }

    /// How the process computes decoding rows, for check details.
    public var decodingDescription: String {
        decodesAsPromptRows ? "decodes as prompt rows (limits.decoding: prompt-rows)" : "decodes with llama.cpp's one-token kernels"
    }
}

extension EventLogEntry {
    public init(pcr: Int, receiptKey: ReceiptKeyMeasurement) {
        self.init(pcr: pcr, type: ReceiptKeyMeasurement.eventType, digest: hexString(receiptKey.digest),
                  event: String(decoding: receiptKey.canonicalBytes, as: UTF8.self))
    }
}

/// A signed statement that this node produced this response to this request with this model.
///
/// `signature` is ECDSA P-256 with SHA-256 (DER, base64) over `signedBytes`: the compact JSON, keys
/// sorted, of every other field. The digests are SHA-256 in hex: `requestSHA256` of the exact HTTP
/// request body bytes, `responseSHA256` of the UTF-8 bytes of the generated text (the completion's
/// `text`, or the chat message's `content`; when streaming, the concatenation of the deltas).
public struct Receipt: Sendable, Codable, Equatable {
    public static let currentFormat = "securenode.receipt.v1"

    public struct AttestationReference: Sendable, Codable, Equatable {
        /// TPM name of the AK whose quotes cover the receipt key's event (hex).
        public var akName: String
        /// PCR the receipt key's event was extended into.
        public var pcr: Int
        /// SHA-256 of the receipt key's DER SubjectPublicKeyInfo (hex): the measured event's value.
        public var receiptKeySHA256: String
        /// Where evidence for this node is fetched (`/v1/attestation?nonce=HEX`).
        public var evidenceURL: String

        public init(akName: String, pcr: Int, receiptKeySHA256: String, evidenceURL: String) {
            self.akName = akName
            self.pcr = pcr
            self.receiptKeySHA256 = receiptKeySHA256
            self.evidenceURL = evidenceURL
        }
    }

    public var format: String
    /// The response's id (`chatcmpl-...`, `cmpl-...`).
    public var id: String
    /// Unix seconds.
    public var created: Int
    /// The API model name.
    public var model: String
    /// The signed model manifest's root digest (hex), as measured.
    public var modelManifestRoot: String
    public var profile: String
    public var requestSHA256: String
    public var responseSHA256: String
    public var attestation: AttestationReference
    /// SHA-256 (hex) of the operator's chat template file the node renders chats with, as measured
    /// in its receipt-key event; absent: the model's own template (covered by `modelManifestRoot`).
    public var chatTemplateSHA256: String?
    /// The receipt key (PEM SubjectPublicKeyInfo, P-256).
    public var publicKey: String
    public var signature: String

    public init(id: String, created: Int, model: String, modelManifestRoot: String, profile: String,
                requestSHA256: String, responseSHA256: String, attestation: AttestationReference, publicKey: String,
                chatTemplateSHA256: String? = nil) {
        format = Self.currentFormat
        self.id = id
        self.created = created
        self.model = model
        self.modelManifestRoot = modelManifestRoot
        self.profile = profile
        self.requestSHA256 = requestSHA256
        self.responseSHA256 = responseSHA256
        self.attestation = attestation
        self.chatTemplateSHA256 = chatTemplateSHA256?.lowercased()
        self.publicKey = publicKey
        signature = ""
    }

    /// The bytes the signature covers.
    public var signedBytes: [UInt8] {
        struct Unsigned: Encodable {
            let format: String, id: String, created: Int, model: String, modelManifestRoot: String, profile: String
            let requestSHA256: String, responseSHA256: String, attestation: AttestationReference, publicKey: String
            let chatTemplateSHA256: String?  // absent when nil: receipts without it sign the same bytes as before
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(Unsigned(format: format, id: id, created: created, model: model,
                                                  modelManifestRoot: modelManifestRoot, profile: profile,
                                                  requestSHA256: requestSHA256, responseSHA256: responseSHA256,
                                                  attestation: attestation, publicKey: publicKey,
                                                  chatTemplateSHA256: chatTemplateSHA256))) ?? Data()
        return Array(data)
    }

    /// Signs with `key` (whose public key must be `publicKey`).
    public mutating func sign(with key: P256.Signing.PrivateKey) throws {
        signature = try key.signature(for: signedBytes).derRepresentation.base64EncodedString()
    }

    /// Compact JSON (keys sorted).
    public func jsonData() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)) ?? Data()
    }

    /// SHA-256 of a DER SubjectPublicKeyInfo, hex.
    public static func keyDigest(_ key: P256.Signing.PublicKey) -> String {
        hexString(Array(SHA256.hash(data: key.derRepresentation)))
    }
}

/// Offline verification of a receipt against the request, the response text and the node's
/// evidence. The checks, in order (the first failure ends it):
/// 1. `receipt-signature`: the receipt's key is P-256 and the signature verifies over `signedBytes`.
/// 2. `request-digest`: SHA-256 of the request body bytes equals `requestSHA256`.
/// 3. `response-digest`: SHA-256 of the response text equals `responseSHA256`.
/// 4. `evidence-quote`: the evidence's quote verifies under its AK, whose name is the receipt's
///    `akName`, and its PCR values hash to the quoted digest.
/// 5. `key-measured`: the whole event log replays: every event's digest is SHA-256 of its text,
///    every event extends a quoted PCR, and every PCR the log touches replays to its quoted value
///    (with or without a profile); and the log holds a receipt-key event, in the receipt's PCR
///    (one of 0-15: PCRs 16-23 can be reset), for exactly this key (and the receipt's profile), whose
///    chat template (`chatTemplateSHA256`: the operator's file, or absent for the model's own) is the
///    receipt's.
/// 6. `model-measured`: the last model event before that key's event is the receipt's model, and
///    it sits in the profile's measurement PCR (given `measurementPCR`), else in a PCR 0-15 that
///    the quote covers and the log replays.
///
/// Whether the AK itself is trusted (enrolled) and the evidence fresh is `securenode verify`'s job:
/// run it on the same evidence with a fresh nonce.
public enum ReceiptVerifier {
    public static let checkNames = ["receipt-signature", "request-digest", "response-digest", "evidence-quote",
                                    "key-measured", "model-measured"]

    /// `measurementPCR`: the profile's model PCR, when the caller has the profile.
    public static func verify(receipt: Receipt, request: [UInt8], responseText: String, evidence: Evidence,
                              measurementPCR: Int? = nil) -> [Appraisal.Check] {
        let ordered = OrderedChecks()
        func run(_ name: String, _ body: () throws(AttestationError) -> String) { ordered.run(name, body) }
        var keyDigest = ""
        run("receipt-signature") { () throws(AttestationError) -> String in
            guard receipt.format == Receipt.currentFormat else {
                throw AttestationError(.unsupported, "receipt format \(receipt.format) is not \(Receipt.currentFormat)")
            }
            guard let key = try? P256.Signing.PublicKey(pemRepresentation: receipt.publicKey) else {
                throw AttestationError(.malformed, "the receipt's publicKey is not a PEM P-256 public key")
            }
            guard let der = Data(base64Encoded: receipt.signature),
                  let signature = try? P256.Signing.ECDSASignature(derRepresentation: der),
                  key.isValidSignature(signature, for: receipt.signedBytes) else {
                throw AttestationError(.malformed, "the receipt's signature does not verify: the receipt was altered or not signed by its key")
            }
            keyDigest = Receipt.keyDigest(key)
            guard constantTimeEquals(Array(keyDigest.utf8), Array(receipt.attestation.receiptKeySHA256.lowercased().utf8)) else {
                throw AttestationError(.malformed, "attestation.receiptKeySHA256 is not the digest of the receipt's key")
            }
            return "ECDSA P-256 signature by key \(keyDigest)"
        }
        run("request-digest") { () throws(AttestationError) -> String in
            let digest = hexString(Array(SHA256.hash(data: request)))
            guard constantTimeEquals(Array(digest.utf8), Array(receipt.requestSHA256.lowercased().utf8)) else {
                throw AttestationError(.malformed, "the request's SHA-256 is \(digest), the receipt says \(receipt.requestSHA256): a different request")
            }
            return "request body SHA-256 \(digest)"
        }
        run("response-digest") { () throws(AttestationError) -> String in
            let digest = hexString(Array(SHA256.hash(data: Array(responseText.utf8))))
            guard constantTimeEquals(Array(digest.utf8), Array(receipt.responseSHA256.lowercased().utf8)) else {
                throw AttestationError(.malformed, "the response text's SHA-256 is \(digest), the receipt says \(receipt.responseSHA256): a different response")
            }
            return "response text SHA-256 \(digest)"
        }
        var quoted: [Int: [UInt8]] = [:]
        run("evidence-quote") { () throws(AttestationError) -> String in
            let ak = try TPMPublicKey(marshaled: try EvidenceVerifier.base64(evidence.ak.public, "ak.public"))
            guard constantTimeEquals(Array(hexString(ak.name).utf8), Array(receipt.attestation.akName.lowercased().utf8)) else {
                throw AttestationError(.malformed, "the evidence's AK \(hexString(ak.name)) is not the receipt's \(receipt.attestation.akName)")
            }
            let attest = try EvidenceVerifier.base64(evidence.quote.attest, "quote.attest")
            let signature = try TPMSignature(bytes: try EvidenceVerifier.base64(evidence.quote.signature, "quote.signature"))
            let parsed = try QuoteAttestation(bytes: attest)
            guard ak.isValid(signature, over: attest) else {
                throw AttestationError(.malformed, "the evidence's quote does not verify under its AK")
            }
            quoted = try EvidenceVerifier.quotedPCRValues(evidence, parsed)
            return "quote by AK \(hexString(ak.name)) over PCRs \(parsed.pcrIndices)"
        }
        var keyEventIndex = 0
        run("key-measured") { () throws(AttestationError) -> String in
            let pcr = receipt.attestation.pcr
            guard (0...15).contains(pcr) else {
                throw AttestationError(.malformed, "the receipt key is said to be measured in PCR \(pcr), which can be reset or needs a DRTM locality (use 0-15)")
            }
            guard quoted[pcr] != nil else { throw AttestationError(.malformed, "the quote does not cover PCR \(pcr)") }
            for (i, entry) in evidence.eventLog.enumerated() {
                guard hexString(Array(SHA256.hash(data: Array(entry.event.utf8)))) == entry.digest.lowercased() else {
                    throw AttestationError(.malformed, "eventLog[\(i)]: digest is not the SHA-256 of the event")
                }
                guard quoted[entry.pcr] != nil else {
                    throw AttestationError(.malformed, "eventLog[\(i)] extends PCR \(entry.pcr), which the quote does not cover")
                }
            }
            for (p, value) in EventLogReplay.replay(evidence.eventLog).sorted(by: { $0.key < $1.key }) where !constantTimeEquals(value, quoted[p]!) {
                throw AttestationError(.malformed, "the event log does not replay to the quoted PCR \(p)")
            }
            guard let index = evidence.eventLog.lastIndex(where: { entry in
                entry.pcr == pcr && entry.type == ReceiptKeyMeasurement.eventType
                    && (try? ReceiptKeyMeasurement(canonical: Array(entry.event.utf8)))?.keySHA256 == keyDigest
            }) else {
                throw AttestationError(.malformed, "no receipt-key event for key \(keyDigest) in PCR \(pcr): the key is not bound to this TPM")
            }
            let event = try ReceiptKeyMeasurement(canonical: Array(evidence.eventLog[index].event.utf8))
            guard event.profile == receipt.profile else {
                throw AttestationError(.malformed, "the key was measured under profile \(event.profile), not \(receipt.profile)")
            }
            // The chat template the process renders with, as measured, is the one the receipt names.
            let claimed = receipt.chatTemplateSHA256?.lowercased() ?? "", measured = event.chatTemplateSHA256 ?? ""
            guard constantTimeEquals(Array(claimed.utf8), Array(measured.utf8)) else {
                let says = receipt.chatTemplateSHA256.map { "the operator's chat template \($0)" } ?? "the model's own chat template"
                throw AttestationError(.malformed, "the receipt says \(says), but the process with this key measured \(event.chatTemplateDescription) (eventLog[\(index)])")
            }
            keyEventIndex = index
            return "receipt key measured as eventLog[\(index)] in PCR \(pcr), rendering \(event.chatTemplateDescription)"
        }
        run("model-measured") { () throws(AttestationError) -> String in
            guard let modelEntry = evidence.eventLog[..<keyEventIndex].last(where: { $0.type == ModelMeasurement.eventType }) else {
                throw AttestationError(.malformed, "no model was measured before the receipt key")
            }
            if let measurementPCR, modelEntry.pcr != measurementPCR {
                throw AttestationError(.malformed, "the model event is in PCR \(modelEntry.pcr), not the profile's measurement PCR \(measurementPCR)")
            }
            guard (0...15).contains(modelEntry.pcr) else {
                throw AttestationError(.malformed, "the model event is in PCR \(modelEntry.pcr), which can be reset or needs a DRTM locality")
            }
            let model = try ModelMeasurement(canonical: Array(modelEntry.event.utf8))
            guard constantTimeEquals(Array(model.manifestRoot.utf8), Array(receipt.modelManifestRoot.lowercased().utf8)) else {
                throw AttestationError(.malformed, "the node had model \(model.manifestRoot) loaded, not \(receipt.modelManifestRoot)")
            }
            return "model \(model.modelName) (\(model.manifestRoot))"
        }
        return ordered.checks
    }
}
