import Accelerators
import ArgumentParser
import Attestation
import Foundation
import ModelSigning
import NodeCore
import TPM

/// Options every TPM-using command shares.
struct TPMOptions: ParsableArguments {
    @Option(help: "TPM TCTI: device:/dev/tpmrm0 in production, swtpm:host=127.0.0.1,port=N with a software TPM.")
    var tcti: String = ProcessInfo.processInfo.environment["SECURENODE_TCTI"] ?? "device:/dev/tpmrm0"

    @Option(help: "Firmware profile (firmware-profiles/*.json).")
    var profile: String

    @Option(name: .customLong("state-dir"), help: "Where the node keeps its event log (default $SECURENODE_STATE_DIR or /var/lib/securenode).")
    var stateDirectory: String?

    func attestor() throws -> Attestor {
        try Self.attestor(profile: profile, tcti: tcti, stateDirectory: stateDirectory)
    }

    static func attestor(profile path: String, tcti: String, stateDirectory: String?) throws -> Attestor {
        let profile = try FirmwareProfile.load(path: path)
        let directory = stateDirectory.map { URL(fileURLWithPath: $0) } ?? EventLogStore.defaultDirectory
        // A profile that selects a (modeled) device backend: its device answers with signed measurements.
        let devices = try ModeledDeviceStore.attesters(for: profile, stateDirectory: directory)
        return Attestor(tpm: TPM(tcti: tcti), profile: profile, store: EventLogStore(directory: directory), devices: devices)
    }
}

struct MeasureCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "measure",
        abstract: "Verify a model, then extend its measurement into the profile's PCR and the event log.",
        discussion: """
            Prints the event-log entry as one JSON line. The model's signer must be one the profile \
            names, or given here with --public-key/--certificate-chain when the profile allows local signers. \
            `serve` does the same when it loads a model.
            """
    )

    @Option(help: "The model directory, or a single model file.")
    var model: String
    @Option(help: "The signature bundle.")
    var signature: String
    @OptionGroup var trust: TrustOptions
    @OptionGroup var tpm: TPMOptions

    func run() async throws {
        try await reportingFailures {
            let verified = try await SignedModel.verify(model: model, signature: signature, trust: try trust.anchor())
            let entry = try await tpm.attestor().measure(verified, localSigners: [verified.signer.fingerprint])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(entry), as: UTF8.self))
        }
    }
}

struct QuoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quote",
        abstract: "Print attestation evidence for a nonce (the JSON of GET /v1/attestation?nonce=HEX)."
    )

    @OptionGroup var tpm: TPMOptions
    @Option(help: "Verifier's nonce, 16 to 128 hex digits.")
    var nonce: String
    @Flag(help: "Indent the JSON.")
    var pretty = false

    func run() async throws {
        try await reportingFailures {
            guard let bytes = ModelSigning.bytes(fromHex: nonce) else { throw CLIFailure("--nonce must be hex") }
            let evidence = try await tpm.attestor().evidence(nonce: bytes)
            print(String(decoding: evidence.jsonData(pretty: pretty), as: UTF8.self))
        }
    }
}

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Appraise attestation evidence against a profile (no TPM needed).",
        discussion: """
            Prints a JSON appraisal naming each check in order (\(EvidenceVerifier.checkNames.joined(separator: ", "))) \
            and its result; a profile that selects a device backend adds \(EvidenceVerifier.deviceCheckNames.joined(separator: ", ")), \
            against the profile's backend.deviceReferenceValues and backend.vendorCAs. \
            The appraisal names the TLS key the evidence binds (tlsKeySHA256, also printed on stderr); with \
            --tls-certificate, tls-key-bound requires the evidence to bind exactly that certificate's key. \
            Exit status 0 when every check passes, 1 otherwise.
            """
    )

    @Option(help: "Evidence JSON (from `securenode quote` or GET /v1/attestation).")
    var evidence: String
    @Option(help: "The nonce the evidence must answer (hex).")
    var nonce: String
    @Option(help: "Firmware profile JSON.")
    var profile: String
    @Option(help: "Enrollment record(s) from `securenode enroll`: the AKs to trust.")
    var enrolled: [String] = []
    @Option(name: .customLong("tls-certificate"), help: "The node's TLS certificate (PEM, leaf first): the evidence must bind its key.")
    var tlsCertificate: String?

    func run() async throws {
        let appraisal: Appraisal
        do {
            let presented = try tlsCertificate.map { path throws in
                try TLSKeyMeasurement.keyDigest(certificatePEM: String(decoding: try FileText.readBytes(path, what: "TLS certificate", limit: 1 << 20), as: UTF8.self),
                                                source: path)
            }
            let profile = try FirmwareProfile.load(path: self.profile)
            let records = try enrolled.map { path throws(AttestationError) in try EnrollmentRecord.load(path: path) }
            guard let expected = ModelSigning.bytes(fromHex: nonce) else { throw CLIFailure("--nonce must be hex") }
            let data = try FileText.readBytes(evidence, what: "evidence", limit: Evidence.maximumSize)
            let vendorCAs = try EvidenceVerifier.loadVendorCAs(profile: profile, profilePath: self.profile)
            appraisal = await EvidenceVerifier(profile: profile, enrolled: records, vendorCAs: vendorCAs, presentedTLSKeySHA256: presented)
                .appraiseWithDevices(json: data, nonce: expected)
        } catch {
            StandardError.write("error: \(error)\n")
            throw ExitCode(1)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(appraisal), as: UTF8.self))
        StandardError.write("TLS key bound by the evidence: \(appraisal.tlsKeySHA256 ?? "none (a plain-HTTP node)")\n")
        if appraisal.result != .pass { throw ExitCode(1) }
    }
}

struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Work with firmware profiles.",
        subcommands: [ProfileCheckCommand.self]
    )
}

struct ProfileCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Validate a firmware profile against the schema.")

    @Argument(help: "Profile JSON file.")
    var file: String

    func run() async throws {
        try await reportingFailures {
            let p = try FirmwareProfile.load(path: file)
            let backend = try ProfileBackendCheck.check(path: file, profile: p).map { ", \($0)" } ?? ""
            print("\(file): profile \(p.id) is valid (quotes PCRs \(p.quotePCRs), measures into PCR \(p.measurementPCR), "
                  + "\(p.modelSigners.count) model signer(s), \(p.referenceValues.count) pinned PCR(s)\(backend))")
        }
    }
}
