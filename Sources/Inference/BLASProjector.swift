import Kernels

/// The single-precision matrix products of a prompt batch (`PrefillMode.blas`): each matrix of a
/// `Projection` is cut into tiles of rows; each member of the engine's thread pool takes the next
/// tile, dequantizes it into its own F32 buffer (F32 weights are read in place) and multiplies it
/// with the F32 activations by single-threaded `cblas_sgemm` (`BLAS.multiply`). OpenBLAS itself
/// never starts threads, so it cannot oversubscribe the cores the pool already uses.
///
/// Q4_K and Q6_K matrices instead take `KQuantGroups` where the machine has them (`kQuantGroups`):
/// the input is quantized to Q8_K once per call, and each tile is repacked sixteen rows at a time
/// into the member's group buffer and multiplied with every activation, in integers scaled in F32
/// (the same tolerance as sgemm's; Q4_K at twice the exact GEMM's speed at a prompt batch).
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

    /// Whether Q4_K and Q6_K products take `KQuantGroups` rather than dequantize + sgemm (the
    /// backend's choice; false where the machine has no such kernels).
    var kQuantGroups = KQuantGroups.available
    private var groups: UnsafeMutableRawPointer?
    private var groupBytes = 0
    /// The input as Q8_K rows, then (Q6_K) as unsigned bytes.
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
        kQuantGroups && KQuantGroups.supports(m.type) && !m.isPacked && m.columns % 256 == 0
    }

    /// The input for the groups: `count` rows of `columns` floats quantized to Q8_K (`q8K`), with
    /// (`sums`) Q4_K's sub-block sums and (`unsigned`) Q6_K's unsigned rows (`q6K`), spread over the
    /// pool: each only when a grouped matrix of that type needs it.
    private struct GroupInput {
        let q8K: UnsafeMutableRawPointer
        let q6K: UnsafeMutableRawPointer
        let stride: Int
        let sums: UnsafeMutablePointer<Float>
    }

    private func quantizeForGroups(_ input: UnsafePointer<Float>, columns: Int, count: Int, sums withSums: Bool,
                                   unsigned: Bool) -> GroupInput {
        let stride = BlockType.q8_K.rowBytes(columns)!
        let perRow = KQuantGroups.sumsPerActivation(columns: columns)
        if 2 * stride * count > quantizedBytes {
            quantized?.deallocate()
            quantized = .allocate(byteCount: 2 * stride * count, alignment: 64)
            quantizedBytes = 2 * stride * count
        }
        if perRow * count > sumsCount {
            sums?.deallocate()
            sums = .allocate(capacity: perRow * count)
            sumsCount = perRow * count
        }
        let groupInput = GroupInput(q8K: quantized!, q6K: quantized! + stride * count, stride: stride, sums: sums!)
        pool.forEach(count) { t, _ in
            let row = groupInput.q8K + t * stride
            FastKernels.quantize(input + t * columns, columns: columns, count: 1, to: .q8_K, into: row)
            if withSums { KQuantGroups.prepareQ4_K(row, columns: columns, into: groupInput.sums + t * perRow) }
            if unsigned { KQuantGroups.prepareQ6_K(row, columns: columns, into: groupInput.q6K + t * stride) }
        }
        return groupInput
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
                neededGroup = max(neededGroup, KQuantGroups.groupBytes(m.type, columns: m.columns))
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
        let withSums = zip(p.matrices, grouped).contains { $1 && $0.type == .q4_K }
        let unsigned = zip(p.matrices, grouped).contains { $1 && $0.type == .q6_K }
        let q8 = withSums || unsigned
            ? quantizeForGroups(input, columns: p.columns, count: count, sums: withSums, unsigned: unsigned) : nil
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
                    let rowCount = min(KQuantGroups.rows, item.rows - first)
                    KQuantGroups.repack(m, first: item.first + first, count: rowCount, into: group)
                    KQuantGroups.multiply(m.type, group, columns: m.columns, rowCount: rowCount,
                                          activations: m.type == .q6_K ? q8.q6K : q8.q8K, activationStride: q8.stride,
                                          sums: q8.sums, count: count, into: out + first, outStride: m.rows)
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
