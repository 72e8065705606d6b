import Foundation
import Testing
@testable import Kernels

/// The Q4_1 sixteen-row groups (q4_1_groups.c, `Q4_1Groups`) of the tolerance prompt path: every
/// output within a bound of ggml's product computed in double precision, on awkward shapes, with
/// extreme F16 scales and minimums in every third block, from packed (the exact kernels' layout)
/// and ggml rows alike; a row's output the same bits whatever it is computed with; rows past a
/// group's count neither read nor written.
@Suite(.enabled(if: Q4_1Groups.available, "no AVX512-VNNI: the Q4_1 groups are not used here"))
struct Q4_1GroupsTests {
    /// F16 scales and minimums from the extremes of the format (65504, the smallest subnormal, 0, negative).
    static let edgeHalves: [UInt16] = [0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x0000, 0x3C00, 0xBC00, 0x0400]

    /// Random Q4_1 rows; every third block's d and m edge values.
    static func weights(rows: Int, columns: Int, _ random: inout TestRandom) -> [UInt8] {
        var bytes = (0 ..< rows).flatMap { _ in randomRow(.q4_1, count: columns, &random) }
        for b in stride(from: 0, to: rows * columns / 32, by: 3) {
            for (k, offset) in [0, 2].enumerated() {
                let bits = edgeHalves[(b / 3 + 5 * k) % edgeHalves.count]
                bytes[20 * b + offset] = UInt8(bits & 0xff)
                bytes[20 * b + offset + 1] = UInt8(bits >> 8)
            }
        }
        return bytes
    }

    /// `tokens` Q8_1 activation rows of several magnitudes (every fifth block zero).
    static func activations(columns: Int, tokens: Int, _ random: inout TestRandom) -> [UInt8] {
        let x = (0 ..< columns * tokens).map { i -> Float in
            (i / 32) % 5 == 4 ? 0 : random.float() * [0.001, 0.1, 1][(i / 32) % 3]
        }
        var a = [UInt8](repeating: 0, count: BlockType.q8_1.rowBytes(columns)! * tokens)
        x.withUnsafeBufferPointer { FastKernels.quantize($0.baseAddress!, columns: columns, count: tokens, to: .q8_1, into: &a) }
        return a
    }

    /// ggml's Q4_1 x Q8_1 product of ggml row `r` and activation `t` in double (`d_w d_a sum q_w q_a +
    /// m_w s_a` per block, `s_a` the activation's stored F16 sum), and the sum of its terms' magnitudes.
    static func reference(_ w: UnsafeRawPointer, rowBytes: Int, _ a: UnsafeRawPointer, columns: Int, row r: Int, token t: Int)
        -> (dot: Double, magnitude: Double) {
        let stride = BlockType.q8_1.rowBytes(columns)!
        var dot = 0.0, magnitude = 0.0
        for b in 0 ..< columns / 32 {
            let x = w + r * rowBytes + 20 * b, y = a + t * stride + 36 * b
            let dw = Double(Half.load(x)), mw = Double(Half.load(x, 2))
            let da = Double(Half.load(y)), sa = Double(Half.load(y, 2))
            var sum = 0, size = 0
            for i in 0 ..< 32 {
                let byte = x.load(fromByteOffset: 4 + i % 16, as: UInt8.self)
                let q = Int(i < 16 ? byte & 0xF : byte >> 4), qa = Int(y.load(fromByteOffset: 4 + i, as: Int8.self))
                sum += q * qa
                size += abs(q * qa)
            }
            dot += dw * da * Double(sum) + mw * sa
            magnitude += abs(dw * da) * Double(size) + abs(mw * sa)
        }
        return (dot, magnitude)
    }

    /// `matrix`'s rows `first ..< first + count` against `tokens` activations; NaN where nothing was written.
    static func run(_ matrix: WeightMatrix, first: Int, count: Int, _ a: UnsafeRawPointer, tokens: Int) -> [Float] {
        let columns = matrix.columns, stride = BlockType.q8_1.rowBytes(columns)!
        let group = UnsafeMutableRawPointer.allocate(byteCount: Q4_1Groups.groupBytes(columns: columns), alignment: 64)
        defer { group.deallocate() }
        let per = Q4_1Groups.scalesPerActivation(columns: columns)
        var scales = [Float](repeating: 0, count: per * tokens)
        for t in 0 ..< tokens { Q4_1Groups.prepare(a + t * stride, columns: columns, into: &scales[t * per]) }
        var out = [Float](repeating: .nan, count: Q4_1Groups.rows * tokens)
        Q4_1Groups.repack(matrix, first: first, count: count, into: group)
        Q4_1Groups.multiply(group, columns: columns, rowCount: count, activations: a, activationStride: stride, scales: scales,
                            count: tokens, into: &out, outStride: Q4_1Groups.rows)
        return out
    }

