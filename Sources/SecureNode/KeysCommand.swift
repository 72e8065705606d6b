import ArgumentParser
import Attestation
import Crypto
import Foundation
import ModelSigning
import NodeCore
import NodeService

/// Where the key store is and how to unseal it: --config (or $SECURENODE_CONFIG), then the
/// environment, then flags, as for `serve`.
struct KeyStoreOptions: ParsableArguments {
    @Option(help: "Configuration file (YAML): profile, tcti, state_dir, keys.policy_key, keys.approvals.")
    var config: String?
    @Option(help: "Firmware profile (firmware-profiles/*.json).")
    var profile: String?
    @Option(help: "TPM TCTI: device:/dev/tpmrm0 in production, swtpm:host=127.0.0.1,port=N with a software TPM.")
    var tcti: String?
    @Option(name: .customLong("state-dir"), help: "The node's state directory (default $SECURENODE_STATE_DIR or /var/lib/securenode); keys live in <state-dir>/keys.")
    var stateDirectory: String?
    @Option(help: "Approvals (JSON from `securenode approve-policy --node-keys`) of the current seal-PCR values; adds to keys.approvals.")
    var approval: [String] = []

    struct Opened {
        let store: NodeKeyStore
        let profilePath: String
        let file: ServiceConfig
        let approvals: [PolicyApproval]
    }

    func open() throws -> Opened {
        let environment = ProcessInfo.processInfo.environment
        let file = try (config ?? environment["SECURENODE_CONFIG"]).map { path throws(ServiceError) in try ServiceConfig.load(path: path) } ?? ServiceConfig()
        guard let profilePath = profile ?? file.profile else { throw CLIFailure("no profile: give --profile or set profile: in the configuration") }
        let attestor = try TPMOptions.attestor(profile: profilePath, tcti: tcti ?? environment["SECURENODE_TCTI"] ?? file.tcti ?? "device:/dev/tpmrm0",
                                               stateDirectory: stateDirectory ?? environment["SECURENODE_STATE_DIR"] ?? file.stateDir)
        let store = NodeKeyStore(stateDirectory: attestor.store.directory, tpm: attestor.tpm, profile: attestor.profile)
        return Opened(store: store, profilePath: profilePath, file: file, approvals: try SealedInputs.approvals((file.keys?.approvals ?? []) + approval))
    }
}

struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "The node's long-term keys (api-tls, keylime-agent-tls, keylime-payload), sealed by the TPM.",
        discussion: """
            Keys are made on the node and never written in the clear: one key-encryption key sealed to the \
            profile's seal PCRs without the ones the node extends itself, each private key AES-256-GCM-encrypted \
            under it, in <state-dir>/keys (README "Node keys").
            """,
        subcommands: [KeysInitCommand.self, KeysStatusCommand.self, KeysRotateCommand.self]
    )
}

struct KeysInitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make the node keys and seal them to this TPM; refuses to replace existing keys unless --force.",
        discussion: """
            Without a policy-authorization key the keys are bound to the current values of the sealed PCRs (a \
            firmware update then needs `keys init --force`, new keys). With one (--policy-key, keys.policy_key or \
            the profile's seal.policyAuthorizationKey) they unseal under any values that key approves \
            (`securenode approve-policy --node-keys`), including today's: give that approval to `serve` \
            (keys.approvals) before it starts.
            """
    )
    @OptionGroup var options: KeyStoreOptions
    @Option(name: .customLong("policy-key"), help: "PEM P-256 public key allowed to approve seal-PCR values (PolicyAuthorize).")
    var policyKeyPath: String?
    @Flag(help: "Replace existing keys (new TLS and Keylime identities: clients and Keylime must trust the new certificates).")
    var force = false

    func run() async throws {
        try await reportingFailures {
            let opened = try options.open()
            let key = try policyKey(option: policyKeyPath ?? opened.file.keys?.policyKey, profilePath: opened.profilePath, profile: opened.store.profile)
            let index = try await opened.store.initialize(authorizationKey: key, force: force)
            print("node keys made in \(opened.store.directory.path), sealed to PCRs \(index.pcrs) (\(index.policy) policy; PCRs \(index.excludedPCRs) the node extends itself are left out)")
            for entry in index.keys { print("  \(entry.name)  \(entry.algorithm)  spki-sha256 \(entry.spkiSHA256)") }
            for path in opened.store.legacyClearKeys() {
                StandardError.write("warning: \(path) holds a private key in the clear from an earlier version; it is no longer used: delete it\n")
            }
        }
    }
}

