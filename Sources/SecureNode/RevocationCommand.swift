import ArgumentParser
import Foundation
import NodeCore

/// `securenode revocation show|clear`: the revocation a node keeps across restarts.
struct RevocationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revocation",
        abstract: "Show or clear the revocation a node keeps across restarts (<state-dir>/revocation.json).",
        discussion: """
            A node revoked by its verifier (Keylime's revocation notice) writes the revocation to its state \
            directory and stays not ready, refusing completions, across restarts, until the verifier attests it \
            again (after the operator re-adds it: Keylime's verifier then delivers its V key) or an operator runs \
            `securenode revocation clear` and restarts the node (a running node keeps its revocation in memory).
            """,
        subcommands: [RevocationShowCommand.self, RevocationClearCommand.self]
    )
}

struct RevocationStateOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: "The node's state directory (default $SECURENODE_STATE_DIR or /var/lib/securenode).")
    var stateDirectory: String?

    var store: RevocationStore {
        RevocationStore(directory: stateDirectory.map { URL(fileURLWithPath: $0) } ?? EventLogStore.defaultDirectory)
    }
}

struct RevocationShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print the persisted revocation, if any (exit 0 either way).")
    @OptionGroup var state: RevocationStateOptions

    func run() async throws {
        let store = state.store
        if let record = store.load() {
            print("revoked at \(record.revokedAt): \(record.reason) (\(store.file.path))")
        } else {
            print("not revoked (\(store.file.path) does not exist)")
        }
    }
}

struct RevocationClearCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clear",
        abstract: "Operator: clear the persisted revocation, once the cause is fixed; then restart the node.")
    @OptionGroup var state: RevocationStateOptions

    func run() async throws {
        try await reportingFailures {
            let store = state.store
            guard let record = try store.clear() else {
                print("not revoked: \(store.file.path) does not exist; nothing to clear")
                return
            }
            print("cleared the revocation of \(record.revokedAt) (\(record.reason)); restart the node to serve again")
        }
    }
}
