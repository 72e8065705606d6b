import ArgumentParser
import Attestation
import Crypto
import Foundation
import ModelSigning
import NodeCore
import TPM

/// Reads the policy-authorization public key from --policy-key (or keys.policy_key) or the profile's seal policy.
func policyKey(option: String?, profilePath: String, profile: FirmwareProfile) throws -> P256.Signing.PublicKey? {
    guard let reference = option ?? profile.seal.policyAuthorizationKey else { return nil }
    let pem: String
    if reference.contains("-----BEGIN") {
        pem = reference
    } else {
        let base = URL(fileURLWithPath: profilePath).deletingLastPathComponent()
        let path = reference.hasPrefix("/") ? reference : base.appendingPathComponent(reference).path
        pem = try FileText.read(option == nil ? path : reference, what: "policy-authorization key")
    }
    do {
        return try P256.Signing.PublicKey(pemRepresentation: pem)
    } catch {
        throw CLIFailure("the policy-authorization key must be a P-256 public key in PEM")
    }
}

/// What `unseal` and `serve` (model.key.sealed) read: a sealed secret and publisher approvals.
enum SealedInputs {
    static func sealedSecret(_ path: String) throws -> SealedSecretFile {
        do {
            return try JSONDecoder().decode(SealedSecretFile.self, from: Data(try FileText.readBytes(path, what: "sealed secret")))
        } catch let error as CLIFailure {
            throw error
        } catch {
            throw CLIFailure("\(path) is not a sealed secret")
        }
    }

    static func approvals(_ paths: [String]) throws -> [PolicyApproval] {
        try paths.map { path -> PolicyApproval in
            do {
                return try JSONDecoder().decode(PolicyApproval.self, from: Data(try FileText.readBytes(path, what: "approval")))
            } catch let error as CLIFailure {
                throw error
            } catch {
                throw CLIFailure("\(path) is not a policy approval")
            }
        }
    }
}

struct SealCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seal",
        abstract: "Seal a secret (at most 128 bytes) to the profile's PCR policy.",
        discussion: """
            Without a policy-authorization key the secret is bound to the current values of the profile's \
            seal PCRs. With one (--policy-key or the profile's seal.policyAuthorizationKey), it unseals under \
            any PCR values that key approves (`securenode approve-policy`), so approved firmware updates do \
            not require resealing. The output is written atomically with owner-only permissions.
            """
    )
    @OptionGroup var tpm: TPMOptions
    @Option(name: .customLong("in"), help: "File holding the secret.")
    var input: String
    @Option(name: .customLong("out"), help: "Where to write the sealed secret (JSON).")
    var output: String
    @Option(name: .customLong("policy-key"), help: "PEM P-256 public key allowed to approve PCR values.")
    var policyKeyPath: String?

    func run() async throws {
        try await reportingFailures {
            let attestor = try tpm.attestor()
            let key = try policyKey(option: policyKeyPath, profilePath: tpm.profile, profile: attestor.profile)
            let secret = try FileText.readBytes(input, what: "secret", limit: 128)
            let sealed = try await Sealer(tpm: attestor.tpm, profile: attestor.profile).seal(secret, authorizationKey: key)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try Sealer.writeOwnerOnly(Array(try encoder.encode(sealed)), to: output)
            print("sealed \(secret.count) bytes to PCRs \(sealed.pcrs) (\(sealed.policy) policy) -> \(output)")
        }
    }
}

struct UnsealCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unseal",
        abstract: "Unseal a secret sealed by `securenode seal`; fails if the PCRs changed without approval."
    )
    @OptionGroup var tpm: TPMOptions
    @Option(name: .customLong("in"), help: "The sealed secret (JSON).")
    var input: String
    @Option(name: .customLong("out"), help: "Where to write the secret (owner-only).")
    var output: String
    @Option(help: "Publisher approvals (JSON from `securenode approve-policy`).")
    var approval: [String] = []
    @Option(name: .customLong("policy-key"), help: "PEM P-256 public key the secret was sealed to.")
    var policyKeyPath: String?

    func run() async throws {
        try await reportingFailures {
            let attestor = try tpm.attestor()
            let key = try policyKey(option: policyKeyPath, profilePath: tpm.profile, profile: attestor.profile)
            let sealed = try SealedInputs.sealedSecret(input)
            let approvals = try SealedInputs.approvals(approval)
            let secret = try await Sealer(tpm: attestor.tpm, profile: attestor.profile).unseal(sealed, approvals: approvals, authorizationKey: key)
            try Sealer.writeOwnerOnly(secret, to: output)
            print("unsealed \(secret.count) bytes -> \(output)")
        }
    }
}

struct ApprovePolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve-policy",
        abstract: "Publisher side (no TPM): approve PCR values for secrets sealed to your policy key.",
        discussion: """
            Give the values with --pcr INDEX=HEX (repeat), e.g. from a verified node's evidence after a firmware update. \
            The approval is bound to --profile: to its id and its seal PCRs (the policyRef it signs names both), \
            so it must give exactly those PCRs; it unseals nothing sealed under another profile or PCR selection. \
            With --node-keys it approves values for the node keys (`securenode keys`), which are sealed to the \
            profile's seal PCRs without the ones the node extends itself (measurementPCR, receiptKeyPCR).
            """
    )
    @Option(help: "The firmware profile whose sealed secrets this approves (its id and seal.pcrs are bound into the approval).")
    var profile: String
    @Option(name: .customLong("private-key"), help: "The policy-authorization private key (PEM P-256).")
    var privateKey: String
    @Option(help: "An approved PCR value, INDEX=HEX (SHA-256 bank); repeat for every sealed PCR.")
    var pcr: [String]
    @Option(name: .customLong("out"), help: "Where to write the approval (JSON).")
    var output: String
    @Flag(name: .customLong("node-keys"), help: "Approve for the node keys: the profile's seal PCRs without the ones the node extends itself.")
    var nodeKeys = false

    func run() async throws {
        try await reportingFailures {
            var values: [Int: [UInt8]] = [:]
            for item in pcr {
                let parts = item.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let index = Int(parts[0]), (0...23).contains(index),
                      let value = ModelSigning.bytes(fromHex: parts[1]), value.count == 32 else {
                    throw CLIFailure("--pcr \(item): expected INDEX=HEX with a 64-digit SHA-256 value")
                }
                values[index] = value
            }
            let key: P256.Signing.PrivateKey
            do {
                key = try P256.Signing.PrivateKey(pemRepresentation: try FileText.read(privateKey, what: "private key"))
            } catch let error as CLIFailure {
                throw error
            } catch {
                throw CLIFailure("the policy-authorization key must be an unencrypted P-256 private key in PEM")
            }
            let p = try FirmwareProfile.load(path: profile)
            let sealPCRs = nodeKeys ? try NodeKeyStore.sealPCRs(for: p).pcrs : p.seal.pcrs
            let approval = try PolicyApproval(values: values, key: key, profile: p.id, sealPCRs: sealPCRs)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try FileText.writeAtomically(Array(try encoder.encode(approval)), to: output)
            print("approved PCRs \(values.keys.sorted()) for profile \(p.id) (policy \(approval.approvedPolicy), policyRef \(approval.policyRef)) -> \(output)")
        }
    }
}
