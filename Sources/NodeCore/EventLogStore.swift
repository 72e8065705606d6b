import Attestation
import Foundation

/// The node's event log on disk (`<state-dir>/event-log.json`): every event the node extended into
/// the TPM since the TPM's PCRs were last reset. Written atomically (temporary file + rename),
/// owner-only permissions.
public struct EventLogStore: Sendable {
    public let directory: URL
    public var file: URL { directory.appendingPathComponent("event-log.json") }

    public init(directory: URL) {
        self.directory = directory
    }

    /// The default state directory: `$SECURENODE_STATE_DIR`, else `/var/lib/securenode`.
    public static var defaultDirectory: URL {
        URL(fileURLWithPath: ProcessInfo.processInfo.environment["SECURENODE_STATE_DIR"] ?? "/var/lib/securenode")
    }

    public func load() throws -> [EventLogEntry] {
        guard let data = FileManager.default.contents(atPath: file.path) else { return [] }
        do {
            return try JSONDecoder().decode([EventLogEntry].self, from: data)
        } catch {
            throw NodeError("the event log \(file.path) is corrupt; it no longer matches what was measured")
        }
    }

    public func save(_ log: [EventLogEntry]) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let temporary = directory.appendingPathComponent(".event-log.json.\(getpid()).tmp")
        try encoder.encode(log).write(to: temporary, options: [.atomic])
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: temporary.path)
        guard rename(temporary.path, file.path) == 0 else {
            throw NodeError("cannot write the event log \(file.path): \(String(cString: strerror(errno)))")
        }
    }
}

/// A node-side failure with a message for operators.
public struct NodeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
