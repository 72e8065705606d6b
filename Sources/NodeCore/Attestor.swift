import Attestation
import Crypto
import Foundation
import ModelSigning
import TPM

/// The node's side of attestation: measures verified models into the profile's PCR (and the event
/// log), and produces evidence for a nonce.
public struct Attestor: Sendable {
    public let tpm: TPM
    public let profile: FirmwareProfile
    public let store: EventLogStore
    /// The compute devices whose signed measurements go into the evidence (`Evidence.devices`):
    /// the profile's device backend, if it selects one.
    public let devices: [any DeviceAttester]
    /// The serving process this attestor speaks for (see ``serving(model:receiptKeySHA256:)``); nil
    /// for commands that only quote the TPM.
    public let process: ServingProcess?

    public init(tpm: TPM, profile: FirmwareProfile, store: EventLogStore, devices: [any DeviceAttester] = [],
                process: ServingProcess? = nil) {
        self.tpm = tpm
        self.profile = profile
        self.store = store
        self.devices = devices
        self.process = process
    }

    /// The same attestor, speaking for the process that loaded `model` and measured its receipt key
    /// `receiptKeySHA256`: its evidence names that model and that key (not whatever another process
    /// sharing the TPM measured last).
    /// With `tlsKeySHA256` (the key of the certificate the API presents, measured by
    /// ``measureTLSKey(sha256:receiptKeySHA256:)``), the evidence names that TLS key too.
    public func serving(model: ModelMeasurement, receiptKeySHA256: String, tlsKeySHA256: String? = nil) -> Attestor {
        Attestor(tpm: tpm, profile: profile, store: store, devices: devices,
                 process: ServingProcess(model: model, receiptKeySHA256: receiptKeySHA256.lowercased(), tlsKeySHA256: tlsKeySHA256?.lowercased()))
    }

    /// The stored log, checked against the TPM: it must replay to the measurement PCR's current
    /// value. A PCR back at zero means the TPM was reset (reboot), so the log starts afresh. Any
    /// other mismatch means something outside the node extended the PCR: refuse (fail closed).
    public func currentLog() async throws -> [EventLogEntry] {
        let pcrs = profile.nodePCRs
        let values = try await tpm.pcrValues(pcrs)
        let log = try store.load()
        let zero = [UInt8](repeating: 0, count: 32)
        if pcrs.allSatisfy({ values[$0] == zero }) { return [] }
        let replayed = EventLogReplay.replay(log)
        for pcr in pcrs {
            let value = values[pcr] ?? []
            guard (replayed[pcr] ?? zero) == value else {
                throw NodeError("PCR \(pcr) holds \(hexString(value)), which the event log \(store.file.path) does not explain: "
                                + "something outside SecureNode extended it; refusing to attest")
            }
        }
        return log
    }

    /// Extends the model's canonical measurement into the profile's measurement PCR and records it.
    /// The model must already be verified, and its signer allowed by the profile.
    @discardableResult
    public func measure(_ model: VerifiedModel, localSigners: [String] = []) async throws -> EventLogEntry {
        guard profile.allowsSigner(model.signer.fingerprint, localSigners: localSigners) else {
            throw NodeError("model signer \(model.signer.fingerprint) is not allowed by profile \(profile.id)"
                            + (profile.allowLocalSigners ? "" : " (this profile accepts only the signers it names)"))
        }
        if !profile.allowedModels.isEmpty, !profile.allowedModels.contains(where: { $0.lowercased() == model.rootDigestHex }) {
            throw NodeError("model \(model.rootDigestHex) is not among profile \(profile.id)'s allowed models")
        }
        var log = try await currentLog()
        let measurement = ModelMeasurement(verified: model, profile: profile.id)
        let entry = EventLogEntry(pcr: profile.measurementPCR, measurement: measurement)
        // The same model, and only it, was measured since boot (the node restarted): the PCR already
        // says so. Not extending again keeps the model PCR at the value a fleet verifier pins.
        if log.filter({ $0.pcr == profile.measurementPCR }) == [entry] { return entry }
        // Record first, then extend: a crash in between leaves a log entry the PCR lacks, which
        // `currentLog` reports instead of silently accepting an unexplained PCR value.
        log.append(entry)
        try store.save(log)
        try await tpm.extend(pcr: profile.measurementPCR, sha256: measurement.digest)
        return entry
    }

