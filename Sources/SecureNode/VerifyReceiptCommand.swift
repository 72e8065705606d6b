import ArgumentParser
import Attestation
import Foundation
import ModelSigning
import NodeService

/// `securenode verify-receipt`: checks a completion's receipt offline.
struct VerifyReceiptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-receipt",
        abstract: "Check a completion's receipt against the request, the response and the node's evidence (offline).",
        discussion: """
            --receipt takes the receipt JSON, the X-SecureNode-Receipt header value (base64), or a saved response \
            that carries one (JSON, or a server-sent-event transcript whose final event has it). --request is the \
            exact request body sent. --response is the saved response (JSON or event-stream transcript; the \
            generated text is taken from it, and with n > 1 or logprobs every choice's text, finish reason and \
            log-probabilities, as README.md's "Receipts" describes), or a plain text file. --evidence is GET /v1/attestation output. \
            Checks, in order: \(ReceiptVerifier.checkNames.joined(separator: ", ")). With --profile, --nonce and \
            --enrolled, the evidence is also appraised as `securenode verify` does (AK enrolled, fresh nonce, \
            reference values, allowed model). Prints a JSON report; exit 0 only if every check passed.
            """
    )

    @Option(help: "The receipt (JSON, base64 header value, or a response carrying one).")
    var receipt: String
    @Option(help: "The request body, byte for byte.")
    var request: String
    @Option(help: "The response (JSON, event-stream transcript, or plain text).")
    var response: String
    @Option(help: "Evidence JSON from the node (GET /v1/attestation).")
    var evidence: String
    @Option(help: "Also appraise the evidence against this firmware profile.")
    var profile: String?
    @Option(help: "With --profile: the nonce the evidence must answer (hex).")
    var nonce: String?
    @Option(help: "With --profile: enrollment record(s) of trusted AKs.")
    var enrolled: [String] = []

    func validate() throws {
        if profile != nil && nonce == nil { throw ValidationError("--profile needs --nonce (the evidence's freshness is part of the appraisal)") }
    }

    func run() async throws {
        try await reportingFailures {
            let receiptValue = try Self.loadReceipt(try Self.bytes(receipt, "receipt"))
            let requestBytes = try Self.bytes(request, "request")
            let responseText = Self.generatedText(try Self.bytes(response, "response"))
            let evidenceBytes = try Self.bytes(evidence, "evidence")
            let evidenceValue: Evidence
            do { evidenceValue = try Evidence(json: Data(evidenceBytes)) } catch { throw CLIFailure("\(evidence) is not evidence JSON: \(error)") }
            let loadedProfile = try profile.map { path throws(AttestationError) in try FirmwareProfile.load(path: path) }
            var checks = ReceiptVerifier.verify(receipt: receiptValue, request: requestBytes, responseText: responseText, evidence: evidenceValue,
                                                measurementPCR: loadedProfile?.measurementPCR)
            if let p = loadedProfile, let nonce {
                guard let expected = ModelSigning.bytes(fromHex: nonce) else { throw CLIFailure("--nonce must be hex") }
                let records = try enrolled.map { path throws(AttestationError) in try EnrollmentRecord.load(path: path) }
                let appraisal = EvidenceVerifier(profile: p, enrolled: records).appraise(json: evidenceBytes, nonce: expected)
                checks += appraisal.checks.map { .init(check: "evidence:" + $0.check, result: $0.result, detail: $0.detail) }
            }
            struct Report: Encodable { let result: String; let receipt: String; let checks: [Appraisal.Check] }
            let failed = checks.contains { $0.result == .fail }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(Report(result: failed ? "fail" : "pass", receipt: receiptValue.id, checks: checks)), as: UTF8.self))
            if failed {
                let first = checks.first { $0.result == .fail }!
                throw CLIFailure("receipt refused: \(first.check): \(first.detail)")
            }
        }
    }

    static func bytes(_ path: String, _ what: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIFailure("cannot read the \(what) file \(path)") }
        return Array(data)
    }

    /// A receipt from its JSON, a base64 header value, a response JSON with `receipt`, or an SSE transcript.
    static func loadReceipt(_ bytes: [UInt8]) throws -> Receipt {
        let decoder = JSONDecoder()
        if let r = try? decoder.decode(Receipt.self, from: Data(bytes)) { return r }
        struct Carrier: Decodable { let receipt: Receipt? }
        if let c = try? decoder.decode(Carrier.self, from: Data(bytes)), let r = c.receipt { return r }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if let data = Data(base64Encoded: text), let r = try? decoder.decode(Receipt.self, from: data) { return r }
        for line in text.split(separator: "\n") where line.hasPrefix("data: ") {
            if let c = try? decoder.decode(Carrier.self, from: Data(line.dropFirst(6).utf8)), let r = c.receipt { return r }
        }
        throw CLIFailure("no receipt found (expected receipt JSON, an X-SecureNode-Receipt value, or a response carrying one)")
    }

    /// What the receipt's `responseSHA256` covers, rebuilt from a saved response (``ResponseTranscript/text(ofResponse:)``).
    static func generatedText(_ bytes: [UInt8]) -> String {
        ResponseTranscript.text(ofResponse: bytes)
    }
}
