import Foundation
import Testing
@testable import Kernels

/// The Q4_K sixteen-row groups (q4k_groups.c, `Q4KGroups`) of the tolerance prompt path: every
/// output within a bound of the exact product computed in double precision, on awkward shapes (rows
/// not a multiple of 16, 1 to 9 activations and 17), with extreme F16 scales in every third block;
/// rows past a group's count neither read nor written.
@Suite(.enabled(if: Q4KGroups.available, "no AVX512-VNNI: the Q4_K groups are not used here"))
struct Q4KGroupsTests {
    /// `dot(row r, activation t)` in double from the dequantized weights and activations, and the
    /// sum of the products' magnitudes (the scale of float rounding).
    static func reference(_ w: UnsafeRawPointer, rowBytes: Int, _ a: UnsafeRawPointer, columns: Int, row r: Int, token t: Int)
        -> (dot: Double, magnitude: Double) {
        var weights = [Float](repeating: 0, count: columns)
        RowKernels.dequantize(.q4_K, w + r * rowBytes, count: columns, into: &weights)
        let stride = BlockType.q8_K.rowBytes(columns)!
        var dot = 0.0, magnitude = 0.0
        for b in 0 ..< columns / 256 {
            let block = a + t * stride + b * Q8_K.blockBytes
            let d = Double(block.loadUnaligned(as: Float.self))
            for i in 0 ..< 256 {
                let product = Double(weights[256 * b + i]) * d * Double(block.load(fromByteOffset: 4 + i, as: Int8.self))
                dot += product
                magnitude += abs(product)
            }
        }
        return (dot, magnitude)
    }

    /// Rows `first ..< first + count` of `w` against `tokens` activations; NaN where nothing was written.
    static func run(_ matrix: WeightMatrix, first: Int, count: Int, _ a: UnsafeRawPointer, tokens: Int) -> [Float] {
        let columns = matrix.columns
        let group = UnsafeMutableRawPointer.allocate(byteCount: Q4KGroups.groupBytes(columns: columns), alignment: 64)
        defer { group.deallocate() }
        let per = Q4KGroups.sumsPerActivation(columns: columns), stride = BlockType.q8_K.rowBytes(columns)!
        var sums = [Float](repeating: 0, count: per * tokens)
        for t in 0 ..< tokens { Q4KGroups.activationSums(a + t * stride, columns: columns, into: &sums[t * per]) }
        var out = [Float](repeating: .nan, count: Q4KGroups.rows * tokens)
        Q4KGroups.repack(matrix, first: first, count: count, into: group)
        Q4KGroups.multiply(group, columns: columns, rowCount: count, activations: a, activationStride: stride, sums: sums,
                           count: tokens, into: &out, outStride: Q4KGroups.rows)
        return out
    }

    @Test func groupsStayWithinToleranceOfTheExactProductOnAwkwardShapes() {
        var random = TestRandom(state: 0x51_4B)
        var worst = 0.0
        for (rows, columns) in [(1, 256), (15, 512), (16, 768), (17, 256), (33, 2048)] {
            let w = KQuantKernelTests.weights(.q4_K, rows: rows, columns: columns, &random)
            let a = KQuantKernelTests.activations(columns: columns, tokens: 17, raw: false, &random)
            w.withUnsafeBytes { wb in
                a.withUnsafeBytes { ab in
                    let matrix = WeightMatrix(type: .q4_K, rows: rows, columns: columns, base: wb.baseAddress!)!
                    for tokens in Array(1 ... 9) + [17] {
                        var first = 0
                        while first < rows {
                            let count = min(Q4KGroups.rows, rows - first)
                            let out = Self.run(matrix, first: first, count: count, ab.baseAddress!, tokens: tokens)
                            for t in 0 ..< tokens {
                                for r in 0 ..< Q4KGroups.rows {
                                    let value = out[t * Q4KGroups.rows + r]
                                    guard r < count else {
                                        #expect(value.isNaN, "row \(r) past the group's \(count) written")
                                        continue
                                    }
                                    let ref = Self.reference(wb.baseAddress!, rowBytes: matrix.rowBytes, ab.baseAddress!, columns: columns,
                                                             row: first + r, token: t)
                                    let error = abs(Double(value) - ref.dot) / max(ref.magnitude, .leastNormalMagnitude)
                                    worst = max(worst, error)
                                    #expect(error < 1e-5, "\(rows)x\(columns) row \(first + r) token \(t): \(value) against \(ref.dot)")
                                }
                            }
                            first += count
                        }
                    }
                }
            }
        }
        print("Q4_K groups: largest error relative to the products' magnitude \(worst)")
    }

    /// A matrix whose last row ends where the process may not read (a read past it would crash the
    /// test): a group of its last rows is repacked and multiplied from exactly those rows.
    @Test func groupOfTheLastRowsReadsNoBytePastTheMatrix() throws {
        var random = TestRandom(state: 0x51_4C)
        let rows = 21, columns = 512
        let w = KQuantKernelTests.weights(.q4_K, rows: rows, columns: columns, &random)
        let a = KQuantKernelTests.activations(columns: columns, tokens: 3, raw: false, &random)
        let page = sysconf(Int32(_SC_PAGESIZE))
        let mapped = (w.count + page - 1) / page * page + page
        let base = try #require(mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        try #require(base != UnsafeMutableRawPointer(bitPattern: -1), "mmap failed")
        defer { munmap(base, mapped) }
        #expect(mprotect(base + mapped - page, page, PROT_NONE) == 0)
        let start = base + (mapped - page - w.count)
        w.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: w.count) }
        let matrix = try #require(WeightMatrix(type: .q4_K, rows: rows, columns: columns, base: UnsafeRawPointer(start)))
        a.withUnsafeBytes { ab in
            let out = Self.run(matrix, first: 16, count: 5, ab.baseAddress!, tokens: 3)
            for t in 0 ..< 3 {
                for r in 0 ..< 5 {
                    let ref = Self.reference(start, rowBytes: matrix.rowBytes, ab.baseAddress!, columns: columns, row: 16 + r, token: t)
                    #expect(abs(Double(out[t * Q4KGroups.rows + r]) - ref.dot) <= 1e-5 * ref.magnitude)
                }
            }
        }
    }
}
