import CKernels
import Foundation

/// Causal attention of a prompt batch as matrix products, for the BLAS prompt path only
/// (`Inference.PrefillMode.blas`): within a tolerance of `Attention.head`, not bit-identical (no F16
/// rounding of the query or of the weights, F32 sums in OpenBLAS's order). Decoding, small batches
/// and the exact mode never come here.
///
/// For `n` rows of one sequence at positions `p ..< p + n` over an F16 cache of rows `0 ..< p + n`:
/// 1. every key and value row the batch can see is converted to F32 once (rows `0 ..< p + n`, or
///    from the first row inside the sliding window), spread over the pool;
/// 2. per task (one KV head, one tile of up to `queryTile` query positions): the tile's queries of
///    every query head sharing that KV head (grouped-query attention) are stacked as rows
///    (`[position][head in group]`, `R = tile * group` rows of `headDim`), then
///    `S = Q Kᵀ` (one `cblas_sgemm`, `R x keys`, only the keys up to the tile's last position),
///    each row capped (`softCap`), scaled, masked (causal and sliding window: weight exactly 0) and
///    softmaxed (`sn_softmax_masked`: max-subtracted, vectorized expf), then `O = P V` (one
///    `cblas_sgemm`), scattered back to the heads' outputs;
/// 3. tasks run on the engine's pool, the longest (last) tiles first, each member calling
///    single-threaded OpenBLAS (`BLAS.singleThreaded`, as `BLASProjector`): no BLAS threads beside
///    the pool's.
///
/// Memory, held for reuse and grown only when a longer batch comes: the F32 keys and values,
/// `2 * (p + n) * kvHeads * headDim` floats (twice the bytes of one layer's F16 cache rows, so at
/// most 8 bytes per cached value of one layer: 6 MiB for SmolLM2-135M at 4,096 positions, 16 MiB for
/// Llama-3.2-1B shapes, 32 MiB for 8B shapes); per pool member
/// `queryTile * group * (2 * headDim + p + n)` floats (one tile's queries, outputs and scores; 3.1 MiB
/// for SmolLM2, 4.1 MiB for 1B and 4.3 MiB for 8B shapes at 4,096 positions).
///
/// Not thread-safe: one caller at a time (the engine's backend).
public final class GEMMAttention: @unchecked Sendable {
    /// The attention hyperparameters of one layer.
    public struct Shape: Sendable, Equatable {
        public var heads: Int
        public var kvHeads: Int
        public var headDim: Int
        /// Multiplies every (capped) score.
        public var scale: Float
        /// `tanh(kq / softCap) * softCap` on every score before the scale (0: none; Gemma 2).
        public var softCap: Float
        /// A row at position `q` sees positions `q - window + 1 ... q` (nil: all `0 ... q`).
        public var window: Int?

        public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float, softCap: Float = 0, window: Int? = nil) {
            self.heads = heads
            self.kvHeads = kvHeads
            self.headDim = headDim
            self.scale = scale
            self.softCap = softCap
            self.window = window
        }

