import Crypto
import Foundation
import ModelSigning
import X509

/// The result of appraising evidence: every check, in order, with its outcome.
public struct Appraisal: Sendable, Codable, Equatable {
    public enum Outcome: String, Sendable, Codable { case pass, fail, skipped }

    public struct Check: Sendable, Codable, Equatable {
        public var check: String
        public var result: Outcome
        public var detail: String
        public init(check: String, result: Outcome, detail: String) {
            self.check = check
            self.result = result
            self.detail = detail
        }
    }

    public var result: Outcome
    public var profile: String
    public var nonce: String
    public var model: Evidence.ModelPart?
    /// The serving process the evidence speaks for (SHA-256 of its receipt key), when it names one.
    public var receiptKeySHA256: String?
    /// The TLS key the evidence binds to that process (SHA-256 of its SubjectPublicKeyInfo), when it names one.
    public var tlsKeySHA256: String?
    /// The operator's chat template that process renders chats with (SHA-256 of the file, from its
    /// receipt-key event), when it replaced the model's own; nil: the model's own template.
    public var chatTemplateSHA256: String?
    public var checks: [Check]

    /// The first failed check's name, if any.
    public var failedCheck: String? { checks.first { $0.result == .fail }?.check }
}

/// Appraises TPM evidence against a profile. It never touches a TPM.
///
/// The checks, in this order (the first failure ends the appraisal; later checks are "skipped"):
/// 0. `evidence-format`: the evidence is JSON of the documented shape (``appraise(json:nonce:)``).
/// 1. `ak-trusted`: the evidence's AK is a restricted signing key whose TPM name is enrolled
///    (``EnrollmentRecord``) or listed in the profile's `trustedAKs`; the document's `ak.name` is that
///    name and its `ak.pem` that key.
/// 2. `quote-signature`: TPMS_ATTEST is a TPM-generated quote, and the TPMT_SIGNATURE over it verifies
///    under that AK.
/// 3. `nonce`: the quote's qualifying data equals the verifier's nonce (freshness: a replayed quote
///    carries an old nonce), and so does the document's `nonce`.
/// 4. `pcr-digest`: the quoted selection is the SHA-256 bank and exactly the PCRs in the evidence,
///    every profile-quoted PCR is present, and the quote's PCR digest equals SHA-256 of their values.
/// 5. `event-log-replay`: every event's digest is SHA-256 of its bytes, every event extends a quoted
///    PCR, model events sit in the measurement PCR, receipt-key and TLS-key events in the receipt-key PCR,
///    replaying the log from zeros gives the quoted value of every PCR it touches, and the
///    measurement PCR and the receipt-key PCR replay exactly (a PCR the log leaves unexplained,
///    e.g. because an event was dropped, fails naming the PCR).
/// 6. `reference-values`: the evidence names this profile, and each PCR the profile pins has one of
///    its allowed values.
/// 7. `model-allowed`: every model event in the log (the whole history since the PCRs were
///    reset, not only the last) names this profile, a signer the profile allows, and (when the
///    profile lists models) an allowed manifest root; the failure names the first disallowed event.
/// 8. `model-bound`: the evidence's `model` (manifest root, signer and name) is the model its process
///    loaded; the appraisal's signer description comes from this verifier's profile. With
///    `receiptKeySHA256` (a serving node's evidence), the log holds that receipt key's event and
///    `model` is the last model event before it; without (`securenode quote`), `model`, if
///    present, is the log's last model event. The receipt key's event also says which chat template
///    the process renders with (`Appraisal.chatTemplateSHA256`: an operator's file, or the model's own);
///    when the profile lists `allowedChatTemplates`, that template must be one of them.
/// 9. `tls-key-bound`: with `tlsKeySHA256` (a node serving TLS), the evidence also names
///    `receiptKeySHA256`, and the log's last TLS-key event for that receipt key (in the receipt-key
///    PCR, under this profile, after the receipt key's event: the same process, since the PCRs were
///    last reset) names exactly that TLS key. When the verifier is given the key the node presented
///    in its TLS handshake (``presentedTLSKeySHA256``: `verify --tls-certificate`, `enroll` and
///    `proxy` over https), the evidence must bind exactly that key: evidence without a TLS key, or
///    binding another, fails. Without either (a plain-HTTP node, evidence from before TLS keys were
///    bound), the check passes saying no TLS key is bound.
///
/// When the profile selects a device backend (or the evidence carries device evidence), four more
/// checks follow, for each device (see ``deviceCheckNames`` and DeviceAppraisal.swift):
/// 10. `device-certificate`, 11. `device-signature`, 12. `device-nonce`, 13. `device-measurements`.
/// Device certificate chains are validated by swift-certificates, which is asynchronous: use
/// ``appraiseWithDevices(json:nonce:)``; the synchronous ``appraise(_:nonce:deviceCertificates:)``
/// fails `device-certificate` unless it is given the chains already validated.
///
/// The caller must already trust the profile, the enrollment record and the vendor CAs (their
/// origin is out of band).
public struct EvidenceVerifier: Sendable {
    public var profile: FirmwareProfile
    public var enrolled: [EnrollmentRecord]
    public var localSigners: [String]
    /// Device vendor CAs (from the profile's `backend.vendorCAs`: see ``loadVendorCAs(profile:profilePath:)``).
    public var vendorCAs: [Certificate]
    /// The key (SHA-256 hex of the SubjectPublicKeyInfo) of the certificate the node presented in the
    /// TLS handshake over which the evidence came, or that the caller holds: `tls-key-bound`
    /// requires the evidence to bind exactly it.
    public var presentedTLSKeySHA256: String?

