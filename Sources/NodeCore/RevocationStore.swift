import Foundation

/// A revocation the node keeps across restarts (`<state-dir>/revocation.json`, owner-only, written
/// atomically): a revoked node that is killed, crashes or is restarted by systemd comes back
/// revoked, not ready and refusing completions, until the verifier attests it again or an
/// operator runs `securenode revocation clear`.
public struct RevocationRecord: Sendable, Codable, Equatable {
    public static let schemaName = "securenode.revocation.v1"
    public var schema: String
    /// The verifier's reason, as `/readyz` reported it.
    public var reason: String
    /// When the node was revoked (ISO 8601, UTC).
    public var revokedAt: String

    public init(reason: String, revokedAt: Date = Date()) {
        schema = Self.schemaName
        self.reason = reason
        self.revokedAt = ISO8601DateFormatter().string(from: revokedAt)
    }
}

/// Reads and writes the persisted revocation. An unreadable record counts as a revocation (fail closed).
public struct RevocationStore: Sendable {
    public let directory: URL
    public var file: URL { directory.appendingPathComponent("revocation.json") }

    public init(directory: URL) {
        self.directory = directory
    }

    /// The persisted revocation, if any. A file that exists but cannot be read is reported as one.
    public func load() -> RevocationRecord? {
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        guard let data = FileManager.default.contents(atPath: file.path),
              let record = try? JSONDecoder().decode(RevocationRecord.self, from: data), record.schema == RevocationRecord.schemaName else {
            return RevocationRecord(reason: "the persisted revocation \(file.path) is unreadable; treating the node as revoked")
        }
        return record
    }

    public func save(_ record: RevocationRecord) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Sealer.writeOwnerOnly(Array(try encoder.encode(record)), to: file.path)
    }

    /// Removes the persisted revocation; returns what was removed.
    @discardableResult
    public func clear() throws -> RevocationRecord? {
        let record = load()
        guard record != nil else { return nil }
        guard unlink(file.path) == 0 || errno == ENOENT else {
            throw NodeError("cannot remove \(file.path): \(String(cString: strerror(errno)))")
        }
        return record
    }
}
