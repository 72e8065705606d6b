import Foundation
import Testing
@testable import Kernels

/// `GEMMAttention` (the BLAS prompt path's attention as matrix products) against the same math in
/// double precision and against the exact per-head kernel (`Attention.head`), on random caches:
/// prompt lengths around the 64-row tile, grouped-query ratios 1, 3 and 4, a batch that continues
/// after cached rows, sliding windows and Gemma 2's soft cap.
struct GEMMAttentionTests {
    /// Largest |GEMM - double-precision math| per output, relative to the largest |value| (OpenBLAS
    /// sums in F32; measured: at most 8.9e-7).
    static let mathTolerance = 1e-5
    /// Largest |GEMM - Attention.head| per output, relative to the largest |value|: the exact kernel
    /// rounds the query and every softmax weight to F16 (2^-11 relative), as llama.cpp does, and
    /// GEMM attention does not (measured: at most 6.7e-4).
    static let exactTolerance: Float = 3e-3

    /// One random case: `n` rows at positions `past ..< past + n` over a cache of exactly
    /// `past + n` rows, optionally ending at a guard page.
    struct Case: CustomStringConvertible {
        var heads: Int
        var kvHeads: Int
        var headDim: Int
        var past: Int
        var n: Int
        var window: Int? = nil
        var softCap: Float = 0
        var description: String {
            "heads \(heads)/\(kvHeads) headDim \(headDim) past \(past) n \(n) window \(window.map(String.init) ?? "none") softCap \(softCap)"
        }
    }

    /// Runs `c` through GEMMAttention with the cache rows in `keys` and `values` (each `(past + n) *
    /// kvWidth` F16 values) and returns the outputs, with the worst errors against double precision
    /// and against `Attention.head`.
    /// Only rows for which `checked` is true are compared (all by default).
    func run(_ c: Case, keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>, threads: Int = 2,
             checked: (Int) -> Bool = { _ in true }, _ random: inout TestRandom) -> (math: Double, exact: Float, out: [Float]) {
        let qw = c.heads * c.headDim, kvw = c.kvHeads * c.headDim, group = c.heads / c.kvHeads, hd = c.headDim
        let scale = 1 / Float(hd).squareRoot()
        let queries = (0 ..< c.n * qw).map { _ in random.float() * 3 }
        var out = [Float](repeating: .nan, count: c.n * qw)
        let shape = GEMMAttention.Shape(heads: c.heads, kvHeads: c.kvHeads, headDim: hd, scale: scale, softCap: c.softCap, window: c.window)
        let attention = GEMMAttention(pool: ThreadPool(threads: threads))
        out.withUnsafeMutableBufferPointer { o in
            attention.run(queries: queries, count: c.n, position: c.past, keys: keys, values: values, shape: shape, out: o.baseAddress!)
        }
        var largestValue: Float = 0
        for i in 0 ..< (c.past + c.n) * kvw { largestValue = max(largestValue, abs(Half.toFloat(values[i]))) }
        var worstMath = 0.0, worstExact: Float = 0
        var scratch = [Float](repeating: 0, count: Attention.scratchCount(positions: c.past + c.n, headDim: hd))
        var exact = [Float](repeating: 0, count: hd)
        for t in 0 ..< c.n where checked(t) {
            let position = c.past + t, first = c.window.map { max(0, position + 1 - $0) } ?? 0
            for h in 0 ..< c.heads {
                let q = t * qw + h * hd, kv = (h / group) * hd
                // Double precision: softmax over first...position of cap(q.k) * scale, then the values.
                var scores = [Double](repeating: 0, count: position + 1)
                for p in first ... position {
                    var dot = 0.0
                    for i in 0 ..< hd { dot += Double(queries[q + i]) * Double(Half.toFloat(keys[p * kvw + kv + i])) }
                    if c.softCap > 0 { dot = tanh(dot / Double(c.softCap)) * Double(c.softCap) }
                    scores[p] = dot * Double(scale)
                }
                let top = scores[first ... position].max()!
                var sum = 0.0
                for p in first ... position { scores[p] = exp(scores[p] - top); sum += scores[p] }
                for i in 0 ..< hd {
                    var o = 0.0
                    for p in first ... position { o += scores[p] / sum * Double(Half.toFloat(values[p * kvw + kv + i])) }
                    worstMath = max(worstMath, abs(Double(out[q + i]) - o) / Double(largestValue))
                }
                queries.withUnsafeBufferPointer { qp in
                    Attention.head(query: qp.baseAddress! + q, keys: keys + kv, values: values + kv, stride: kvw,
                                   positions: position + 1, first: first, headDim: hd, scale: scale, softCap: c.softCap,
                                   order: .tinyBLAS, scratch: &scratch, out: &exact)
                }
                for i in 0 ..< hd { worstExact = max(worstExact, abs(out[q + i] - exact[i]) / largestValue) }
            }
        }
        return (worstMath, worstExact, out)
    }