    /// Extends the serving process's receipt key (SHA-256 of its DER SubjectPublicKeyInfo) into the
    /// profile's receipt-key PCR and records it, after the model: receipts signed by that key are then bound
    /// to this TPM and this model by any quote over the PCR (see `ReceiptVerifier`). With
    /// `chatTemplateSHA256` (an operator's chat template file replaces the model's own), the event
    /// names that template too; with `decodesAsPromptRows` (`limits.decoding: prompt-rows`), the
    /// event says so, since it changes the numbers the process generates.
    @discardableResult
    public func measureReceiptKey(sha256 keyDigest: String, chatTemplateSHA256: String? = nil,
                                  decodesAsPromptRows: Bool = false) async throws -> EventLogEntry {
        var log = try await currentLog()
        let measurement = ReceiptKeyMeasurement(keySHA256: keyDigest, profile: profile.id, chatTemplateSHA256: chatTemplateSHA256,
                                                decodesAsPromptRows: decodesAsPromptRows)
        let entry = EventLogEntry(pcr: profile.receiptPCR, receiptKey: measurement)
        log.append(entry)
        try store.save(log)
        try await tpm.extend(pcr: profile.receiptPCR, sha256: measurement.digest)
        return entry
    }

    /// Extends the key of the TLS certificate the serving process's API presents (SHA-256 of its DER
    /// SubjectPublicKeyInfo), naming the process's receipt key, into the receipt-key PCR and records
    /// it, after the receipt key: a quote then proves which TLS key the process that loaded the model
    /// holds (see `EvidenceVerifier`, `tls-key-bound`). A new certificate is measured again.
    @discardableResult
    public func measureTLSKey(sha256 keyDigest: String, receiptKeySHA256: String) async throws -> EventLogEntry {
        var log = try await currentLog()
        let measurement = TLSKeyMeasurement(keySHA256: keyDigest, profile: profile.id, receiptKeySHA256: receiptKeySHA256)
        let entry = EventLogEntry(pcr: profile.receiptPCR, tlsKey: measurement)
        log.append(entry)
        try store.save(log)
        try await tpm.extend(pcr: profile.receiptPCR, sha256: measurement.digest)
        return entry
    }

