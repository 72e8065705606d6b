import ArgumentParser
import Attestation
import Crypto
import Foundation
import ModelSigning

/// The fleet operator's side of Keylime enrollment: the tenant's `--tpm_policy` for a node that
/// runs a given signed model under a given profile, computed from the model and its signature alone
/// (nothing is read from the node).
struct KeylimePolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keylime-policy",
        abstract: "Print the Keylime tpm_policy that pins a node's model PCR to a signed model.",
        discussion: """
            Verifies the model against its signature, builds the model event the node measures \
            (securenode.model.v1: manifest root, model name, signer fingerprint, profile id) and prints \
            {"<measurementPCR>": ["<SHA-256(zeros || event digest)>"]}: the PCR's value once the node has \
            loaded that model since boot (a restart with the same model keeps it; any other model changes it). \
            Give it to `keylime_tenant -c add --tpm_policy '...'`. See deploy/keylime/README.md.
            """
    )

    @Option(help: "Firmware profile the node runs (firmware-profiles/*.json).")
    var profile: String
    @Option(help: "The model directory, or a single model file.")
    var model: String
    @Option(help: "The model's signature bundle.")
    var signature: String
    @OptionGroup var trust: TrustOptions
    @Option(name: .customLong("ignore-path"), help: "Paths the signature does not cover (as for `model verify`).")
    var ignorePaths: [String] = []

    func run() async throws {
        try await reportingFailures {
            let profile = try FirmwareProfile.load(path: self.profile)
            let verified = try await SignedModel.verify(model: model, signature: signature, trust: try trust.anchor(),
                                                        ignorePaths: ignorePaths)
            let event = ModelMeasurement(verified: verified, profile: profile.id)
            let value = Array(SHA256.hash(data: [UInt8](repeating: 0, count: 32) + event.digest))
            print("{\"\(profile.measurementPCR)\": [\"\(hexString(value))\"]}")
        }
    }
}