    public init(profile: FirmwareProfile, enrolled: [EnrollmentRecord] = [], localSigners: [String] = [],
                vendorCAs: [Certificate] = [], presentedTLSKeySHA256: String? = nil) {
        self.profile = profile
        self.enrolled = enrolled
        self.localSigners = localSigners
        self.vendorCAs = vendorCAs
        self.presentedTLSKeySHA256 = presentedTLSKeySHA256?.lowercased()
    }

    public static let checkNames = ["ak-trusted", "quote-signature", "nonce", "pcr-digest", "event-log-replay",
                                    "reference-values", "model-allowed", "model-bound", "tls-key-bound"]

    /// The checks of device evidence, after ``checkNames``, when the profile selects a device backend.
    public static let deviceCheckNames = ["device-certificate", "device-signature", "device-nonce", "device-measurements"]

    /// Every check an appraisal under this verifier's profile names, in order (after `evidence-format`).
    public var expectedCheckNames: [String] {
        Self.checkNames + (profile.backend.selectsDevice ? Self.deviceCheckNames : [])
    }

    /// Appraises evidence as received (JSON bytes): unreadable evidence fails `evidence-format`.
    public func appraise(json data: [UInt8], nonce expectedNonce: [UInt8]) -> Appraisal {
        appraise(json: data, nonce: expectedNonce) { evidence in self.appraise(evidence, nonce: expectedNonce) }
    }

    func appraise(json data: [UInt8], nonce expectedNonce: [UInt8], _ body: (Evidence) -> Appraisal) -> Appraisal {
        do {
            var appraisal = body(try Evidence(json: Data(data)))
            appraisal.checks.insert(.init(check: "evidence-format", result: .pass, detail: "evidence version \(Evidence.currentVersion)"), at: 0)
            return appraisal
        } catch {
            return Appraisal(result: .fail, profile: profile.id, nonce: hexString(expectedNonce), model: nil, receiptKeySHA256: nil,
                             tlsKeySHA256: nil, checks: [.init(check: "evidence-format", result: .fail, detail: error.reason)]
                                 + expectedCheckNames.map { .init(check: $0, result: .skipped, detail: "not checked: the evidence is unreadable") })
        }
    }