    /// Evidence for `nonce`: a quote by the profile's AK over the profile's PCRs, the PCR values,
    /// the event log, the EK certificate, the measured model, and each device's measurements signed
    /// for the same nonce. A profile that selects a device backend and has no device to answer is
    /// refused (fail closed).
    public func evidence(nonce: [UInt8]) async throws -> Evidence {
        guard (8...64).contains(nonce.count) else {
            throw NodeError("the nonce must be 8 to 64 bytes (16 to 128 hex digits), got \(nonce.count)")
        }
        guard let handle = profile.akHandle, let type = AttestationKeyType(rawValue: profile.attestationKey.type) else {
            throw NodeError("profile \(profile.id) has no usable attestation key")
        }
        let ak = try await tpm.attestationKey(type, persistentHandle: handle)
        let log = try await currentLog()
        let quote = try await tpm.quote(attestationKeyHandle: handle, nonce: nonce, pcrs: profile.quotePCRs)
        let values = try await tpm.pcrValues(profile.quotePCRs)
        // The quote and the read are two commands: make sure nothing moved in between.
        let attest = try QuoteAttestation(bytes: quote.attest)
        let digest = Array(SHA256.hash(data: attest.pcrIndices.flatMap { values[$0] ?? [] }))
        guard digest == attest.pcrDigest else {
            throw NodeError("a PCR changed while the quote was taken; ask again")
        }
        if profile.backend.selectsDevice, !devices.contains(where: { $0.kind == profile.backend.kind }) {
            throw NodeError("profile \(profile.id) selects a \(profile.backend.kind) device, but the node has none to attest")
        }
        let deviceEvidence = try devices.map { try $0.evidence(nonce: nonce) }
        let ek = try await tpm.endorsementKey()
        let akKey = try TPMPublicKey(marshaled: ak.publicArea)
        let measured: ModelMeasurement?
        if let process {
            // This process's own model: the last model event before its receipt key's event.
            guard let k = log.lastIndex(where: { $0.type == ReceiptKeyMeasurement.eventType && $0.pcr == profile.receiptPCR
                      && (try? ReceiptKeyMeasurement(canonical: Array($0.event.utf8)))?.keySHA256 == process.receiptKeySHA256 }),
                  let m = log[..<k].last(where: { $0.type == ModelMeasurement.eventType && $0.pcr == profile.measurementPCR }),
                  (try? ModelMeasurement(canonical: Array(m.event.utf8))) == process.model else {
                throw NodeError("the event log \(store.file.path) no longer shows this process's model before its receipt key; refusing to attest")
            }
            if let tlsKey = process.tlsKeySHA256 {
                guard let t = log.lastIndex(where: { $0.type == TLSKeyMeasurement.eventType && $0.pcr == profile.receiptPCR
                          && (try? TLSKeyMeasurement(canonical: Array($0.event.utf8)))?.receiptKeySHA256 == process.receiptKeySHA256 }),
                      t > k, (try? TLSKeyMeasurement(canonical: Array(log[t].event.utf8)))?.keySHA256 == tlsKey else {
                    throw NodeError("the event log \(store.file.path) no longer binds this process's TLS key; refusing to attest")
                }
            }
            measured = process.model
        } else {
            measured = log.last(where: { $0.type == ModelMeasurement.eventType }).flatMap { try? ModelMeasurement(canonical: Array($0.event.utf8)) }
        }
        let model = measured.map { m in
            Evidence.ModelPart(name: m.modelName, manifestRoot: m.manifestRoot, signer: m.signer,
                               signerDescription: profile.modelSigners.first { $0.publicKeyFingerprint.lowercased() == m.signer }?.name ?? "local signer")
        }
        return Evidence(
            nonce: hexString(nonce),
            quote: .init(attest: Data(quote.attest).base64EncodedString(), signature: Data(quote.signature).base64EncodedString()),
            ak: .init(public: Data(ak.publicArea).base64EncodedString(), pem: akKey.pem, name: hexString(akKey.name)),
            pcrs: .init(bank: "sha256", values: Dictionary(uniqueKeysWithValues: values.map { (String($0.key), hexString($0.value)) })),
            eventLog: log,
            ekCertificate: ek.certificateDER.map { PEMText.encode($0, label: "CERTIFICATE") },
            model: model,
            profile: profile.id,
            devices: deviceEvidence.isEmpty ? nil : deviceEvidence,
            receiptKeySHA256: process?.receiptKeySHA256,
            tlsKeySHA256: process?.tlsKeySHA256)
    }
}

/// A serving process's identity in the event log: the model it loaded, its receipt key and, when
/// its API serves TLS, the key of its certificate.
public struct ServingProcess: Sendable, Equatable {
    public var model: ModelMeasurement
    /// SHA-256 (hex) of the receipt key's DER SubjectPublicKeyInfo.
    public var receiptKeySHA256: String
    /// SHA-256 (hex) of the API's TLS certificate's DER SubjectPublicKeyInfo.
    public var tlsKeySHA256: String?
    public init(model: ModelMeasurement, receiptKeySHA256: String, tlsKeySHA256: String? = nil) {
        self.model = model
        self.receiptKeySHA256 = receiptKeySHA256
        self.tlsKeySHA256 = tlsKeySHA256
    }
}