        var group: Int { heads / kvHeads }
        var queryWidth: Int { heads * headDim }
        var kvWidth: Int { kvHeads * headDim }
    }

    /// Query positions per task: 64 (with GQA groups of 3-8 heads, 192-512 rows per sgemm).
    public static let queryTile = 64

    let pool: ThreadPool
    private var keyValues: UnsafeMutablePointer<Float>?
    private var keyValueFloats = 0
    private var scratch: UnsafeMutablePointer<Float>?
    private var scratchFloats = 0

    public init(pool: ThreadPool) { self.pool = pool }

    deinit {
        keyValues?.deallocate()
        scratch?.deallocate()
    }

    /// Floats held now (F32 keys and values, and every member's scratch): for reports and tests.
    public var heldFloats: Int { 2 * keyValueFloats + scratchFloats * pool.size }

    /// `out[t * heads * headDim + h * headDim + i]` = attention of query head `h` of row `t`
    /// (`queries`, same layout) at position `position + t` over cached positions `0 ... position + t`
    /// (its window), for `t < count`. `keys` and `values` are one layer's F16 cache rows (`kvHeads *
    /// headDim` values each), rows `0 ..< position + count` filled; query head `h` reads KV head
    /// `h / (heads / kvHeads)`.
    public func run(queries: UnsafePointer<Float>, count n: Int, position p: Int,
                    keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>, shape: Shape,
                    out: UnsafeMutablePointer<Float>) {
        precondition(n >= 1 && p >= 0 && shape.kvHeads >= 1 && shape.heads % shape.kvHeads == 0 && shape.headDim >= 1)
        let length = p + n, kvw = shape.kvWidth, hd = shape.headDim, group = shape.group, qw = shape.queryWidth
        let tile = Self.queryTile
        // Rows before `lowest` are outside every row's window: never read.
        let lowest = shape.window.map { max(0, p + 1 - $0) } ?? 0
        let visible = shape.window.map { min(length, $0 - 1 + tile) } ?? length
        let perMember = tile * group * (2 * hd + visible)
        reserve(keyValues: length * kvw, perMember: perMember)
        let kf = keyValues!, vf = kf + keyValueFloats, scratch = scratch!, scratchFloats = scratchFloats

        // 1. F32 keys and values of rows lowest ..< length, in chunks of 64 rows.
        let chunk = 64
        let chunks = (length - lowest + chunk - 1) / chunk
        pool.forEach(2 * chunks) { i, _ in
            let first = lowest + (i / 2) * chunk, rows = min(chunk, length - first)
            let (source, target) = i % 2 == 0 ? (keys, kf) : (values, vf)
            Self.fromHalf(source + first * kvw, target + first * kvw, count: rows * kvw)
        }

        // 2-3. One task per (KV head, query tile), the last tiles (the most keys) first.
        let tiles = (n + tile - 1) / tile
        let scale = shape.scale, softCap = shape.softCap, window = shape.window
        pool.forEach(tiles * shape.kvHeads) { i, member in
            let j = i % shape.kvHeads, t0 = (tiles - 1 - i / shape.kvHeads) * tile, t1 = min(n, t0 + tile)
            let rows = (t1 - t0) * group
            // Keys the tile's rows can see: from the first row's window start to the last row's position.
            let k0 = window.map { max(0, p + t0 + 1 - $0) } ?? 0
            let keyCount = p + t1 - k0
            let q = scratch + member * scratchFloats       // [rows][hd]
            let o = q + tile * group * hd                   // [rows][hd]
            let s = o + tile * group * hd                   // [rows][keyCount]
            for t in t0 ..< t1 {
                for g in 0 ..< group {
                    (q + ((t - t0) * group + g) * hd).update(from: queries + t * qw + (j * group + g) * hd, count: hd)
                }
            }
            BLAS.multiply(m: rows, n: keyCount, k: hd, q, lda: hd, kf + k0 * kvw + j * hd, ldb: kvw,
                          transposedB: true, into: s, ldc: keyCount)
            for r in 0 ..< rows {
                let position = p + t0 + r / group
                let first = window.map { max(0, position + 1 - $0) } ?? 0
                Self.softmax(s + r * keyCount, count: keyCount, first: first - k0, end: position + 1 - k0,
                             scale: scale, softCap: softCap)
            }
            BLAS.multiply(m: rows, n: hd, k: keyCount, s, lda: keyCount, vf + k0 * kvw + j * hd, ldb: kvw,
                          transposedB: false, into: o, ldc: hd)
            for t in t0 ..< t1 {
                for g in 0 ..< group {
                    (out + t * qw + (j * group + g) * hd).update(from: o + ((t - t0) * group + g) * hd, count: hd)
                }
            }
        }
    }

    /// Grows the buffers to `keyValues` floats each for keys and values and `perMember` floats of
    /// scratch per pool member (never shrinks them).
    private func reserve(keyValues floats: Int, perMember: Int) {
        if floats > keyValueFloats {
            keyValues?.deallocate()
            keyValues = .allocate(capacity: 2 * floats)
            keyValueFloats = floats
        }
        if perMember > scratchFloats {
            scratch?.deallocate()
            scratch = .allocate(capacity: perMember * pool.size)
            scratchFloats = perMember
        }
    }

    /// F16 bits to floats (F16C where the C kernels run).
    static func fromHalf(_ x: UnsafePointer<UInt16>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        if FastKernels.available {
            FastKernels.fromHalf(x, out, count: count)
        } else {
            let table = Half.table
            for i in 0 ..< count { out[i] = table[Int(x[i])] }
        }
    }

    /// `row[first ..< end]` = softmax(cap(x) * scale), the rest of `row[0 ..< count]` 0
    /// (`sn_softmax_masked`; a scalar loop on CPUs without the C kernels).
    public static func softmax(_ row: UnsafeMutablePointer<Float>, count: Int, first: Int, end: Int, scale: Float, softCap: Float) {
        precondition(first >= 0 && first < end && end <= count)
        if FastKernels.available {
            sn_softmax_masked(row, Int32(count), Int32(first), Int32(end), scale, softCap)
            return
        }
        if softCap > 0 { for i in first ..< end { row[i] = tanhf(row[i] * (1 / softCap)) * softCap } }
        var maximum = -Float.infinity
        for i in first ..< end { maximum = max(maximum, row[i]) }
        var sum: Float = 0
        for i in first ..< end {
            row[i] = expf((row[i] - maximum) * scale)
            sum += row[i]
        }
        let inverse = 1 / sum
        for i in first ..< end { row[i] *= inverse }
        for i in 0 ..< first { row[i] = 0 }
        for i in end ..< count { row[i] = 0 }
    }
}
