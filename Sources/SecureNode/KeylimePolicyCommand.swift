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
            Give it to `keylime_tenant -c add --tpm_policy '...'`. See deploy/keylime/README.md.             With --key-release (a node whose encrypted model's data key Keylime delivers, `model.key.keylime`),             the PCR may also be unextended: {"<measurementPCR>": ["<zeros>", "<value>"]}, because the verifier             must pass a quote taken before the key arrives, and the node measures the model only after it has             decrypted it; any other model still fails. For an encrypted model directory (`model encrypt`) the             value comes from the signed manifest (signature and file list checked; the bytes cannot be read             without the key).
            """
    )
    @Flag(name: .customLong("key-release"),
          help: "The node gets its model key from this Keylime tenant: also accept the unextended model PCR (all zeros).")
    var keyRelease = false

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
            let event: ModelMeasurement
            if EncryptedModel.isEncrypted(path: model) {
                // Without the key: the signer, the signed manifest, and the header's file list against it.
                let bundle = try SigstoreBundle(json: try FileText.readBytes(signature, what: "signature bundle", limit: SigstoreBundle.maximumSize))
                let signer = try await ModelVerifier.checkSigner(bundle: bundle, trust: try trust.anchor())
                let manifest = try ModelManifest(statement: bundle.payload)
                let listed = Set(try EncryptedModel(path: model).header.files.map(\.name))
                let ignored = manifest.ignorePaths + ignorePaths + ModelManifest.gitPaths
                let missing = manifest.resources.map(\.name).filter { !listed.contains($0) }
                let extra = listed.filter { name in manifest.resources.allSatisfy { $0.name != name } && !ignored.contains { name == $0 || name.hasPrefix($0 + "/") } }
                guard missing.isEmpty, extra.isEmpty else {
                    throw CLIFailure("the encrypted model's files do not match its signed manifest (missing: \(missing.sorted()), extra: \(extra.sorted()))")
                }
                event = ModelMeasurement(manifestRoot: hexString(manifest.rootDigest), modelName: manifest.subjectName,
                                         signer: signer.fingerprint, profile: profile.id)
            } else {
                let verified = try await SignedModel.verify(model: model, signature: signature, trust: try trust.anchor(),
                                                            ignorePaths: ignorePaths)
                event = ModelMeasurement(verified: verified, profile: profile.id)
            }
            let zeros = [UInt8](repeating: 0, count: 32)
            let value = hexString(Array(SHA256.hash(data: zeros + event.digest)))
            let accepted = keyRelease ? "\"\(hexString(zeros))\", \"\(value)\"" : "\"\(value)\""
            print("{\"\(profile.measurementPCR)\": [\(accepted)]}")
        }
    }
}
