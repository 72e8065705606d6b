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

    /// Replaces the log atomically: a full disk or a read-only state directory is refused with the
    /// reason, and the previous log stays as it was (no partial file is ever renamed over it).
    public func save(_ log: [EventLogEntry]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(log)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw NodeError("cannot create the state directory \(directory.path): \(error.localizedDescription)")
        }
        let temporary = directory.appendingPathComponent(".event-log.json.\(getpid()).tmp")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw NodeError("cannot write the event log in \(directory.path): \(String(cString: strerror(errno)))") }
        var failure: Int32 = 0
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 { if errno == EINTR { continue }; failure = errno; return }
                offset += n
            }
        }
        if failure == 0 && fsync(fd) != 0 { failure = errno }
        close(fd)
        if failure == 0 && rename(temporary.path, file.path) != 0 { failure = errno }
        if failure != 0 {
            unlink(temporary.path)
            throw NodeError("cannot write the event log \(file.path): \(String(cString: strerror(failure))); the previous log is unchanged")
        }
    }
}

/// A node-side failure with a message for operators.
public struct NodeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