    /// `Q4_1Groups.multiplyDirect` over rows `first ..< first + count`: `[t * count + r]`.
    static func runDirect(_ matrix: WeightMatrix, first: Int, count: Int, _ a: UnsafeRawPointer, tokens: Int) -> [Float] {
        let columns = matrix.columns, stride = BlockType.q8_1.rowBytes(columns)!
        let per = Q4_1Groups.scalesPerActivation(columns: columns)
        var scales = [Float](repeating: 0, count: per * tokens)
        for t in 0 ..< tokens { Q4_1Groups.prepare(a + t * stride, columns: columns, into: &scales[t * per]) }
        var out = [Float](repeating: .nan, count: count * tokens)
        Q4_1Groups.multiplyDirect(matrix, first: first, rowCount: count, activations: a, activationStride: stride, scales: scales,
                                  count: tokens, into: &out, outStride: count)
        return out
    }

    /// `bytes` packed as the exact kernels keep a model's Q4_1 matrices.
    static func packed(_ bytes: [UInt8], rows: Int, columns: Int) -> [UInt8] {
        var copy = bytes
        copy.withUnsafeMutableBytes { FastKernels.pack(WeightMatrix(type: .q4_1, rows: rows, columns: columns, base: $0.baseAddress!)!, in: $0.baseAddress!) }
        return copy
    }

