import TPMTestSupport
import Attestation
import Crypto
import CryptoExtras
import Foundation
import ModelSigning
import NodeCore
import SoftwareTPM
import Testing
import TPM

/// The node keys sealed by the TPM (README "Node keys"): each test runs its own swtpm and state directory.
@Suite(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct NodeKeyStoreTests {
    let t: RunningTPM
    let profile: FirmwareProfile
    let state: URL
    let store: NodeKeyStore

    init() async throws {
        t = try await RunningTPM()
        profile = try FirmwareProfile.load(path: EvidenceAppraisalTests.profilePath)
        state = FileManager.default.temporaryDirectory.appendingPathComponent("securenode-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        store = NodeKeyStore(stateDirectory: state, tpm: t.tpm, profile: profile)
    }

    func approve(_ key: P256.Signing.PrivateKey) async throws -> PolicyApproval {
        let pcrs = try NodeKeyStore.sealPCRs(for: profile).pcrs
        return try PolicyApproval(values: try await t.tpm.pcrValues(pcrs), key: key, profile: profile.id, sealPCRs: pcrs)
    }

    /// Every file under `directory`, recursively.
    func files(_ directory: URL) -> [URL] {
        let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)
        return (enumerator?.allObjects as? [URL] ?? []).filter { (try? $0.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true }
    }

    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
    }

    @Test func leavesOutThePCRsTheNodeExtendsItself() async throws {
        let index = try await store.initialize(authorizationKey: nil, force: false)
        #expect(index.pcrs == [0, 2, 4, 7])
        #expect(index.excludedPCRs == [15])
        // The node measures a model and a receipt key (PCRs 15 and 14), as every `serve` does: the keys still unseal.
        try await t.tpm.extend(pcr: 15, sha256: [UInt8](repeating: 0x15, count: 32))
        try await t.tpm.extend(pcr: 14, sha256: [UInt8](repeating: 0x14, count: 32))
        let keys = try await store.unlock(approvals: [])
        #expect(hexString(Array(SHA256.hash(data: keys.apiTLS.publicKey.derRepresentation))) == index.entry(.apiTLS)?.spkiSHA256)
        #expect(hexString(Array(SHA256.hash(data: keys.keylimePayload.publicKey.derRepresentation))) == index.entry(.keylimePayload)?.spkiSHA256)
    }

    @Test func refusesAProfileWhoseSealPCRsAreAllTheNodesOwn() throws {
        var own = profile
        own.seal.pcrs = [14, 15]
        #expect(throws: NodeError.self) { try NodeKeyStore.sealPCRs(for: own) }
    }

    @Test func initRefusesToOverwriteKeysWithoutForce() async throws {
        let first = try await store.initialize(authorizationKey: nil, force: false)
        await #expect(throws: NodeError.self) { try await store.initialize(authorizationKey: nil, force: false) }
        #expect(try store.loadIndex() == first)
        let second = try await store.initialize(authorizationKey: nil, force: true)
        #expect(second.entry(.apiTLS)?.spkiSHA256 != first.entry(.apiTLS)?.spkiSHA256)
        // The replaced keys' ciphertexts are gone.
        for entry in first.keys {
            #expect(!FileManager.default.fileExists(atPath: store.directory.appendingPathComponent(entry.privateKeyFile).path))
        }
    }

    @Test func refusesKeysCopiedToAnotherTPM() async throws {
        _ = try await store.initialize(authorizationKey: nil, force: false)
        // Another machine: a TPM manufactured separately (its own seeds), and a copy of the state directory.
        let otherDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("securenode-swtpm-other-\(UUID().uuidString)")
        let other = SoftwareTPM(stateDirectory: otherDirectory)
        try await offPool { try other.start() }
        defer {
            other.stop()
            try? FileManager.default.removeItem(at: otherDirectory)
        }
        let copied = FileManager.default.temporaryDirectory.appendingPathComponent("securenode-keys-copy-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: state, to: copied)
        defer { try? FileManager.default.removeItem(at: copied) }
        let thief = NodeKeyStore(stateDirectory: copied, tpm: TPM(tcti: other.tcti), profile: profile)
        do {
            _ = try await thief.unlock(approvals: [])
            Issue.record("keys copied to another TPM unsealed")
        } catch let error as NodeError {
            #expect(error.description.contains("sealed under a different TPM (was the state directory copied from another machine?)"))
            #expect(error.description.contains("api-tls") && error.description.contains("keylime-payload"))
        }
        // On its own TPM the same directory still unlocks.
        _ = try await store.unlock(approvals: [])
    }

    @Test func refusesKeysAfterSealPCRExtended() async throws {
        _ = try await store.initialize(authorizationKey: nil, force: false)
        try await t.tpm.extend(pcr: 7, sha256: [UInt8](repeating: 0x07, count: 32))
        do {
            _ = try await store.unlock(approvals: [])
            Issue.record("keys unsealed after PCR 7 changed")
        } catch let error as NodeError {
            #expect(error.description.contains("seal PCRs [7] changed"))
            #expect(error.description.contains("api-tls"))
        }
    }

    @Test func unsealsKeysAfterApprovedUpdate() async throws {
        let publisher = P256.Signing.PrivateKey()
        let index = try await store.initialize(authorizationKey: publisher.publicKey, force: false)
        #expect(index.policy == "authorize")
        let today = try await approve(publisher)
        let before = try await store.unlock(approvals: [today])
        // A firmware update changes PCR 0: refused, naming the PCR, until the publisher approves the new values.
        try await t.tpm.extend(pcr: 0, sha256: [UInt8](repeating: 0xF0, count: 32))
        do {
            _ = try await store.unlock(approvals: [today])
            Issue.record("keys unsealed after an unapproved PCR 0 change")
        } catch let error as NodeError {
            #expect(error.description.contains("seal PCRs [0] changed"))
        }
        let updated = try await approve(publisher)
        let after = try await store.unlock(approvals: [today, updated])
        // Same keys: no re-provisioning.
        #expect(after.apiTLS.rawRepresentation == before.apiTLS.rawRepresentation)
        #expect(after.keylimePayload.derRepresentation == before.keylimePayload.derRepresentation)
        // An approval made for the whole seal PCR set (with the model PCR) is for other secrets: it does not count here.
        let wrongSet = try PolicyApproval(values: try await t.tpm.pcrValues(profile.seal.pcrs), key: publisher, profile: profile.id, sealPCRs: profile.seal.pcrs)
        await #expect(throws: NodeError.self) { try await store.unlock(approvals: [wrongSet]) }
    }

    @Test func stateDirectoryHoldsNoPrivateKeyInClear() async throws {
        _ = try await store.initialize(authorizationKey: nil, force: false)
        let keys = try await store.unlock(approvals: [])
        let secrets: [(String, [UInt8])] = [
            ("api-tls scalar", Array(keys.apiTLS.rawRepresentation)),
            ("api-tls PKCS#8", Array(keys.apiTLS.derRepresentation)),
            ("keylime-agent-tls scalar", Array(keys.keylimeAgentTLS.rawRepresentation)),
            ("keylime-agent-tls PKCS#8", Array(keys.keylimeAgentTLS.derRepresentation)),
            ("keylime-payload PKCS#1", Array(keys.keylimePayload.derRepresentation)),
            // (PKCS#8 wraps the PKCS#1 DER: the search for it covers both.)
            ("PEM private key", Array("PRIVATE KEY".utf8)),
        ]
        let all = files(state)
        #expect(all.count >= 5)
        for file in all {
            let bytes = Array(try Data(contentsOf: file))
            for (what, secret) in secrets {
                #expect(!contains(bytes, secret), "\(file.lastPathComponent) holds the \(what)")
                // And not a 16-byte window of it (a partial or differently framed copy).
                if secret.count >= 32 { #expect(!contains(bytes, Array(secret[8..<24])), "\(file.lastPathComponent) holds part of the \(what)") }
            }
        }
    }

    @Test func rotationReplacesTheKeyAndDeletesTheOld() async throws {
        let index = try await store.initialize(authorizationKey: nil, force: false)
        let before = try await store.unlock(approvals: [])
        let old = try #require(index.entry(.apiTLS))
        let (rotated, replaced) = try await store.rotate([.apiTLS], approvals: [])
        let new = try #require(rotated.entry(.apiTLS))
        #expect(replaced["api-tls"] == old.spkiSHA256)
        #expect(new.spkiSHA256 != old.spkiSHA256)
        #expect(!FileManager.default.fileExists(atPath: store.directory.appendingPathComponent(old.privateKeyFile).path))
        // The others are untouched.
        #expect(rotated.entry(.keylimePayload) == index.entry(.keylimePayload))
        let after = try await store.unlock(approvals: [])
        #expect(after.apiTLS.rawRepresentation != before.apiTLS.rawRepresentation)
        #expect(after.keylimeAgentTLS.rawRepresentation == before.keylimeAgentTLS.rawRepresentation)
        #expect(hexString(Array(SHA256.hash(data: after.apiTLS.publicKey.derRepresentation))) == new.spkiSHA256)
    }

    @Test func namesLegacyClearKeyFiles() throws {
        #expect(store.legacyClearKeys().isEmpty)
        try FileManager.default.createDirectory(at: state.appendingPathComponent("keylime"), withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: state.appendingPathComponent("keylime/agent-payload-key.pem").path, contents: Data("x".utf8)))
        let named = store.legacyClearKeys()
        #expect(named.count == 1 && named[0].hasSuffix("keylime/agent-payload-key.pem"))
    }

    @Test func refusesACiphertextMovedToAnotherKeysName() async throws {
        let index = try await store.initialize(authorizationKey: nil, force: false)
        // Swap the two P-256 keys' files in the index: each tag binds the key's name, so both fail.
        var edited = index
        let api = try #require(index.keys.firstIndex { $0.name == "api-tls" })
        let agent = try #require(index.keys.firstIndex { $0.name == "keylime-agent-tls" })
        edited.keys[api].privateKeyFile = index.keys[agent].privateKeyFile
        edited.keys[api].spkiSHA256 = index.keys[agent].spkiSHA256
        let encoder = JSONEncoder()
        try encoder.encode(edited).write(to: URL(fileURLWithPath: store.indexPath))
        await #expect(throws: NodeError.self) { try await store.unlock(approvals: []) }
    }
}