    public func appraise(_ evidence: Evidence, nonce expectedNonce: [UInt8]) -> Appraisal {
        appraise(evidence, nonce: expectedNonce, deviceCertificates: nil)
    }

    /// Every check; the device checks use `deviceCertificates` (from ``validateDeviceCertificates(_:)``).
    public func appraise(_ evidence: Evidence, nonce expectedNonce: [UInt8], deviceCertificates: DeviceCertificates?) -> Appraisal {
        let ordered = OrderedChecks()
        func run(_ name: String, _ body: () throws(AttestationError) -> String) { ordered.run(name, body) }

        var ak: TPMPublicKey?
        var attestation: QuoteAttestation?
        var quotedValues: [Int: [UInt8]] = [:]
        var chatTemplate: String?

        run("ak-trusted") { () throws(AttestationError) -> String in
            let key = try TPMPublicKey(marshaled: try Self.base64(evidence.ak.public, "ak.public"))
            guard key.isRestrictedSigningKey else {
                throw AttestationError(.malformed, "the AK is not a restricted, fixed-TPM signing key")
            }
            let name = hexString(key.name)
            let trusted = enrolled.map { $0.akName.lowercased() } + profile.trustedAKs.map { $0.lowercased() }
            guard trusted.contains(where: { constantTimeEquals(Array($0.utf8), Array(name.utf8)) }) else {
                throw AttestationError(.malformed, "AK \(name) is neither enrolled nor listed in profile \(profile.id)")
            }
            // The document's other names for the AK must be this key too: a client that checks the
            // quote with `ak.pem` (tpm2_checkquote) or shows `ak.name` must meet the key checked here.
            guard evidence.ak.name.lowercased() == name else {
                throw AttestationError(.malformed, "the evidence names AK \(evidence.ak.name.prefix(80)), but its TPM2B_PUBLIC's name is \(name)")
            }
            guard let pem = Self.pemDER(evidence.ak.pem), pem == Self.pemDER(key.pem) else {
                throw AttestationError(.malformed, "ak.pem is not the key of ak.public")
            }
            ak = key
            return "AK \(name) is \(enrolled.contains { $0.akName.lowercased() == name } ? "enrolled" : "listed in the profile")"
        }
        run("quote-signature") { () throws(AttestationError) -> String in
            guard let ak else { throw AttestationError(.malformed, "no AK") }
            let attest = try Self.base64(evidence.quote.attest, "quote.attest")
            let signature = try TPMSignature(bytes: try Self.base64(evidence.quote.signature, "quote.signature"))
            let parsed = try QuoteAttestation(bytes: attest)
            guard ak.isValid(signature, over: attest) else {
                throw AttestationError(.malformed, "the quote's signature does not verify under the AK")
            }
            attestation = parsed
            return "TPMS_ATTEST signed by the AK"
        }
        run("nonce") { () throws(AttestationError) -> String in
            guard let attestation else { throw AttestationError(.malformed, "no quote") }
            guard constantTimeEquals(attestation.extraData, expectedNonce) else {
                throw AttestationError(.malformed, "the quote was made for nonce \(hexString(attestation.extraData)), not \(hexString(expectedNonce)): stale or replayed")
            }
            guard evidence.nonce.lowercased() == hexString(expectedNonce) else {
                throw AttestationError(.malformed, "the evidence's nonce field is \(evidence.nonce.prefix(80)), not the quoted \(hexString(expectedNonce))")
            }
            return "qualifying data equals the nonce"
        }
        run("pcr-digest") { () throws(AttestationError) -> String in
            guard let attestation else { throw AttestationError(.malformed, "no quote") }
            let values = try Self.quotedPCRValues(evidence, attestation, required: profile.quotePCRs, profileID: profile.id)
            quotedValues = values
            return "PCRs \(attestation.pcrIndices) match the quoted digest"
        }
        run("event-log-replay") { () throws(AttestationError) -> String in
            for (i, entry) in evidence.eventLog.enumerated() {
                guard hexString(Array(SHA256.hash(data: Array(entry.event.utf8)))) == entry.digest.lowercased() else {
                    throw AttestationError(.malformed, "eventLog[\(i)]: digest is not the SHA-256 of the event: the event was edited")
                }
                guard quotedValues[entry.pcr] != nil else {
                    throw AttestationError(.malformed, "eventLog[\(i)] extends PCR \(entry.pcr), which the quote does not cover")
                }
                if entry.type == ModelMeasurement.eventType, entry.pcr != profile.measurementPCR {
                    throw AttestationError(.malformed, "eventLog[\(i)] is a model event in PCR \(entry.pcr), but profile \(profile.id) measures models into PCR \(profile.measurementPCR)")
                }
                if entry.type == ReceiptKeyMeasurement.eventType, entry.pcr != profile.receiptPCR {
                    throw AttestationError(.malformed, "eventLog[\(i)] is a receipt-key event in PCR \(entry.pcr), but profile \(profile.id) measures receipt keys into PCR \(profile.receiptPCR)")
                }
                if entry.type == TLSKeyMeasurement.eventType, entry.pcr != profile.receiptPCR {
                    throw AttestationError(.malformed, "eventLog[\(i)] is a TLS-key event in PCR \(entry.pcr), but profile \(profile.id) measures TLS keys into PCR \(profile.receiptPCR)")
                }
            }
            let replayed = EventLogReplay.replay(evidence.eventLog)
            for (pcr, value) in replayed.sorted(by: { $0.key < $1.key }) where !constantTimeEquals(value, quotedValues[pcr]!) {
                throw AttestationError(.malformed, "replaying the event log gives PCR \(pcr) = \(hexString(value)), but the quote says \(hexString(quotedValues[pcr]!))")
            }
            // The PCRs the node extends must be explained exactly: no events means all zeros.
            let zero = [UInt8](repeating: 0, count: 32)
            for pcr in profile.nodePCRs {
                guard let quoted = quotedValues[pcr] else {
                    throw AttestationError(.malformed, "PCR \(pcr) (\(profile.pcrRole(pcr))) is not quoted")
                }
                let value = replayed[pcr] ?? zero
                guard constantTimeEquals(value, quoted) else {
                    throw AttestationError(.malformed, "PCR \(pcr) (\(profile.pcrRole(pcr))) = \(hexString(quoted)) is not explained by the event log "
                                           + "(its \(evidence.eventLog.filter { $0.pcr == pcr }.count) event(s) replay to \(hexString(value))): an event is missing")
                }
            }
            return "\(evidence.eventLog.count) event(s) replay to the quoted PCRs; PCRs \(profile.nodePCRs) replay exactly"
        }
        run("reference-values") { () throws(AttestationError) -> String in
            guard evidence.profile == profile.id else {
                throw AttestationError(.malformed, "the evidence was made under profile \(evidence.profile.prefix(80)), not \(profile.id)")
            }
            for (key, allowed) in profile.referenceValues.sorted(by: { $0.key < $1.key }) {
                guard let pcr = Int(key), let value = quotedValues[pcr] else {
                    throw AttestationError(.malformed, "PCR \(key) is pinned by the profile but not quoted")
                }
                guard allowed.contains(where: { ModelSigning.bytes(fromHex: $0) == value }) else {
                    throw AttestationError(.malformed, "PCR \(pcr) = \(hexString(value)) is not a reference value of profile \(profile.id)")
                }
            }
            return "\(profile.referenceValues.count) pinned PCR(s) hold reference values"
        }
        run("model-allowed") { () throws(AttestationError) -> String in
            let models = evidence.eventLog.indices.filter { evidence.eventLog[$0].type == ModelMeasurement.eventType }
            guard !models.isEmpty else { throw AttestationError(.malformed, "no model was measured") }
            for i in models {
                let event: ModelMeasurement
                do throws(AttestationError) {
                    event = try ModelMeasurement(canonical: Array(evidence.eventLog[i].event.utf8))
                } catch {
                    throw AttestationError(.malformed, "eventLog[\(i)]: \(error.reason)")
                }
                let what = "eventLog[\(i)]: model \(event.modelName) (\(event.manifestRoot))"
                guard event.profile == profile.id else {
                    throw AttestationError(.malformed, "\(what) was measured under profile \(event.profile), not \(profile.id)")
                }
                guard profile.allowsSigner(event.signer, localSigners: localSigners) else {
                    throw AttestationError(.malformed, "\(what) is signed by \(event.signer), which profile \(profile.id) does not allow")
                }
                if !profile.allowedModels.isEmpty, !profile.allowedModels.contains(where: { $0.lowercased() == event.manifestRoot }) {
                    throw AttestationError(.malformed, "\(what) is not in profile \(profile.id)'s allowed models")
                }
            }
            return "\(models.count) model event(s) since the PCRs were reset, every one allowed"
        }
        run("model-bound") { () throws(AttestationError) -> String in
            let log = evidence.eventLog
            guard let key = evidence.receiptKeySHA256?.lowercased() else {
                guard let last = log.last(where: { $0.type == ModelMeasurement.eventType }) else { throw AttestationError(.malformed, "no model was measured") }
                let measured = try ModelMeasurement(canonical: Array(last.event.utf8))
                if let claimed = evidence.model, !Self.same(claimed, measured) {
                    throw AttestationError(.malformed, "the evidence names model \(claimed.name.prefix(80)) (\(claimed.manifestRoot.prefix(80))), but the last model measured is \(measured.modelName) (\(measured.manifestRoot))")
                }
                return "not bound to a serving process (no receiptKeySHA256): the last model measured is \(measured.modelName) (\(measured.manifestRoot))"
            }
            guard let k = log.lastIndex(where: { $0.type == ReceiptKeyMeasurement.eventType && $0.pcr == profile.receiptPCR
                && (try? ReceiptKeyMeasurement(canonical: Array($0.event.utf8)))?.keySHA256 == key }) else {
                throw AttestationError(.malformed, "the evidence speaks for receipt key \(key), but the event log has no receipt-key event for it")
            }
            let keyEvent = try ReceiptKeyMeasurement(canonical: Array(log[k].event.utf8))
            guard keyEvent.profile == profile.id else {
                throw AttestationError(.malformed, "eventLog[\(k)]: receipt key \(key) was measured under profile \(keyEvent.profile), not \(profile.id)")
            }
            guard let m = log[..<k].lastIndex(where: { $0.type == ModelMeasurement.eventType && $0.pcr == profile.measurementPCR }) else {
                throw AttestationError(.malformed, "no model was measured before receipt key \(key) (eventLog[\(k)])")
            }
            let measured = try ModelMeasurement(canonical: Array(log[m].event.utf8))
            guard let claimed = evidence.model else {
                throw AttestationError(.malformed, "the evidence names receipt key \(key) but no model")
            }
            guard Self.same(claimed, measured) else {
                throw AttestationError(.malformed, "the evidence names model \(claimed.name.prefix(80)) (\(claimed.manifestRoot.prefix(80))), but the process with receipt key \(key) "
                                       + "(eventLog[\(k)]) loaded \(measured.modelName) (\(measured.manifestRoot), eventLog[\(m)])")
            }
            chatTemplate = keyEvent.chatTemplateSHA256
            try checkChatTemplate(keyEvent, at: k)
            return "the process with receipt key \(key) (eventLog[\(k)]) loaded model \(measured.modelName) (\(measured.manifestRoot), eventLog[\(m)]) "
                + "and renders chats with \(keyEvent.chatTemplateDescription); it \(keyEvent.decodingDescription)"
                + (profile.allowedChatTemplates == nil ? "" : ", which profile \(profile.id) allows")
        }
        run("tls-key-bound") { () throws(AttestationError) -> String in try checkTLSKey(evidence) }
        if profile.backend.selectsDevice || !(evidence.devices ?? []).isEmpty {
            appraiseDevices(evidence, nonce: expectedNonce, certificates: deviceCertificates, run)
        }

        // What the appraisal reports comes from what was checked: the signer's description from this
        // verifier's profile, not from the node's.
        let model = evidence.model.map { m in
            var m = m
            m.signerDescription = profile.modelSigners.first { $0.publicKeyFingerprint.lowercased() == m.signer.lowercased() }?.name
                ?? "a signer profile \(profile.id) does not name"
            return m
        }
        return Appraisal(result: ordered.failed ? .fail : .pass, profile: profile.id, nonce: hexString(expectedNonce),
                         model: model, receiptKeySHA256: evidence.receiptKeySHA256?.lowercased(),
                         tlsKeySHA256: evidence.tlsKeySHA256?.lowercased(), chatTemplateSHA256: chatTemplate, checks: ordered.checks)
    }

