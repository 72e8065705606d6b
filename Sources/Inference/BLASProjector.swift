import Kernels

/// The single-precision matrix products of a prompt batch (`PrefillMode.blas`): each matrix of a
/// `Projection` is cut into tiles of rows; each member of the engine's thread pool takes the next
/// tile, dequantizes it into its own F32 buffer (F32 weights are read in place) and multiplies it
/// with the F32 activations by single-threaded `cblas_sgemm` (`BLAS.multiply`). OpenBLAS itself
/// never starts threads, so it cannot oversubscribe the cores the pool already uses.
///
/// Q4_K matrices instead take `Q4KGroups` where the machine has them (`groupsQ4K`): the input is
/// quantized to Q8_K once per call, and each tile is repacked sixteen rows at a time into the member's
/// group buffer and multiplied with every activation, in integers scaled in F32 (the same tolerance
/// as sgemm's, twice the exact GEMM's speed at a prompt batch).
///
/// Holds one tile buffer per pool member (at most `tileFloats` floats each: 4 MiB, or 128 rows of
/// the widest matrix), one group buffer per member, and the quantized input, allocated on first use
/// and grown as needed. Not thread-safe: one caller at a time (the backend's).
final class BLASProjector {
    let pool: ThreadPool
    private var tiles: UnsafeMutablePointer<Float>?
    private var tileFloats = 0

    /// Floats a tile aims at (4 MiB: inside this CPU's per-core L2 + L3 share, and large enough that
    /// sgemm's packing of the activations is amortized).
    static let tileTarget = 1 << 20

    /// Whether Q4_K products take `Q4KGroups` rather than dequantize + sgemm (the backend's choice;
    /// false where the machine has no such kernels).
    var groupsQ4K = Q4KGroups.available
    private var groups: UnsafeMutableRawPointer?
    private var groupBytes = 0
    private var quantized: UnsafeMutableRawPointer?
    private var quantizedBytes = 0
    private var sums: UnsafeMutablePointer<Float>?
    private var sumsCount = 0

    init(pool: ThreadPool) { self.pool = pool }

    deinit {
        tiles?.deallocate()
        groups?.deallocate()
        quantized?.deallocate()
        sums?.deallocate()
    }

    private func takesGroups(_ m: WeightMatrix) -> Bool {
        groupsQ4K && m.type == .q4_K && !m.isPacked && m.columns % 256 == 0
    }

    /// Quantizes `count` rows of `columns` floats to Q8_K with their sub-block sums, spread over the pool.
    private func quantizeForGroups(_ input: UnsafePointer<Float>, columns: Int, count: Int)
        -> (activations: UnsafeMutableRawPointer, stride: Int, sums: UnsafeMutablePointer<Float>) {
        let stride = BlockType.q8_K.rowBytes(columns)!
        let perRow = Q4KGroups.sumsPerActivation(columns: columns)
        if stride * count > quantizedBytes {
            quantized?.deallocate()
            quantized = .allocate(byteCount: stride * count, alignment: 64)
            quantizedBytes = stride * count
        }
        if perRow * count > sumsCount {
            sums?.deallocate()
            sums = .allocate(capacity: perRow * count)
            sumsCount = perRow * count
        }
        let activations = quantized!, sums = sums!
        pool.forEach(count) { t, _ in
            FastKernels.quantize(input + t * columns, columns: columns, count: 1, to: .q8_K, into: activations + t * stride)
            Q4KGroups.activationSums(activations + t * stride, columns: columns, into: sums + t * perRow)
        }
        return (activations, stride, sums)
    }

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
        var needed = 0, neededGroup = 0
        for (j, m) in p.matrices.enumerated() {
            let step = Self.tileRows(rows: m.rows, columns: m.columns, members: members)
            if takesGroups(m) {
                neededGroup = max(neededGroup, Q4KGroups.groupBytes(columns: m.columns))
            } else if m.type != .f32 {
                needed = max(needed, step * m.columns)
            }
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
        if neededGroup > groupBytes {
            groups?.deallocate()
            groups = .allocate(byteCount: neededGroup * members, alignment: 64)
            groupBytes = neededGroup
        }
        let grouped = p.matrices.map(takesGroups)
        let q8 = grouped.contains(true) ? quantizeForGroups(input, columns: p.columns, count: count) : nil
        let tiles = tiles, tileFloats = tileFloats, groups = groups, groupBytes = groupBytes
        let matrices = p.matrices, outputs = p.outputs
        pool.forEach(items.count) { i, member in
            let item = items[i]
            let m = matrices[item.matrix]
            let out = outputs[item.matrix] + item.first
            if grouped[item.matrix], let q8 {
                let group = groups! + member * groupBytes
                var first = 0
                while first < item.rows {
                    let rowCount = min(Q4KGroups.rows, item.rows - first)
                    Q4KGroups.repack(m, first: item.first + first, count: rowCount, into: group)
                    Q4KGroups.multiply(group, columns: m.columns, rowCount: rowCount, activations: q8.activations,
                                       activationStride: q8.stride, sums: q8.sums, count: count,
                                       into: out + first, outStride: m.rows)
                    first += rowCount
                }
                return
            }
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
