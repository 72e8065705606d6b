import Foundation
import Testing
@testable import Kernels

/// The Q4_K and Q6_K sixteen-row groups (kquant_groups.c, `KQuantGroups`) of the tolerance prompt
/// path: every output within a bound of the exact product computed in double precision, on awkward
/// shapes (rows not a multiple of 16, 1 to 9 activations and 17), with extreme F16 scales in every
/// third block; rows past a group's count neither read nor written.
@Suite(.enabled(if: KQuantGroups.available, "no AVX512-VNNI: the K-quant groups are not used here"))
struct KQuantGroupsTests {
    /// `dot(row r, activation t)` in double from the dequantized weights and activations, and the
    /// sum of the products' magnitudes (the scale of float rounding).
    static func reference(_ type: BlockType, _ w: UnsafeRawPointer, rowBytes: Int, _ a: UnsafeRawPointer, columns: Int, row r: Int, token t: Int)
        -> (dot: Double, magnitude: Double) {
        var weights = [Float](repeating: 0, count: columns)
        RowKernels.dequantize(type, w + r * rowBytes, count: columns, into: &weights)
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
        let group = UnsafeMutableRawPointer.allocate(byteCount: KQuantGroups.groupBytes(matrix.type, columns: columns), alignment: 64)
        defer { group.deallocate() }
        let per = KQuantGroups.sumsPerActivation(columns: columns), stride = BlockType.q8_K.rowBytes(columns)!
        var sums = [Float](repeating: 0, count: per * tokens)
        var unsigned = [UInt8](repeating: 0, count: stride * tokens)
        for t in 0 ..< tokens {
            KQuantGroups.prepareQ4_K(a + t * stride, columns: columns, into: &sums[t * per])
            unsigned.withUnsafeMutableBytes { KQuantGroups.prepareQ6_K(a + t * stride, columns: columns, into: $0.baseAddress! + t * stride) }
        }
        var out = [Float](repeating: .nan, count: KQuantGroups.rows * tokens)
        KQuantGroups.repack(matrix, first: first, count: count, into: group)
        unsigned.withUnsafeBytes { u in
            KQuantGroups.multiply(matrix.type, group, columns: columns, rowCount: count,
                                  activations: matrix.type == .q6_K ? u.baseAddress! : a, activationStride: stride,
                                  sums: sums, count: tokens, into: &out, outStride: KQuantGroups.rows)
        }
        return out
    }

    @Test(arguments: [BlockType.q4_K, .q6_K])
    func groupsStayWithinToleranceOfTheExactProductOnAwkwardShapes(type: BlockType) {
        var random = TestRandom(state: type == .q4_K ? 0x51_4B : 0x51_6B)
        var worst = 0.0
        for (rows, columns) in [(1, 256), (15, 512), (16, 768), (17, 256), (33, 2048)] {
            let w = KQuantKernelTests.weights(type, rows: rows, columns: columns, &random)
            let a = KQuantKernelTests.activations(columns: columns, tokens: 17, raw: false, &random)
            w.withUnsafeBytes { wb in
                a.withUnsafeBytes { ab in
                    let matrix = WeightMatrix(type: type, rows: rows, columns: columns, base: wb.baseAddress!)!
                    for tokens in Array(1 ... 9) + [17] {
                        var first = 0
                        while first < rows {
                            let count = min(KQuantGroups.rows, rows - first)
                            let out = Self.run(matrix, first: first, count: count, ab.baseAddress!, tokens: tokens)
                            for t in 0 ..< tokens {
                                for r in 0 ..< KQuantGroups.rows {
                                    let value = out[t * KQuantGroups.rows + r]
                                    guard r < count else {
                                        #expect(value.isNaN, "row \(r) past the group's \(count) written")
                                        continue
                                    }
                                    let ref = Self.reference(type, wb.baseAddress!, rowBytes: matrix.rowBytes, ab.baseAddress!, columns: columns,
                                                             row: first + r, token: t)
                                    let error = abs(Double(value) - ref.dot) / max(ref.magnitude, .leastNormalMagnitude)
                                    worst = max(worst, error)
                                    #expect(error < 1e-5, "\(type) \(rows)x\(columns) row \(first + r) token \(t): \(value) against \(ref.dot)")
                                }
                            }
                            first += count
                        }
                    }
                }
            }
        }
        print("\(type) groups: largest error relative to the products' magnitude \(worst)")
    }

    /// A matrix whose last row ends where the process may not read (a read past it would crash the
    /// test): a group of its last rows is repacked and multiplied from exactly those rows.
    @Test(arguments: [BlockType.q4_K, .q6_K])
    func groupOfTheLastRowsReadsNoBytePastTheMatrix(type: BlockType) throws {
        var random = TestRandom(state: 0x51_4C)
        let rows = 21, columns = 512
        let w = KQuantKernelTests.weights(type, rows: rows, columns: columns, &random)
        let a = KQuantKernelTests.activations(columns: columns, tokens: 3, raw: false, &random)
        let page = sysconf(Int32(_SC_PAGESIZE))
        let mapped = (w.count + page - 1) / page * page + page
        let base = try #require(mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        try #require(base != UnsafeMutableRawPointer(bitPattern: -1), "mmap failed")
        defer { munmap(base, mapped) }
        #expect(mprotect(base + mapped - page, page, PROT_NONE) == 0)
        let start = base + (mapped - page - w.count)
        w.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: w.count) }
        let matrix = try #require(WeightMatrix(type: type, rows: rows, columns: columns, base: UnsafeRawPointer(start)))
        a.withUnsafeBytes { ab in
            let out = Self.run(matrix, first: 16, count: 5, ab.baseAddress!, tokens: 3)
            for t in 0 ..< 3 {
                for r in 0 ..< 5 {
                    let ref = Self.reference(type, start, rowBytes: matrix.rowBytes, ab.baseAddress!, columns: columns, row: 16 + r, token: t)
                    #expect(abs(Double(out[t * KQuantGroups.rows + r]) - ref.dot) <= 1e-5 * ref.magnitude)
                }
            }
        }
    }
}