    /// Random F16 keys and values for `rows` rows of `kvWidth`.
    static func cache(rows: Int, kvWidth: Int, _ random: inout TestRandom) -> (keys: [UInt16], values: [UInt16]) {
        ((0 ..< rows * kvWidth).map { _ in Half.bits(random.float() * 2) },
         (0 ..< rows * kvWidth).map { _ in Half.bits(random.float() * 3) })
    }

    static let cases: [Case] = [
        Case(heads: 9, kvHeads: 3, headDim: 64, past: 0, n: 64),     // SmolLM2's shape, one full tile
        Case(heads: 9, kvHeads: 3, headDim: 64, past: 0, n: 65),     // one row over the tile (and the 64-row BLAS threshold)
        Case(heads: 9, kvHeads: 3, headDim: 64, past: 0, n: 1),
        Case(heads: 8, kvHeads: 2, headDim: 48, past: 100, n: 130),  // a prompt continuing after 100 cached rows
        Case(heads: 4, kvHeads: 4, headDim: 24, past: 7, n: 200),    // no grouping, several tiles
        Case(heads: 8, kvHeads: 2, headDim: 64, past: 40, n: 90, window: 16, softCap: 50),  // Gemma 2: window and cap
        Case(heads: 6, kvHeads: 3, headDim: 32, past: 300, n: 70, window: 100),  // window shorter than the past
    ]

    @Test(arguments: cases)
    func gemmAttentionMatchesTheMathAndTheExactKernel(_ c: Case) {
        var random = TestRandom(state: UInt64(c.past * 1000 + c.n))
        let (keys, values) = Self.cache(rows: c.past + c.n, kvWidth: c.kvHeads * c.headDim, &random)
        let result = keys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { v in
            run(c, keys: k.baseAddress!, values: v.baseAddress!, &random)
        }}
        print("GEMM attention \(c): |GEMM - double| \(result.math), |GEMM - exact kernel| \(result.exact) (of the largest value)")
        #expect(!result.out.contains { !$0.isFinite }, "every output written")
        #expect(result.math < Self.mathTolerance)
        #expect(result.exact < Self.exactTolerance)
    }

    /// A batch that ends at the context limit reads no cache row past the last position: the cache
    /// ends exactly at a page the process may not read (a read past it would crash the test), with
    /// the pool's two members and with one.
    @Test func batchAtTheContextLimitReadsNoRowPastTheCache() throws {
        let c = Case(heads: 9, kvHeads: 3, headDim: 64, past: 1983, n: 65)  // a 2,048-position context, full
        let kvw = c.kvHeads * c.headDim, rows = c.past + c.n
        var random = TestRandom(state: 99)
        let (keys, values) = Self.cache(rows: rows, kvWidth: kvw, &random)
        let page = sysconf(Int32(_SC_PAGESIZE))
        let bytes = rows * kvw * 2
        let mapped = (bytes + page - 1) / page * page + page
        func guarded(_ source: [UInt16]) throws -> UnsafeMutableRawPointer {
            let base = try #require(mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
            try #require(base != UnsafeMutableRawPointer(bitPattern: -1), "mmap failed")
            #expect(mprotect(base + mapped - page, page, PROT_NONE) == 0)
            let start = base + (mapped - page - bytes)
            source.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
            return base
        }
        let k = try guarded(keys), v = try guarded(values)
        defer { munmap(k, mapped); munmap(v, mapped) }
        let offset = mapped - page - bytes
        for threads in [2, 1] {
            let result = run(c, keys: (k + offset).assumingMemoryBound(to: UInt16.self),
                             values: (v + offset).assumingMemoryBound(to: UInt16.self), threads: threads,
                             checked: { $0 < 2 || $0 >= c.n - 2 }, &random)
            #expect(!result.out.contains { !$0.isFinite })
            #expect(result.math < Self.mathTolerance)
        }
    }

    /// The softmax of one row: masked entries exactly 0, the rest summing to 1, stable for scores
    /// far beyond expf's range (no overflow to inf or NaN).
    @Test func softmaxMasksAndStaysFiniteForHugeScores() {
        var row: [Float] = [1e30, 5, 3e4, 3e4 - 1, -3e4, 7, 8]
        GEMMAttention.softmax(&row, count: row.count, first: 2, end: 5, scale: 1, softCap: 0)
        #expect(row[0] == 0 && row[1] == 0 && row[5] == 0 && row[6] == 0)
        #expect(!row.contains { !$0.isFinite })
        #expect(abs(row[2] - 1 / (1 + expf(-1))) < 1e-6)
        #expect(row[4] == 0)  // exp(-6e4) underflows: weight 0, not NaN
        #expect(abs(row.reduce(0, +) - 1) < 1e-6)
    }
}
