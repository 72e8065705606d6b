import Attestation
import Foundation
import ModelSigning
import NodeCore
import NodeHTTP
import NodeService
import Synchronization

/// Where `serve` gets the data key of an encrypted model (`model.key` in the configuration, or the
/// `--model-key-*` flags), and the rules for releasing it. The key only ever lives in memory.
enum ModelKeySource: Sendable, Equatable {
    /// Sealed with `securenode seal` to the profile's seal policy: unsealed by this node's TPM.
    case sealed(path: String, approvals: [String], policyKey: String?)
    /// Keylime's secure payload (`keylime_tenant -c add ... -f KEY`): K = U xor V, and the verifier
    /// sends V only after a quote of this node passed its policy.
    case keylime(waitSeconds: Int)

    static let defaultWaitSeconds = 300

    /// nil when no key is configured (a plaintext model).
    static func resolve(_ key: ServiceConfig.Key?, sealedFlag: String?, approvalFlags: [String], policyKeyFlag: String?,
                        keylimeConfigured: Bool) throws -> ModelKeySource? {
        let sealed = sealedFlag ?? key?.sealed
        let keylime = key?.keylime ?? false
        switch (sealed, keylime) {
        case (.some, true):
            throw CLIFailure("model.key.sealed and model.key.keylime are both set: choose one source for the model's data key")
        case (.some(let path), false):
            return .sealed(path: path, approvals: approvalFlags.isEmpty ? (key?.approvals ?? []) : approvalFlags,
                           policyKey: policyKeyFlag ?? key?.policyKey)
        case (nil, true):
            guard keylimeConfigured else {
                throw CLIFailure("model.key.keylime: true needs the keylime: section (the agent that receives the key)")
            }
            let seconds = key?.waitSeconds ?? defaultWaitSeconds
            guard (1...86_400).contains(seconds) else { throw CLIFailure("model.key.wait_seconds must be 1...86400; got \(seconds)") }
            return .keylime(waitSeconds: seconds)
        case (nil, false):
            if !approvalFlags.isEmpty || policyKeyFlag != nil {
                throw CLIFailure("--model-key-approval and --model-key-policy-key need a sealed model key (--model-key-sealed or model.key.sealed)")
            }
            return nil
        }
    }
}

/// The Keylime agent's hand-over of its decrypted payload to `serve`: in memory, taken once.
final class KeylimeKeyMailbox: Sendable {
    private let slot = Mutex<[UInt8]?>(nil)
    private let failure = Mutex<String?>(nil)

    func deliver(_ bytes: [UInt8]) { slot.withLock { $0 = bytes } }

    /// The agent stopped before it delivered anything (e.g. its port is taken): waiting is pointless.
    func fail(_ reason: String) { failure.withLock { $0 = reason } }
    var failed: String? { failure.withLock { $0 } }

    func take() -> [UInt8]? {
        slot.withLock { slot in
            defer { slot = nil }
            return slot
        }
    }
}

enum ModelKeyRelease {
    static func revokedRefusal(_ reason: String) -> CLIFailure {
        CLIFailure("this node is revoked and refuses to decrypt its encrypted model (\(reason)); it decrypts again once the "
                   + "Keylime verifier attests it again, or after an operator runs `securenode revocation clear`")
    }

    /// Unseals the data key with this node's TPM (`securenode unseal`'s rules: the profile's seal PCRs,
    /// PolicyAuthorize approvals); refused while the node is revoked.
    static func unseal(path: String, approvals: [String], policyKeyPath: String?, profilePath: String, attestor: Attestor,
                       readiness: Readiness) async throws -> DataKey {
        if let reason = await readiness.revocation { throw revokedRefusal(reason) }
        let sealed = try SealedInputs.sealedSecret(path)
        let approvalFiles = try SealedInputs.approvals(approvals)
        let key = try policyKey(option: policyKeyPath, profilePath: profilePath, profile: attestor.profile)
        var secret: [UInt8]
        do {
            secret = try await Sealer(tpm: attestor.tpm, profile: attestor.profile).unseal(sealed, approvals: approvalFiles, authorizationKey: key)
        } catch {
            throw CLIFailure("cannot unseal the model's data key \(path) (model.key.sealed): \(error)")
        }
        defer { DataKey.wipe(&secret) }
        do {
            return try DataKey(bytes: secret)
        } catch {
            throw CLIFailure("the secret sealed in \(path) is not a model data key: \(error.reason)")
        }
    }

    /// Waits (at most `seconds`) for Keylime to deliver the key, and for the node not to be revoked
    /// (the verifier's V means a quote passed, which reinstates a persisted revocation).
    static func awaitKeylime(mailbox: KeylimeKeyMailbox, readiness: Readiness, seconds: Int) async throws -> DataKey {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(seconds)
        var key: DataKey?
        while clock.now < deadline {
            if key == nil, var bytes = mailbox.take() {
                defer { DataKey.wipe(&bytes) }
                do {
                    key = try DataKey(bytes: bytes)
                } catch {
                    throw CLIFailure("the Keylime payload is not a model data key: it is \(bytes.count) bytes, a data key is "
                                     + "\(DataKey.byteCount) (deliver the file `securenode model encrypt --key-out` wrote, with keylime_tenant -f)")
                }
                StandardError.write("securenode: the Keylime verifier released the model's data key (in memory)\n")
            }
            if let key, await readiness.revocation == nil { return key }
            if key == nil, let reason = mailbox.failed {
                throw CLIFailure("the Keylime agent stopped before the model's data key arrived: \(reason)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        if key != nil, let reason = await readiness.revocation { throw revokedRefusal(reason) }
        throw CLIFailure("no model data key from Keylime within \(seconds) s (model.key.wait_seconds): add this node with "
                         + "`keylime_tenant -c add ... -f KEYFILE` and a tpm_policy it passes (securenode keylime-policy --key-release)")
    }
}
