import Attestation
import Crypto
import CryptoExtras
import Foundation
import ModelSigning
import TPM

/// The one owner of `<state_dir>/keys/`: the node's long-term keys (``NodeKeyName``), made on the
/// node and never written in the clear.
///
/// Layout: one 32-byte key-encryption key (KEK), sealed by ``Sealer`` to the profile's seal PCRs
/// without the ones the node extends itself (``sealPCRs(for:)``) — to their values at sealing time,
/// or with a policy-authorization key to any values it approves (`approve-policy --node-keys`) —
/// in `kek.sealed.json`; each private key AES-256-GCM-encrypted under the KEK with its name and
/// public-key digest as associated data, in `<name>-<spki prefix>.key.enc`; `index.json`
/// (``NodeKeyIndex``) with the public parts. The KEK exists in the clear only inside the TPM and,
/// briefly, in this process while keys are decrypted (then overwritten with zeros).
///
/// Unlocking checks, in order: the index's profile and PCR selection against this node's profile
/// (the profile decides, not the editable index); the TPM unseals the KEK (TPM2_Load fails for a
/// state directory copied from another TPM; the policy session fails when a seal PCR changed
/// without an approval, and the PCRs that changed since sealing are named); each key decrypts and
/// authenticates under the KEK; its public key matches the index's digest.
public struct NodeKeyStore: Sendable {
    public let directory: URL
    public let tpm: TPM
    public let profile: FirmwareProfile

    public init(stateDirectory: URL, tpm: TPM, profile: FirmwareProfile) {
        directory = stateDirectory.appendingPathComponent("keys", isDirectory: true)
        self.tpm = tpm
        self.profile = profile
    }

    public var indexPath: String { directory.appendingPathComponent("index.json").path }
    static let keyEncryptionKeyFile = "kek.sealed.json"

    /// Where the self-signed certificate of `name` is kept (public).
    public func certificatePath(_ name: NodeKeyName) -> String {
        directory.appendingPathComponent("\(name.rawValue).crt.pem").path
    }

    /// Files earlier versions kept private keys in, in the clear (relative to the state directory).
    public static let legacyClearKeyFiles = ["keylime/agent-key.pem", "keylime/agent-payload-key.pem"]

    /// Those of ``legacyClearKeyFiles`` still present: the operator should delete them.
    public func legacyClearKeys() -> [String] {
        let state = directory.deletingLastPathComponent()
        return Self.legacyClearKeyFiles.map { state.appendingPathComponent($0).path }.filter { FileManager.default.fileExists(atPath: $0) }
    }

    /// The profile's seal PCRs without the node's own (measurementPCR, receiptKeyPCR: extended at
    /// every `serve` start, so a key sealed to them would not unseal after the first one), and the
    /// ones left out. Refused when what remains protects nothing (empty or resettable).
    public static func sealPCRs(for profile: FirmwareProfile) throws -> (pcrs: [Int], excluded: [Int]) {
        let own = Set(profile.nodePCRs)
        let pcrs = profile.seal.pcrs.filter { !own.contains($0) }.sorted()
        let excluded = profile.seal.pcrs.filter { own.contains($0) }.sorted()
        do {
            try Sealer.checkSealPCRs(pcrs, profile: profile.id)
        } catch {
            throw NodeError("cannot seal the node keys under profile \(profile.id): its seal PCRs \(profile.seal.pcrs) without the ones the node extends itself "
                            + "(\(profile.nodePCRs)) leave \(pcrs): \(error)")
        }
        return (pcrs, excluded)
    }

    /// The index, or nil when no keys were made here.
    public func loadIndex() throws -> NodeKeyIndex? {
        guard let data = FileManager.default.contents(atPath: indexPath) else { return nil }
        guard let index = try? JSONDecoder().decode(NodeKeyIndex.self, from: data), index.schema == NodeKeyIndex.schemaName else {
            throw NodeError("\(indexPath) is not a SecureNode key index (\(NodeKeyIndex.schemaName))")
        }
        return index
    }