struct KeysStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the node keys (public parts, policy, PCRs, where each lives) and whether they unseal on this TPM now; exit 1 if not."
    )
    @OptionGroup var options: KeyStoreOptions
    @Flag(help: "Print JSON.")
    var json = false

    struct Report: Encodable {
        var directory: String
        var index: NodeKeyIndex
        var protection: String
        var unseals: Bool
        var reason: String?
        var legacyClearKeys: [String]
    }

    func run() async throws {
        try await reportingFailures {
            let opened = try options.open()
            guard let index = try opened.store.loadIndex() else {
                throw CLIFailure("no node keys in \(opened.store.directory.path): run `securenode keys init`")
            }
            var reason: String?
            do {
                _ = try await opened.store.unlock(approvals: opened.approvals)
            } catch {
                reason = "\(error)"
            }
            let report = Report(directory: opened.store.directory.path, index: index,
                                protection: "each private key AES-256-GCM under a 32-byte key-encryption key sealed by the TPM (\(index.keyEncryptionKeyFile)); never in the clear on disk",
                                unseals: reason == nil, reason: reason, legacyClearKeys: opened.store.legacyClearKeys())
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print("node keys in \(report.directory) (index.json, \(index.schema)), profile \(index.profile)")
                print("key-encryption key: \(index.keyEncryptionKeyFile), sealed to PCRs \(index.pcrs) (SHA-256 bank), "
                      + (index.policy == "authorize" ? "policy authorize: any values the key \(index.authorizationKeyName ?? "?") approves (approve-policy --node-keys)"
                                                     : "policy pcr: the values at sealing time"))
                print("left out of the seal policy: PCRs \(index.excludedPCRs), which the node extends itself at every start (model, receipt key)")
                for entry in index.keys {
                    print("  \(entry.name)  \(entry.algorithm)  spki-sha256 \(entry.spkiSHA256)  private key: \(entry.privateKeyFile) (AES-256-GCM under the sealed key), made \(entry.created)")
                }
                print("unseals on this TPM now: " + (reason.map { "no: \($0)" } ?? "yes"))
                for path in report.legacyClearKeys { print("warning: \(path) holds a private key in the clear from an earlier version: delete it") }
            }
            if reason != nil { throw ExitCode(1) }
        }
    }
}

struct KeysRotateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Replace node keys with new ones (default: all three); the old private keys are deleted. Restart `serve` to use them.",
        discussion: """
            Rotating api-tls or keylime-agent-tls changes the certificate clients and Keylime trust (the self-signed \
            certificates are remade at the next start); rotating keylime-payload changes what the agent binds into PCR 16 \
            (the tenant re-adds the agent).
            """
    )
    @OptionGroup var options: KeyStoreOptions
    @Option(help: "A key to rotate: api-tls, keylime-agent-tls or keylime-payload (repeat; default all).")
    var key: [String] = []

    func run() async throws {
        try await reportingFailures {
            let names = try key.map { name throws -> NodeKeyName in
                guard let parsed = NodeKeyName(rawValue: name) else {
                    throw CLIFailure("--key \(name): not a node key (\(NodeKeyName.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return parsed
            }
            let opened = try options.open()
            let (index, replaced) = try await opened.store.rotate(names.isEmpty ? NodeKeyName.allCases : names, approvals: opened.approvals)
            for entry in index.keys where replaced[entry.name] != nil {
                print("rotated \(entry.name): spki-sha256 \(replaced[entry.name]!) -> \(entry.spkiSHA256)")
            }
        }
    }
}
