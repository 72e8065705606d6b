import Foundation
import NodeCore
import NodeHTTP
import Testing

/// A revocation outlives the process: the next `Readiness` over the same state directory starts revoked.
@Suite struct RevocationPersistenceTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("securenode-revocation-\(UUID().uuidString)")

    @Test func revocationSurvivesARestart() async throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = RevocationStore(directory: directory)
        let first = Readiness(store: store)
        await first.set(ready: true, reason: "model")
        await first.revoke(reason: "revoked by the Keylime verifier (revocation, event pcr_validation.invalid_pcr_15)")
        // The process dies (kill -9, crash, systemd restart): a new one over the same state directory.
        let restarted = Readiness(store: store)
        await restarted.set(ready: true, reason: "model")
        let state = await restarted.state
        #expect(!state.ready)
        #expect(state.reason.contains("invalid_pcr_15") && state.reason.contains("securenode revocation clear"), "\(state.reason)")
        let attributes = try FileManager.default.attributesOfItem(atPath: store.file.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        // Observers registered after the restart learn it at once (the scheduler refuses work).
        let told = Told()
        await restarted.onRevocation { reason in told.set(reason) }
        #expect(told.value?.contains("invalid_pcr_15") == true)
    }

    @Test func operatorClearOrReattestationEndsIt() async throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = RevocationStore(directory: directory)
        await Readiness(store: store).revoke(reason: "revoked")
        #expect(try store.clear()?.reason == "revoked")
        let cleared = Readiness(store: store)
        await cleared.set(ready: true, reason: "model")
        #expect(await cleared.state.ready)
        // Revoked again, then the verifier attests the node again: ready, and the record is gone.
        await cleared.revoke(reason: "revoked again")
        #expect(await cleared.reinstate(reason: "verifier delivered V"))
        #expect(await cleared.state.ready)
        #expect(store.load() == nil)
    }

    @Test func anUnreadableRecordCountsAsRevoked() async throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = RevocationStore(directory: directory)
        try Data("{garbage".utf8).write(to: store.file)
        let readiness = Readiness(store: store)
        await readiness.set(ready: true, reason: "model")
        #expect(await !readiness.state.ready)
    }
}

final class Told: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: String?
    func set(_ value: String) { lock.withLock { stored = value } }
    var value: String? { lock.withLock { stored } }
}