    /// Makes every key and seals the KEK. Refuses to replace existing keys unless `force`.
    public func initialize(authorizationKey: P256.Signing.PublicKey?, force: Bool) async throws -> NodeKeyIndex {
        let previous = try? loadIndex()
        if !force, FileManager.default.fileExists(atPath: indexPath) {
            throw NodeError("node keys already exist in \(directory.path); `keys init` does not overwrite them (--force replaces every key, "
                            + "which changes the node's TLS and Keylime identities; `keys rotate --key NAME` replaces one)")
        }
        let (pcrs, excluded) = try Self.sealPCRs(for: profile)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var kek = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        defer { Self.zeroize(&kek) }
        let values = try await tpm.pcrValues(pcrs)
        let sealed = try await Sealer(tpm: tpm, profile: profile, pcrs: pcrs).seal(kek, authorizationKey: authorizationKey)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Sealer.writeOwnerOnly(Array(try encoder.encode(sealed)), to: directory.appendingPathComponent(Self.keyEncryptionKeyFile).path)
        var entries: [NodeKeyIndex.Entry] = []
        for name in NodeKeyName.allCases { entries.append(try makeKey(name, kek: kek)) }
        let index = NodeKeyIndex(schema: NodeKeyIndex.schemaName, profile: profile.id, pcrs: pcrs, excludedPCRs: excluded, policy: sealed.policy,
                                 authorizationKeyPEM: authorizationKey?.pemRepresentation, authorizationKeyName: sealed.authorizationKeyName,
                                 pcrValuesAtSeal: Dictionary(uniqueKeysWithValues: values.map { (String($0.key), hexString($0.value)) }),
                                 keyEncryptionKeyFile: Self.keyEncryptionKeyFile, keys: entries)
        try writeIndex(index)
        for entry in previous?.keys ?? [] where !entries.contains(where: { $0.privateKeyFile == entry.privateKeyFile }) {
            unlink(directory.appendingPathComponent(entry.privateKeyFile).path)
        }
        for name in NodeKeyName.allCases { unlink(certificatePath(name)) }
        return index
    }

    /// Unseals the KEK and decrypts every key into memory.
    public func unlock(approvals: [PolicyApproval]) async throws -> NodeKeys {
        guard let index = try loadIndex() else {
            throw NodeError("no node keys in \(directory.path): run `securenode keys init` (README \"Node keys\")")
        }
        var kek = try await unsealKeyEncryptionKey(index, approvals: approvals)
        defer { Self.zeroize(&kek) }
        return NodeKeys(apiTLS: try p256(.apiTLS, index: index, kek: kek), keylimeAgentTLS: try p256(.keylimeAgentTLS, index: index, kek: kek),
                        keylimePayload: try rsa(.keylimePayload, index: index, kek: kek), index: index)
    }

    /// Replaces `names` with new keys under the same KEK; the old encrypted keys and certificates
    /// are deleted. Returns the new index and the replaced keys' SPKI digests.
    public func rotate(_ names: [NodeKeyName], approvals: [PolicyApproval]) async throws -> (index: NodeKeyIndex, replaced: [String: String]) {
        guard var index = try loadIndex() else {
            throw NodeError("no node keys in \(directory.path): run `securenode keys init`")
        }
        var kek = try await unsealKeyEncryptionKey(index, approvals: approvals)
        defer { Self.zeroize(&kek) }
        var stale: [String] = []
        var replaced: [String: String] = [:]
        for name in Set(names).sorted(by: { $0.rawValue < $1.rawValue }) {
            let entry = try makeKey(name, kek: kek)
            if let i = index.keys.firstIndex(where: { $0.name == name.rawValue }) {
                stale.append(index.keys[i].privateKeyFile)
                replaced[name.rawValue] = index.keys[i].spkiSHA256
                index.keys[i] = entry
            } else {
                index.keys.append(entry)
            }
        }
        try writeIndex(index)
        for file in stale { unlink(directory.appendingPathComponent(file).path) }
        for name in names { unlink(certificatePath(name)) }
        return (index, replaced)
    }

