import ArgumentParser
import Attestation
import Foundation
import Hummingbird
import ModelSigning
import NodeCore
import NodeHTTP
import TPM

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the node: verify, measure and load the model, then serve the HTTP API.",
        discussion: """
            Order: load the profile; verify the model's signature (and that the profile allows its signer: \
            local signers given here only where the profile allows them); parse the verified bytes as GGUF; \
            extend the model's measurement into the TPM; then serve. /readyz answers 200 only once all of \
            that succeeded and while the TPM answers. Endpoints today: /healthz, /readyz, \
            /v1/attestation?nonce=HEX, /v1/enrollment, /v1/enrollment/activate.
            """
    )

    @OptionGroup var tpm: TPMOptions
    @Option(help: "The model directory, or a single model file.")
    var model: String
    @Option(help: "The model's signature bundle.")
    var signature: String
    @OptionGroup var trust: TrustOptions
    @Option(help: "Address to bind (default 127.0.0.1: loopback only).")
    var host: String = "127.0.0.1"
    @Option(help: "TCP port.")
    var port: Int = 8080

    func run() async throws {
        try await reportingFailures {
            let attestor = try tpm.attestor()
            let loaded = try await LoadedModel.open(model: model, signature: signature, trust: try trust.anchor())
            try await attestor.measure(loaded.verified, localSigners: [loaded.verified.signer.fingerprint])
            let readiness = Readiness()
            await readiness.set(ready: true, reason: "\(loaded.verified.manifest.subjectName) (\(loaded.verified.rootDigestHex))")
            let app = NodeServer.application(routes: NodeRoutes(attestor: attestor, readiness: readiness), host: host, port: port) { port in
                StandardError.write("securenode: serving on http://\(host):\(port) (profile \(attestor.profile.id))\n")
            }
            try await app.runService()
        }
    }
}

struct EnrollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Orchestrator side (no TPM needed): enroll a node's attestation key.",
        discussion: """
            Fetches the node's EK and AK (GET /v1/enrollment), checks the EK certificate against the profile's \
            ekCAs (and --ek-ca), challenges the AK with MakeCredential against that EK, and requires the node to \
            answer it with TPM2_ActivateCredential (POST /v1/enrollment/activate). Writes the enrollment record \
            that `securenode verify --enrolled` trusts.
            """
    )

    @Option(help: "The node's base URL, e.g. http://127.0.0.1:8080.")
    var node: String
    @Option(help: "Firmware profile JSON.")
    var profile: String
    @Option(name: .customLong("ek-ca"), help: "Additional trusted EK CA certificates (PEM).")
    var ekCA: [String] = []
    @Option(name: .customLong("out"), help: "Where to write the enrollment record (JSON).")
    var output: String

    func run() async throws {
        try await reportingFailures {
            guard let url = URL(string: node), url.scheme == "http" || url.scheme == "https" else {
                throw CLIFailure("--node must be an http(s) URL")
            }
            let profile = try FirmwareProfile.load(path: self.profile)
            let base = URL(fileURLWithPath: self.profile).deletingLastPathComponent()
            let (cas, missing) = try EnrollmentVerifier.loadCAs(profile.ekCAs + ekCA, relativeTo: base)
            for path in missing { StandardError.write("warning: EK CA \(path) does not exist; not trusted\n") }
            guard !cas.isEmpty else { throw CLIFailure("no EK CA to trust: none of the profile's ekCAs exist; give --ek-ca") }
            let record = try await EnrollmentClient(node: url, profile: profile, verifier: EnrollmentVerifier(trustedCAs: cas)).enroll()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try FileText.writeAtomically(Array(try encoder.encode(record)), to: output)
            print("enrolled AK \(record.akName) of \(node) (EK certificate \"\(record.ekCertificateSubject)\") -> \(output)")
        }
    }
}
