import Foundation

/// Reading small input files (keys, certificates, bundles) and writing outputs atomically.
enum FileText {
    static func readBytes(_ path: String, what: String, limit: Int = 1 << 20) throws -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CLIFailure("cannot read the \(what) at \(path)")
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: limit + 1)) ?? Data()
        guard data.count <= limit else { throw CLIFailure("the \(what) at \(path) is larger than \(limit) bytes") }
        return Array(data)
    }

    static func read(_ path: String, what: String) throws -> String {
        let bytes = try readBytes(path, what: what)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw CLIFailure("the \(what) at \(path) is not UTF-8 text")
        }
        return text
    }

    /// Writes via a temporary file in the same directory and rename(2), so readers see all or nothing.
    static func writeAtomically(_ bytes: [UInt8], to path: String, permissions: Int = 0o644) throws {
        let url = URL(fileURLWithPath: path)
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            try Data(bytes).write(to: temporary, options: [.withoutOverwriting])
            try FileManager.default.setAttributes([.posixPermissions: permissions], ofItemAtPath: temporary.path)
            if rename(temporary.path, url.path) != 0 {
                throw CLIFailure("cannot move the output into place at \(path): \(String(cString: strerror(errno)))")
            }
        } catch let error as CLIFailure {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw CLIFailure("cannot write \(path): \(error.localizedDescription)")
        }
    }
}
