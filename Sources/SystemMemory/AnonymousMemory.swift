#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Zeroed, page-aligned private anonymous memory (`mmap(MAP_PRIVATE | MAP_ANONYMOUS)`), never backed
/// by a file, unmapped when released: the memory of the buffers every decoded token reads whole (a
/// model's verified bytes, `ModelBytes`; the KV cache).
///
/// A region of 2 MiB or more starts on a 2 MiB boundary, spans whole 2 MiB units and asks for
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`: used where the kernel's `transparent_hugepage`
/// setting is `madvise`, Debian's default, or `always`; advice the kernel may decline, never an error).
/// With 4 KiB pages the TLB misses cost the default model up to about a sixth of its decode speed on
/// the VM we measured, and as little as 3% in its fast state (`bench/hugepages.sh`). `SECURENODE_HUGEPAGES=0` in the environment keeps
/// 4 KiB pages, for A/B benchmarks of one binary.
public final class AnonymousMemory: @unchecked Sendable {
    /// Usable bytes from `base` (the mapping may be longer: whole huge pages).
    public let byteCount: Int
    public let base: UnsafeMutableRawPointer
    /// Mapped bytes from `base`.
    private let length: Int

    public static let hugePageSize = 2 << 20

    /// Whether large regions ask for huge pages: unless the environment sets `SECURENODE_HUGEPAGES=0`.
    public static let asksForHugePages = getenv("SECURENODE_HUGEPAGES").map { String(cString: $0) != "0" } ?? true

    /// `byteCount` zeroed bytes, or nil when the system has no address space or memory left for them.
    public init?(byteCount: Int) {
        guard byteCount >= 0 else { return nil }
        let huge = Self.asksForHugePages && byteCount >= Self.hugePageSize
        let unit = huge ? Self.hugePageSize : 1
        let units = byteCount / unit + (byteCount % unit == 0 ? 0 : 1)
        let (whole, overflow) = units.multipliedReportingOverflow(by: unit)
        length = max(whole, 1)
        // For a 2 MiB boundary: one unit more, then the slack on either side unmapped.
        let (mapped, tooLong) = length.addingReportingOverflow(huge ? Self.hugePageSize : 0)
        guard !overflow, !tooLong, let raw = mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
            return nil
        }
        var start = raw
        if huge {
            let address = UInt(bitPattern: raw)
            let aligned = (address + UInt(Self.hugePageSize) - 1) & ~UInt(Self.hugePageSize - 1)
            let head = Int(aligned - address), tail = mapped - head - length
            if head > 0 { munmap(raw, head) }
            start = raw + head
            if tail > 0 { munmap(start + length, tail) }
            #if os(Linux)
            _ = madvise(start, length, MADV_HUGEPAGE)
            #endif
        }
        base = start
        self.byteCount = byteCount
    }

    deinit { munmap(base, length) }

    /// Leaves the region out of core dumps (`madvise(MADV_DONTDUMP)`); false where the system cannot.
    public func excludeFromCoreDumps() -> Bool {
        #if os(Linux)
        return madvise(base, length, MADV_DONTDUMP) == 0
        #else
        return false
        #endif
    }
}