    /// Part of check 8, `model-bound`: the serving process's chat template is one the profile's
    /// `allowedChatTemplates` lists (when it lists any).
    func checkChatTemplate(_ keyEvent: ReceiptKeyMeasurement, at index: Int) throws(AttestationError) {
        guard let allowed = profile.allowedChatTemplates else { return }
        let served = keyEvent.chatTemplateSHA256 ?? FirmwareProfile.modelsOwnChatTemplate
        let permitted = allowed.contains { entry in constantTimeEquals(Array(entry.lowercased().utf8), Array(served.utf8)) }
        guard permitted else {
            throw AttestationError(.malformed, "eventLog[\(index)]: the process renders chats with \(keyEvent.chatTemplateDescription), "
                                   + "which profile \(profile.id)'s allowedChatTemplates does not list")
        }
    }

    /// Check 9, `tls-key-bound` (see the type's documentation).
    func checkTLSKey(_ evidence: Evidence) throws(AttestationError) -> String {
        guard let tlsKey = evidence.tlsKeySHA256?.lowercased() else {
            if let presented = presentedTLSKeySHA256 {
                throw AttestationError(.malformed, "the node presented TLS key \(presented), but its evidence binds no TLS key")
            }
            return "no TLS key is bound (a plain-HTTP node)"
        }
        guard let receiptKey = evidence.receiptKeySHA256?.lowercased() else {
            throw AttestationError(.malformed, "the evidence names TLS key \(tlsKey) but no receipt key (no serving process to bind it to)")
        }
        let log = evidence.eventLog
        guard let k = log.lastIndex(where: { $0.type == ReceiptKeyMeasurement.eventType && $0.pcr == profile.receiptPCR
            && (try? ReceiptKeyMeasurement(canonical: Array($0.event.utf8)))?.keySHA256 == receiptKey }) else {
            throw AttestationError(.malformed, "the event log has no receipt-key event for \(receiptKey)")
        }
        guard let t = log.indices.last(where: { i in i > k && log[i].type == TLSKeyMeasurement.eventType && log[i].pcr == profile.receiptPCR
            && (try? TLSKeyMeasurement(canonical: Array(log[i].event.utf8)))?.receiptKeySHA256 == receiptKey }) else {
            throw AttestationError(.malformed, "the evidence names TLS key \(tlsKey), but the event log has no TLS-key event of the process with receipt key \(receiptKey) after its receipt key's event (eventLog[\(k)])")
        }
        let event = try TLSKeyMeasurement(canonical: Array(log[t].event.utf8))
        guard event.profile == profile.id else {
            throw AttestationError(.malformed, "eventLog[\(t)]: TLS key \(event.keySHA256) was measured under profile \(event.profile), not \(profile.id)")
        }
        guard constantTimeEquals(Array(event.keySHA256.utf8), Array(tlsKey.utf8)) else {
            throw AttestationError(.malformed, "the evidence names TLS key \(tlsKey), but the process's last TLS-key event (eventLog[\(t)]) binds \(event.keySHA256)")
        }
        if let presented = presentedTLSKeySHA256, !constantTimeEquals(Array(presented.utf8), Array(tlsKey.utf8)) {
            throw AttestationError(.malformed, "the node presented TLS key \(presented), but its evidence binds TLS key \(tlsKey): not the attested node's certificate")
        }
        return "TLS key \(tlsKey) belongs to the process with receipt key \(receiptKey) (eventLog[\(t)])"
            + (presentedTLSKeySHA256 == nil ? "" : "; the node presented exactly that key")
    }