    // MARK: the key-encryption key

    func unsealKeyEncryptionKey(_ index: NodeKeyIndex, approvals: [PolicyApproval]) async throws -> [UInt8] {
        let what = "node keys \(index.keys.map(\.name).joined(separator: ", ")) (\(directory.path))"
        let (pcrs, _) = try Self.sealPCRs(for: profile)
        guard index.profile == profile.id, index.pcrs.sorted() == pcrs else {
            throw NodeError("refusing \(what): they were sealed under profile \(index.profile) to PCRs \(index.pcrs.sorted()), but profile \(profile.id) "
                            + "seals node keys to PCRs \(pcrs) (run `securenode keys init --force` to make new keys for this profile)")
        }
        let kekPath = directory.appendingPathComponent(index.keyEncryptionKeyFile).path
        guard (index.keyEncryptionKeyFile as NSString).lastPathComponent == index.keyEncryptionKeyFile,
              let data = FileManager.default.contents(atPath: kekPath),
              let sealed = try? JSONDecoder().decode(SealedSecretFile.self, from: data) else {
            throw NodeError("refusing \(what): the sealed key-encryption key \(kekPath) is missing or unreadable")
        }
        let authorizationKey: P256.Signing.PublicKey?
        do {
            authorizationKey = try index.authorizationKeyPEM.map { try P256.Signing.PublicKey(pemRepresentation: $0) }
        } catch {
            throw NodeError("refusing \(what): authorizationKeyPEM in \(indexPath) is not a P-256 public key")
        }
        do {
            return try await Sealer(tpm: tpm, profile: profile, pcrs: pcrs).unseal(sealed, approvals: approvals, authorizationKey: authorizationKey)
        } catch let error as NodeError {
            var reason = error.description
            if !reason.contains("different TPM"), let changed = try? await changedPCRs(index), !changed.isEmpty {
                reason = "seal PCRs \(changed) changed since the keys were sealed; "
                    + (index.policy == "authorize"
                        ? "no approval of their current values was given (securenode approve-policy --node-keys, then keys.approvals or --approval): "
                        : "they are sealed to PCR values without a policy-authorization key, so no approval can help (re-provision: keys init --force): ")
                    + reason
            }
            throw NodeError("refusing \(what): \(reason)")
        } catch let error as TPMError {
            throw NodeError("cannot unseal \(what): \(error)")
        }
    }

    /// PCRs whose value differs from the one recorded when the KEK was sealed.
    func changedPCRs(_ index: NodeKeyIndex) async throws -> [Int] {
        let now = try await tpm.pcrValues(index.pcrs)
        return index.pcrs.filter { pcr in now[pcr].map { hexString($0) } != index.pcrValuesAtSeal[String(pcr)]?.lowercased() }.sorted()
    }

    // MARK: private keys

    private func makeKey(_ name: NodeKeyName, kek: [UInt8]) throws -> NodeKeyIndex.Entry {
        var secret: Data
        let spki: Data
        let pem: String
        switch name {
        case .apiTLS, .keylimeAgentTLS:
            let key = P256.Signing.PrivateKey()
            secret = key.rawRepresentation
            spki = key.publicKey.derRepresentation
            pem = key.publicKey.pemRepresentation
        case .keylimePayload:
            let key = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
            secret = key.derRepresentation
            spki = key.publicKey.derRepresentation
            pem = key.publicKey.pemRepresentation
        }
        defer { secret.resetBytes(in: 0..<secret.count) }
        let digest = hexString(Array(SHA256.hash(data: spki)))
        let file = "\(name.rawValue)-\(digest.prefix(16)).key.enc"
        let box = try AES.GCM.seal(secret, using: SymmetricKey(data: kek), authenticating: Self.associatedData(name, spkiSHA256: digest))
        guard let combined = box.combined else { throw NodeError("AES-GCM produced no ciphertext for node key \(name.rawValue)") }
        try Sealer.writeOwnerOnly(Array(combined), to: directory.appendingPathComponent(file).path)
        return NodeKeyIndex.Entry(name: name.rawValue, algorithm: name.algorithm, spkiSHA256: digest, publicKeyPEM: pem + "\n", privateKeyFile: file,
                                  created: ISO8601DateFormatter().string(from: Date()))
    }

