import Attestation
import Foundation
import NodeCore
import Testing

/// The event log on a full or read-only disk: refused with the reason, the previous log intact.
/// Uses a small tmpfs (root only; skipped, visibly, where mounting is not allowed).
@Suite(.serialized) struct EventLogStorageTests {
    static let canMount: Bool = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sn-mount-probe-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        guard run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir.path]) == 0 else { return false }
        _ = run("/bin/umount", [dir.path])
        return true
    }()

    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A fresh 64 KiB tmpfs for `body`, unmounted after.
    func withSmallDisk(_ body: (URL) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sn-small-disk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        #expect(Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir.path]) == 0)
        defer {
            Self.run("/bin/umount", [dir.path])
            try? FileManager.default.removeItem(at: dir)
        }
        try body(dir)
    }

    static func entries(_ count: Int) -> [EventLogEntry] {
        (0 ..< count).map { i in
            EventLogEntry(pcr: 15, type: "test.v1", digest: String(repeating: "a", count: 64), event: "event \(i) " + String(repeating: "x", count: 200))
        }
    }

    @Test(.enabled(if: canMount, "mounting a tmpfs needs root")) func refusesAFullDiskAndKeepsThePreviousLog() throws {
        try withSmallDisk { dir in
            let store = EventLogStore(directory: dir.appendingPathComponent("state"))
            let first = Self.entries(2)
            try store.save(first)
            // Fill the disk.
            let filler = dir.appendingPathComponent("filler")
            FileManager.default.createFile(atPath: filler.path, contents: nil)
            let handle = try FileHandle(forWritingTo: filler)
            let block = Data(repeating: 0, count: 4096)
            while (try? handle.write(contentsOf: block)) != nil {}
            try? handle.close()
            do {
                try store.save(Self.entries(40))
                Issue.record("a log larger than the free space was saved")
            } catch {
                #expect("\(error)".contains("No space left on device"))
                #expect("\(error)".contains("the previous log is unchanged"))
            }
            #expect(try store.load() == first)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: store.directory.path).filter { $0.hasSuffix(".tmp") }
            #expect(leftovers.isEmpty)
        }
    }

    @Test(.enabled(if: canMount, "mounting a tmpfs needs root")) func refusesAReadOnlyStateDirectory() throws {
        try withSmallDisk { dir in
            let store = EventLogStore(directory: dir.appendingPathComponent("state"))
            let first = Self.entries(1)
            try store.save(first)
            #expect(Self.run("/bin/mount", ["-o", "remount,ro", dir.path]) == 0)
            do {
                try store.save(Self.entries(3))
                Issue.record("a read-only state directory accepted a write")
            } catch {
                #expect("\(error)".contains("Read-only file system"))
            }
            #expect(try store.load() == first)
        }
    }
}
