import Kernels

/// The prompt rows of a forward pass through Q4_1 projections in sixteen-row integer groups
/// (`Q4_1Groups`; `ComputeBackend.projectPromptRows`): the input is quantized to Q8_1 as the exact
/// kernels quantize it, each matrix is cut into tiles of rows, and each member of the engine's thread
/// pool takes the next tile, repacks it sixteen rows at a time into its own group buffer and
/// multiplies it with every prompt row (a single row, as a decoding step under `Decoding.promptRows`
/// is: straight from the packed matrices in the C pool's chunks, the same bits,
/// `ThreadPool.multiplyQ4_1Direct`). Within the tolerance of the exact kernels (2-8e-7 of the
/// largest output), 1.2-2.2x their speed from two rows on (`bench/kernels/q4_1_groups.sh`,
/// `bench/results/q4_1-groups.md`); each row's result independent of the others, so prompt rows
/// batch freely.
///
/// Holds one group buffer per pool member and the quantized input with its scales, allocated on
/// first use and grown as needed. Not thread-safe: one caller at a time (the backend's).
final class PromptRowProjector {
    let pool: ThreadPool
    private var groups: UnsafeMutableRawPointer?
    private var groupBytes = 0
    private var quantized: UnsafeMutableRawPointer?
    private var quantizedBytes = 0
    private var scales: UnsafeMutablePointer<Float>?
    private var scalesCount = 0

    /// Rows per tile a member takes (four groups).
    static let tileRows = 4 * Q4_1Groups.rows

    init(pool: ThreadPool) { self.pool = pool }

    deinit {
        groups?.deallocate()
        quantized?.deallocate()
        scales?.deallocate()
    }

    /// Whether every matrix of `p` has grouped products here.
    static func supports(_ p: Projection) -> Bool { p.matrices.allSatisfy(Q4_1Groups.supports) }

    /// `out_j[(first + t) * rows_j + r] = dot(W_j row r, input t)` for every matrix `j` of `p`
    /// (`supports(p)`), `t < count`.
    func project(_ p: Projection, input: UnsafePointer<Float>, first: Int, count: Int) {
        precondition(Self.supports(p) && count > 0)
        let columns = p.columns
        let rowStride = BlockType.q8_1.rowBytes(columns)!, per = Q4_1Groups.scalesPerActivation(columns: columns)
        if rowStride * count > quantizedBytes {
            quantized?.deallocate()
            quantized = .allocate(byteCount: rowStride * count, alignment: 64)
            quantizedBytes = rowStride * count
        }
        if per * count > scalesCount {
            scales?.deallocate()
            scales = .allocate(capacity: per * count)
            scalesCount = per * count
        }
        let needed = Q4_1Groups.groupBytes(columns: columns)
        if needed > groupBytes {
            groups?.deallocate()
            groups = .allocate(byteCount: needed * pool.size, alignment: 64)
            groupBytes = needed
        }
        let quantized = quantized!, scales = scales!, groups = groups!, groupBytes = groupBytes
        let quantize = { (t: Int) in
            FastKernels.quantize(input + t * columns, columns: columns, count: 1, to: .q8_1, into: quantized + t * rowStride)
            Q4_1Groups.prepare(quantized + t * rowStride, columns: columns, into: scales + t * per)
        }
        if count >= CPUBackend.parallelRowsMinimum && pool.size > 1 {
            pool.forEach(count) { t, _ in quantize(t) }
        } else {
            for t in 0 ..< count { quantize(t) }
        }
        if count < Q4_1Groups.directBelow {
            // Straight from the packed matrices (the plan's: C kernels exist wherever the groups do),
            // in the C pool's chunks of 64-256 rows (`sn_pool_q4_1_direct`): no per-chunk Swift work
            // (64-row tiles through `forEach` decoded at 0.82-0.86x the one-token kernels' speed,
            // 256-row ones 1.05x; the C pool's 1.10x: `bench/decoding.sh`).
            guard let plan = p.plan else { preconditionFailure("Q4_1 groups without the C kernels' plan") }
            pool.multiplyQ4_1Direct(plan, firstActivation: first, activations: quantized, activationStride: rowStride,
                                    scales: scales, scalesStride: per, count: count)
            return
        }
        var items: [(matrix: Int, first: Int, rows: Int)] = []
        for (j, m) in p.matrices.enumerated() {
            for start in stride(from: 0, to: m.rows, by: Self.tileRows) { items.append((j, start, min(Self.tileRows, m.rows - start))) }
        }
        let matrices = p.matrices, outputs = p.outputs
        pool.forEach(items.count) { i, member in
            let item = items[i]
            let m = matrices[item.matrix]
            let group = groups + member * groupBytes
            var row = item.first
            while row < item.first + item.rows {
                let rowCount = min(Q4_1Groups.rows, item.first + item.rows - row)
                Q4_1Groups.repack(m, first: row, count: rowCount, into: group)
                Q4_1Groups.multiply(group, columns: columns, rowCount: rowCount, activations: quantized, activationStride: rowStride,
                                    scales: scales, count: count, into: outputs[item.matrix] + first * m.rows + row, outStride: m.rows)
                row += rowCount
            }
        }
    }
}
