import Kernels

/// The single-precision matrix products of a prompt batch (`PrefillMode.blas`): each matrix of a
/// `Projection` is cut into tiles of rows; each member of the engine's thread pool takes the next
/// tile, dequantizes it into its own F32 buffer (F32 weights are read in place) and multiplies it
/// with the F32 activations by single-threaded `cblas_sgemm` (`BLAS.multiply`). OpenBLAS itself
/// never starts threads, so it cannot oversubscribe the cores the pool already uses.
///
/// Holds one tile buffer per pool member (at most `tileFloats` floats each: 4 MiB, or 128 rows of
/// the widest matrix), allocated on first use. Not thread-safe: one caller at a time (the backend's).
final class BLASProjector {
    let pool: ThreadPool
    private var tiles: UnsafeMutablePointer<Float>?
    private var tileFloats = 0

    /// Floats a tile aims at (4 MiB: inside this CPU's per-core L2 + L3 share, and large enough that
    /// sgemm's packing of the activations is amortized).
    static let tileTarget = 1 << 20

    init(pool: ThreadPool) { self.pool = pool }

    deinit { tiles?.deallocate() }

    /// Rows per tile for a matrix of `rows` x `columns`: about `tileTarget` floats, 64-512 rows, and
    /// at least four tiles per member when the matrix has enough rows (members that finish early
    /// take more tiles). A multiple of 16.
    static func tileRows(rows: Int, columns: Int, members: Int) -> Int {
        let bySize = max(128, min(512, tileTarget / max(1, columns)))
        let balanced = (rows + 4 * members - 1) / (4 * members)
        let chosen = min(bySize, max(64, balanced))
        return max(16, (chosen + 15) / 16 * 16)
    }

    /// `out_j[t * rows_j + r] = sum_k input[t * columns + k] * W_j[r, k]` for every matrix `j` of
    /// `projection`, `t < count`.
    func project(_ p: Projection, input: UnsafePointer<Float>, count: Int) {
        let members = pool.size
        var items: [(matrix: Int, first: Int, rows: Int)] = []
        var needed = 0
        for (j, m) in p.matrices.enumerated() {
            let step = Self.tileRows(rows: m.rows, columns: m.columns, members: members)
            if m.type != .f32 { needed = max(needed, step * m.columns) }
            var first = 0
            while first < m.rows {
                items.append((j, first, min(step, m.rows - first)))
                first += step
            }
        }
        if needed > tileFloats {
            tiles?.deallocate()
            tiles = .allocate(capacity: needed * members)
            tileFloats = needed
        }
        let tiles = tiles, tileFloats = tileFloats
        let matrices = p.matrices, outputs = p.outputs
        pool.forEach(items.count) { i, member in
            let item = items[i]
            let m = matrices[item.matrix]
            let out = outputs[item.matrix] + item.first
            if m.type == .f32 {
                let w = m.base.assumingMemoryBound(to: Float.self) + item.first * m.columns
                BLAS.multiply(input, count: count, w, rows: item.rows, ldw: m.columns, columns: m.columns, into: out, ldc: m.rows)
                return
            }
            let tile = tiles! + member * tileFloats
            for r in 0 ..< item.rows {
                let row = tile + r * m.columns
                if m.type == .f16 && FastKernels.available {
                    FastKernels.fromHalf((m.base + (item.first + r) * m.rowBytes).assumingMemoryBound(to: UInt16.self), row, count: m.columns)
                } else if FastKernels.dequantizes(m.type) && !m.isPacked {
                    // Q5_0, Q5_1 and the K-quants stay ggml rows; packed Q4_0 is unpacked below.
                    FastKernels.dequantize(m.type, m.base + (item.first + r) * m.rowBytes, count: m.columns, into: row)
                } else {
                    m.dequantizeRow(item.first + r, into: row)
                }
            }
            BLAS.multiply(input, count: count, tile, rows: item.rows, ldw: m.columns, columns: m.columns, into: out, ldc: m.rows)
        }
    }
}