    /// The associated data of a key's ciphertext: its name and public-key digest, so a ciphertext
    /// moved to another name or paired with another public key fails its tag.
    static func associatedData(_ name: NodeKeyName, spkiSHA256: String) -> [UInt8] {
        Array("securenode.node-key.v1\nname=\(name.rawValue)\nspki-sha256=\(spkiSHA256.lowercased())".utf8)
    }

    /// The private key bytes (caller zeroizes), authenticated under the KEK.
    private func decrypt(_ name: NodeKeyName, index: NodeKeyIndex, kek: [UInt8]) throws -> (bytes: Data, entry: NodeKeyIndex.Entry) {
        guard let entry = index.entry(name) else {
            throw NodeError("node key \(name.rawValue) is missing from \(indexPath): run `securenode keys rotate --key \(name.rawValue)`")
        }
        let path = directory.appendingPathComponent(entry.privateKeyFile).path
        guard (entry.privateKeyFile as NSString).lastPathComponent == entry.privateKeyFile, let data = FileManager.default.contents(atPath: path) else {
            throw NodeError("node key \(name.rawValue): cannot read \(path)")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: data)
            return (try AES.GCM.open(box, using: SymmetricKey(data: kek), authenticating: Self.associatedData(name, spkiSHA256: entry.spkiSHA256)), entry)
        } catch {
            throw NodeError("node key \(name.rawValue) (\(path)) does not decrypt under the sealed key-encryption key: the file or the index was altered, or they belong to other keys")
        }
    }

    private func p256(_ name: NodeKeyName, index: NodeKeyIndex, kek: [UInt8]) throws -> P256.Signing.PrivateKey {
        let decrypted = try decrypt(name, index: index, kek: kek)
        let entry = decrypted.entry
        var bytes = decrypted.bytes
        defer { bytes.resetBytes(in: 0..<bytes.count) }
        guard let key = try? P256.Signing.PrivateKey(rawRepresentation: bytes),
              hexString(Array(SHA256.hash(data: key.publicKey.derRepresentation))) == entry.spkiSHA256.lowercased() else {
            throw NodeError("node key \(name.rawValue) is not the P-256 key its index entry names")
        }
        return key
    }

    private func rsa(_ name: NodeKeyName, index: NodeKeyIndex, kek: [UInt8]) throws -> _RSA.Encryption.PrivateKey {
        let decrypted = try decrypt(name, index: index, kek: kek)
        let entry = decrypted.entry
        var bytes = decrypted.bytes
        defer { bytes.resetBytes(in: 0..<bytes.count) }
        guard let key = try? _RSA.Encryption.PrivateKey(derRepresentation: bytes),
              hexString(Array(SHA256.hash(data: key.publicKey.derRepresentation))) == entry.spkiSHA256.lowercased() else {
            throw NodeError("node key \(name.rawValue) is not the RSA key its index entry names")
        }
        return key
    }

    private func writeIndex(_ index: NodeKeyIndex) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Sealer.writeOwnerOnly(Array(try encoder.encode(index)), to: indexPath)
    }

    /// Overwrites key bytes with zeros (explicit_bzero: not removed as a dead store).
    static func zeroize(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { explicit_bzero(base, buffer.count) }
        }
    }
}