    @Test(arguments: [false, true])
    func groupsStayWithinToleranceOfTheProductOnAwkwardShapes(packed: Bool) {
        var random = TestRandom(state: packed ? 0x41_31 : 0x41_30)
        var worst = 0.0
        for (rows, columns) in [(1, 32), (15, 64), (16, 576), (17, 96), (36, 1536), (50, 256)] {
            let w = Self.weights(rows: rows, columns: columns, &random)
            let stored = packed ? Self.packed(w, rows: rows, columns: columns) : w
            let a = Self.activations(columns: columns, tokens: 17, &random)
            w.withUnsafeBytes { wb in
                stored.withUnsafeBytes { sb in
                    a.withUnsafeBytes { ab in
                        var matrix = WeightMatrix(type: .q4_1, rows: rows, columns: columns, base: sb.baseAddress!)!
                        matrix.isPacked = packed
                        for tokens in [1, 2, 3, 7, 8, 9, 17] {
                            var first = 0
                            while first < rows {
                                let count = min(Q4_1Groups.rows, rows - first)
                                let out = Self.run(matrix, first: first, count: count, ab.baseAddress!, tokens: tokens)
                                for t in 0 ..< tokens {
                                    for r in 0 ..< Q4_1Groups.rows {
                                        let value = out[t * Q4_1Groups.rows + r]
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
        }
        print("Q4_1 groups (packed \(packed)): largest error relative to the products' magnitude \(worst)")
    }

    /// A row's output does not depend on what it is computed with: alone or among 17 activations, from
    /// packed or ggml rows (the packed layout's fast repacking and the row-by-row one agree byte for
    /// byte), in a full group or the matrix's last, shorter one. The engine relies on it to batch
    /// prompt rows freely.
    @Test func rowResultsDoNotDependOnTheirBatchOrLayout() {
        var random = TestRandom(state: 0x41_32)
        let rows = 40, columns = 576, tokens = 17
        let w = Self.weights(rows: rows, columns: columns, &random)
        let p = Self.packed(w, rows: rows, columns: columns)
        let a = Self.activations(columns: columns, tokens: tokens, &random)
        let stride = BlockType.q8_1.rowBytes(columns)!
        w.withUnsafeBytes { wb in
            p.withUnsafeBytes { pb in
                a.withUnsafeBytes { ab in
                    let plain = WeightMatrix(type: .q4_1, rows: rows, columns: columns, base: wb.baseAddress!)!
                    var packed = WeightMatrix(type: .q4_1, rows: rows, columns: columns, base: pb.baseAddress!)!
                    packed.isPacked = true
                    for first in [0, 16, 32] {
                        let count = min(16, rows - first)
                        let bytes = Q4_1Groups.groupBytes(columns: columns)
                        var g1 = [UInt8](repeating: 0xAA, count: bytes), g2 = [UInt8](repeating: 0x55, count: bytes)
                        g1.withUnsafeMutableBytes { Q4_1Groups.repack(plain, first: first, count: count, into: $0.baseAddress!) }
                        g2.withUnsafeMutableBytes { Q4_1Groups.repack(packed, first: first, count: count, into: $0.baseAddress!) }
                        #expect(g1 == g2, "rows \(first)..<\(first + count): packed and ggml rows repack alike")
                        let all = Self.run(packed, first: first, count: count, ab.baseAddress!, tokens: tokens)
                        for t in 0 ..< tokens {
                            let alone = Self.run(plain, first: first, count: count, ab.baseAddress! + t * stride, tokens: 1)
                            for r in 0 ..< count {
                                #expect(alone[r].bitPattern == all[t * 16 + r].bitPattern, "row \(first + r) token \(t) alone and in a batch")
                            }
                        }
                        // The direct form (no repacking), from packed and ggml rows, any row range and
                        // activation count: the same bits.
                        for (matrix, name) in [(packed, "packed"), (plain, "ggml")] {
                            for (from, n) in [(first, count), (first + 3, count - 3), (first + 1, 9)] where n > 0 && from + n <= rows {
                                for tokens in [1, 2, 5] {
                                    let direct = Self.runDirect(matrix, first: from, count: n, ab.baseAddress!, tokens: tokens)
                                    for t in 0 ..< tokens {
                                        for r in 0 ..< n {
                                            #expect(direct[t * n + r].bitPattern == all[t * 16 + from - first + r].bitPattern,
                                                    "\(name) rows from \(from), row \(from + r), token \(t) of \(tokens): direct and grouped")
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A matrix whose last row ends where the process may not read (a read past it would crash the
    /// test): a group of its last rows is repacked and multiplied, and multiplied directly, from
    /// exactly those rows.
    /// The engine's single-row path (`ThreadPool.multiplyQ4_1Direct`, `sn_pool_q4_1_direct`): two
    /// matrices of awkward row counts in one plan (chunks that cross from one matrix into the next,
    /// a last group of fewer than four rows), given in ggml rows (the plan packs its own copies), on
    /// two threads, one activation written to output row 2 of 3: each output the same bits as
    /// `multiplyDirect` on the packed rows, and nothing else written.
    @Test func poolDirectPathEqualsDirectRowsAcrossMatricesAndOffsets() throws {
        var random = TestRandom(state: 0x41_34)
        let columns = 576, shapes = [203, 90]
        let raw = shapes.map { Self.weights(rows: $0, columns: columns, &random) }
        let a = Self.activations(columns: columns, tokens: 1, &random)
        let weights = raw.map { bytes -> UnsafeMutableRawPointer in
            let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
            bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            return p
        }
        let outputs = shapes.map { rows -> UnsafeMutablePointer<Float> in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: 3 * rows)
            p.initialize(repeating: .nan, count: 3 * rows)
            return p
        }
        defer { weights.forEach { $0.deallocate() }; outputs.forEach { $0.deallocate() } }
        let jobs = try zip(shapes, zip(weights, outputs)).map { rows, pair in
            MatMulJob(try #require(WeightMatrix(type: .q4_1, rows: rows, columns: columns, base: pair.0)), out: pair.1)
        }
        let plan = try #require(MatMulPlan(jobs))
        let per = Q4_1Groups.scalesPerActivation(columns: columns)
        var scales = [Float](repeating: 0, count: per)
        a.withUnsafeBytes { Q4_1Groups.prepare($0.baseAddress!, columns: columns, into: &scales) }
        a.withUnsafeBytes {
            ThreadPool(threads: 2).multiplyQ4_1Direct(plan, firstActivation: 2, activations: $0.baseAddress!,
                                                      activationStride: BlockType.q8_1.rowBytes(columns)!, scales: scales,
                                                      scalesStride: per, count: 1)
        }
        for (j, rows) in shapes.enumerated() {
            var packedBytes = Self.packed(raw[j], rows: rows, columns: columns)
            let expected = try packedBytes.withUnsafeMutableBytes { w in
                var m = try #require(WeightMatrix(type: .q4_1, rows: rows, columns: columns, base: w.baseAddress!))
                m.isPacked = true
                return a.withUnsafeBytes { Self.runDirect(m, first: 0, count: rows, $0.baseAddress!, tokens: 1) }
            }
            let written = (2 * rows ..< 3 * rows).map { outputs[j][$0].bitPattern }
            let untouched = (0 ..< 2 * rows).allSatisfy { outputs[j][$0].isNaN }
            #expect(written == expected.map(\.bitPattern), "matrix \(j)")
            #expect(untouched, "matrix \(j): rows of other activations written")
        }
    }

    @Test func groupOfTheLastRowsReadsNoBytePastTheMatrix() throws {
        var random = TestRandom(state: 0x41_33)
        let rows = 21, columns = 256
        let w = Self.weights(rows: rows, columns: columns, &random)
        let a = Self.activations(columns: columns, tokens: 3, &random)
        let page = sysconf(Int32(_SC_PAGESIZE))
        let mapped = (w.count + page - 1) / page * page + page
        let base = try #require(mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        try #require(base != UnsafeMutableRawPointer(bitPattern: -1), "mmap failed")
        defer { munmap(base, mapped) }
        #expect(mprotect(base + mapped - page, page, PROT_NONE) == 0)
        let start = base + (mapped - page - w.count)
        w.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: w.count) }
        let matrix = try #require(WeightMatrix(type: .q4_1, rows: rows, columns: columns, base: UnsafeRawPointer(start)))
        a.withUnsafeBytes { ab in
            let out = Self.run(matrix, first: 16, count: 5, ab.baseAddress!, tokens: 3)
            let direct = Self.runDirect(matrix, first: 16, count: 5, ab.baseAddress!, tokens: 3)
            for t in 0 ..< 3 {
                for r in 0 ..< 5 {
                    let ref = Self.reference(start, rowBytes: matrix.rowBytes, ab.baseAddress!, columns: columns, row: 16 + r, token: t)
                    #expect(abs(Double(out[t * Q4_1Groups.rows + r]) - ref.dot) <= 1e-5 * ref.magnitude)
                    #expect(direct[t * 5 + r].bitPattern == out[t * Q4_1Groups.rows + r].bitPattern)
                }
            }
        }
    }
}
