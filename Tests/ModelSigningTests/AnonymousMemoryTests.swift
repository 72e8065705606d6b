import Foundation
@testable import ModelSigning
import SystemMemory
import Testing

/// `AnonymousMemory`, the memory of verified model bytes and of the KV cache: zeroed, writable, and
/// for large regions on a 2 MiB boundary with the huge-page advice (the kernel's `hg` flag in
/// /proc/self/smaps, which it shows whatever it then does with the advice).
struct AnonymousMemoryTests {
    /// The `VmFlags` of the mapping holding `address`, from /proc/self/smaps.
    static func flags(at address: UnsafeRawPointer) throws -> [String] {
        // Read to the end: /proc files report a size of zero.
        let file = try #require(FileHandle(forReadingAtPath: "/proc/self/smaps"))
        defer { try? file.close() }
        let text = String(decoding: try file.readToEnd() ?? Data(), as: UTF8.self)
        let target = UInt(bitPattern: address)
        var inside = false
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && bounds[0] <= target && target < bounds[1]
            } else if inside, fields.first == "VmFlags:" {
                return fields.dropFirst().map(String.init)
            }
        }
        throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "no mapping holds \(address)"])
    }

    @Test func regionsAreZeroedAndWritable() throws {
        for size in [0, 1, 4095, 3 * 4096 + 7, 2 << 20, (5 << 20) + 3] {
            let memory = try #require(AnonymousMemory(byteCount: size))
            #expect(memory.byteCount == size)
            let bytes = UnsafeMutableRawBufferPointer(start: memory.base, count: size)
            #expect(bytes.allSatisfy { $0 == 0 })
            for i in stride(from: 0, to: size, by: 4093) { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
            if size > 0 { bytes[size - 1] = 0xA5 }
            for i in stride(from: 0, to: size - 1, by: 4093) { #expect(bytes[i] == UInt8(truncatingIfNeeded: i &* 31 &+ 7)) }
            if size > 0 { #expect(bytes[size - 1] == 0xA5) }
        }
    }

    @Test(.enabled(if: AnonymousMemory.asksForHugePages, "SECURENODE_HUGEPAGES=0 keeps 4 KiB pages"))
    func largeRegionsStartOnAHugePageAndAskForHugePages() throws {
        let large = try #require(AnonymousMemory(byteCount: (5 << 20) + 3))
        #expect(UInt(bitPattern: large.base) % UInt(AnonymousMemory.hugePageSize) == 0)
        #expect(try Self.flags(at: large.base).contains("hg"))
        // The last byte is inside the same advised mapping.
        #expect(try Self.flags(at: large.base + large.byteCount - 1).contains("hg"))
        let small = try #require(AnonymousMemory(byteCount: 64 << 10))
        #expect(!(try Self.flags(at: small.base)).contains("hg"))
    }

    @Test func refusesNegativeAndImpossibleSizes() {
        #expect(AnonymousMemory(byteCount: -1) == nil)
        #expect(AnonymousMemory(byteCount: Int.max) == nil)
        #expect(AnonymousMemory(byteCount: Int.max - (1 << 20)) == nil)
    }

    /// A confidential model's bytes stay out of core dumps, on huge pages too.
    @Test func confidentialModelBytesStayOutOfCoreDumps() throws {
        let bytes = try #require(ModelBytes(count: 3 << 20, confidential: true))
        let flags = try Self.flags(at: bytes.baseAddress)
        #expect(flags.contains("dd"))
        if AnonymousMemory.asksForHugePages { #expect(flags.contains("hg")) }
    }
}