    static func same(_ claimed: Evidence.ModelPart, _ measured: ModelMeasurement) -> Bool {
        constantTimeEquals(Array(claimed.manifestRoot.lowercased().utf8), Array(measured.manifestRoot.utf8))
            && constantTimeEquals(Array(claimed.signer.lowercased().utf8), Array(measured.signer.utf8))
            && claimed.name == measured.modelName
    }

    /// The DER bytes of a PEM document (armor and whitespace dropped), nil if it is not one.
    static func pemDER(_ pem: String) -> [UInt8]? {
        let body = pem.split(whereSeparator: \.isNewline).filter { !$0.hasPrefix("-----") }.joined()
        guard pem.hasPrefix("-----BEGIN "), let der = Data(base64Encoded: body.filter { !$0.isWhitespace }), !der.isEmpty else { return nil }
        return Array(der)
    }

    /// The evidence's PCR values, checked against the quote: the SHA-256 bank, exactly the quoted PCRs
    /// (including `required`), hashing to the quoted PCR digest.
    static func quotedPCRValues(_ evidence: Evidence, _ attestation: QuoteAttestation, required: [Int] = [],
                                profileID: String = "") throws(AttestationError) -> [Int: [UInt8]] {
        guard evidence.pcrs.bank == "sha256", attestation.pcrBank == TPMAlgorithm.sha256 else {
            throw AttestationError(.unsupported, "the quote is not over the SHA-256 PCR bank")
        }
        var values: [Int: [UInt8]] = [:]
        for (key, hex) in evidence.pcrs.values {
            guard let i = Int(key), let v = ModelSigning.bytes(fromHex: hex), v.count == 32 else {
                throw AttestationError(.malformed, "pcrs.values[\"\(key)\"] is not a PCR index with a SHA-256 value")
            }
            values[i] = v
        }
        guard Set(values.keys) == Set(attestation.pcrIndices) else {
            throw AttestationError(.malformed, "the evidence lists PCRs \(values.keys.sorted()) but the quote covers \(attestation.pcrIndices)")
        }
        let missing = required.filter { values[$0] == nil }
        guard missing.isEmpty else { throw AttestationError(.malformed, "the quote omits PCRs \(missing) that profile \(profileID) requires") }
        let digest = Array(SHA256.hash(data: attestation.pcrIndices.flatMap { values[$0]! }))
        guard constantTimeEquals(digest, attestation.pcrDigest) else {
            throw AttestationError(.malformed, "the PCR values do not hash to the quoted PCR digest: a PCR value was changed")
        }
        return values
    }

    static func base64(_ text: String, _ field: String) throws(AttestationError) -> [UInt8] {
        guard let data = Data(base64Encoded: text) else { throw AttestationError(.malformed, "evidence \(field) is not base64") }
        return Array(data)
    }
}

/// Runs named checks in order and records each: after the first failure, the rest are recorded as
/// skipped (an appraisal reports every check it knows, and why it did not run).
final class OrderedChecks {
    private(set) var checks: [Appraisal.Check] = []
    private(set) var failed = false

    func run(_ name: String, _ body: () throws(AttestationError) -> String) {
        guard !failed else {
            checks.append(.init(check: name, result: .skipped, detail: "not checked: an earlier check failed"))
            return
        }
        do throws(AttestationError) {
            checks.append(.init(check: name, result: .pass, detail: try body()))
        } catch {
            failed = true
            checks.append(.init(check: name, result: .fail, detail: error.reason))
        }
    }
}
