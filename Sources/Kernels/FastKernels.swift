import CKernels

/// The C kernels (`CKernels`: AVX2/FMA/F16C intrinsics) and the thread pool, wrapped for Swift.
///
/// Each fast kernel computes exactly what its Swift reference in this module computes (same
/// operation order, same roundings): the Swift code stays as the specification and as the path
/// on CPUs without AVX2, and the tests compare the two on random inputs.
public enum FastKernels {
    /// Whether this CPU can run the C kernels (x86-64 with AVX2, FMA and F16C).
    public static let available: Bool = sn_kernels_available() != 0

    /// Whether `type` has a fast matrix product.
    @inlinable
    public static func supports(_ type: BlockType) -> Bool {
        available && (type == .q4_1 || type == .q8_0 || q32Type(type) != nil || kQuantType(type) != nil)
    }

    /// Whether the fast matrix product of `type` reads a rearranged copy (`pack`): Q4_1, Q8_0 and
    /// Q4_0. Q5_0, Q5_1 and the K-quants (q32.c, kquants.c) read ggml's rows as they are.
    @inlinable
    public static func packs(_ type: BlockType) -> Bool { type == .q4_1 || type == .q8_0 || type == .q4_0 }

    /// The C kernels' id of a K-quant weight type (`SN_Q2_K` ... `SN_Q6_K`).
    @inlinable
    static func kQuantType(_ type: BlockType) -> Int32? {
        switch type {
        case .q2_K: Int32(SN_Q2_K)
        case .q3_K: Int32(SN_Q3_K)
        case .q4_K: Int32(SN_Q4_K)
        case .q5_K: Int32(SN_Q5_K)
        case .q6_K: Int32(SN_Q6_K)
        default: nil
        }
    }

    /// `count` activation vectors of `columns` floats (stride `columns`) into `format` (Q8_1, Q8_0 or Q8_K)
    /// at `out` (stride `format.rowBytes(columns)`).
    public static func quantize(_ x: UnsafePointer<Float>, columns: Int, count: Int, to format: BlockType,
                                into out: UnsafeMutableRawPointer) {
        let stride = format.rowBytes(columns) ?? 0
        let blocks = Int32(columns / 32)
        for t in 0 ..< count {
            let dest = (out + t * stride).assumingMemoryBound(to: UInt8.self)
            switch format {
            case .q8_1: sn_quantize_q8_1(x + t * columns, blocks, dest)
            case .q8_0: sn_quantize_q8_0(x + t * columns, blocks, dest)
            case .q8_K: sn_quantize_q8_K(x + t * columns, blocks / 8, dest)
            default: preconditionFailure("no fast quantizer for \(format)")
            }
        }
    }

    /// Whether `matrix` has a fast matrix product: a supported type, and rows of at most
    /// `SN_MAX_BLOCKS` blocks.
    public static func supports(_ matrix: WeightMatrix) -> Bool {
        supports(matrix.type) && matrix.columns / 32 <= Int(SN_MAX_BLOCKS)
    }

    /// Rearranges the ggml rows of `matrix` (`supports(matrix)`), in place at `bytes` (its
    /// `rowBytes * rows` bytes), into the layout the matrix products read (`sn_pack_rows`: the
    /// scales and quants of each four rows, Q4_0's of each eight, interleaved block by block; Q5_0,
    /// Q5_1 and the K-quants stay ggml rows). The size does not change.
    public static func pack(_ matrix: WeightMatrix, in bytes: UnsafeMutableRawPointer) {
        precondition(supports(matrix) && packs(matrix.type), "no packed matrix product for \(matrix.type) with \(matrix.columns) columns")
        withUnsafeTemporaryAllocation(byteCount: 8 * matrix.rowBytes, alignment: 64) { scratch in
            sn_pack_rows(kernelType(matrix.type), bytes.assumingMemoryBound(to: UInt8.self), matrix.rowBytes,
                         Int32(matrix.rows), Int32(matrix.columns / 32), scratch.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
    }

    /// Row `r` of a packed matrix, as its ggml row (`rowBytes` bytes at `out`).
    public static func unpackRow(_ matrix: WeightMatrix, _ r: Int, into out: UnsafeMutableRawPointer) {
        precondition(matrix.isPacked && r >= 0 && r < matrix.rows)
        sn_unpack_row(kernelType(matrix.type), matrix.base.assumingMemoryBound(to: UInt8.self), matrix.rowBytes,
                      Int32(matrix.rows), Int32(matrix.columns / 32), Int32(r), out.assumingMemoryBound(to: UInt8.self))
    }

    static func kernelType(_ type: BlockType) -> Int32 {
        kQuantType(type) ?? q32Type(type) ?? (type == .q4_1 ? Int32(SN_Q4_1) : Int32(SN_Q8_0))
    }

    /// The C kernels' id of a 32-element type that q32.c computes on ggml rows (`SN_Q4_0`, `SN_Q5_0`, `SN_Q5_1`).
    @inlinable
    static func q32Type(_ type: BlockType) -> Int32? {
        switch type {
        case .q4_0: Int32(SN_Q4_0)
        case .q5_0: Int32(SN_Q5_0)
        case .q5_1: Int32(SN_Q5_1)
        default: nil
        }
    }

    /// Whether `dequantize` has a C kernel for `type` (Q4_0, Q5_0, Q5_1 and the K-quants).
    public static func dequantizes(_ type: BlockType) -> Bool {
        available && (q32Type(type) != nil || kQuantType(type) != nil)
    }

    /// Dequantizes `count` elements of a Q4_0, Q5_0, Q5_1 or K-quant row at `source` into `out` with
    /// the C kernel (bit-identical to `RowKernels.dequantize`); false, having done nothing, for other
    /// types or when the C kernels are unavailable.
    @discardableResult
    public static func dequantize(_ type: BlockType, _ source: UnsafeRawPointer, count: Int,
                                  into out: UnsafeMutablePointer<Float>) -> Bool {
        guard available else { return false }
        if let kernel = kQuantType(type) {
            sn_dequantize_kquant(kernel, source.assumingMemoryBound(to: UInt8.self), Int32(count / 256), out)
            return true
        }
        if let kernel = q32Type(type) {
            sn_dequantize_q32(kernel, source.assumingMemoryBound(to: UInt8.self), Int32(count / 32), out)
            return true
        }
        return false
    }

    /// Floats to F16 bits (ties to even) and back.
    public static func toHalf(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt16>, count: Int) {
        sn_f32_to_f16(x, out, Int32(count))
    }

    public static func fromHalf(_ x: UnsafePointer<UInt16>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        sn_f16_to_f32(x, out, Int32(count))
    }

    /// `VectorOps.swiglu` with the profile's width.
    public static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int,
                              profile: SIMDProfile) {
        sn_swiglu(gate, up, Int32(count), Int32(profile.width))
    }

    /// `Attention.head` with the same arguments; `scratch` holds `Attention.scratchCount` floats.
    public static func attentionHead(query: UnsafePointer<Float>, keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>,
                                     stride: Int, positions: Int, first: Int = 0, headDim: Int, scale: Float, softCap: Float = 0,
                                     order: Attention.DotOrder,
                                     profile: SIMDProfile, scratch: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        sn_attention_head(query, keys, values, stride, Int32(positions), Int32(first), Int32(headDim), scale, softCap,
                          order == .tinyBLAS ? 1 : 0, Int32(profile.width), scratch, out)
    }
}

/// One product of `ThreadPool.multiply`: weight `matrix` against the shared activations, results
/// at `out[t * outStride + r]`.
public struct MatMulJob {
    public let matrix: WeightMatrix
    public let out: UnsafeMutablePointer<Float>
    public let outStride: Int

    public init(_ matrix: WeightMatrix, out: UnsafeMutablePointer<Float>, outStride: Int? = nil) {
        self.matrix = matrix
        self.out = out
        self.outStride = outStride ?? matrix.rows
    }
}

/// A fixed list of matrix products that share their activations (say Q, K and V of one layer),
/// converted once to the C kernels' form so that running it allocates nothing.
public final class MatMulPlan: @unchecked Sendable {
    fileprivate let jobs: UnsafeMutableBufferPointer<sn_matmul_job>
    /// Packed copies this plan made (of matrices that came as ggml rows).
    private var ownedCopies: [UnsafeMutableRawPointer] = []
    /// Blocks per row (all jobs share the activations, hence the column count).
    public let columns: Int

    /// Nil unless every job's matrix has a fast kernel (`FastKernels.supports`) and all take the
    /// same activations (same `columns` and dot-product format). A matrix of a packed type that is
    /// not packed yet (`WeightMatrix.isPacked`) is copied and packed, the copy owned by the plan.
    public init?(_ list: [MatMulJob]) {
        guard let first = list.first, list.allSatisfy({
            FastKernels.supports($0.matrix) && $0.matrix.columns == first.matrix.columns
                && $0.matrix.type.dotType == first.matrix.type.dotType
        }) else { return nil }
        columns = first.matrix.columns
        jobs = .allocate(capacity: list.count)
        for (i, job) in list.enumerated() {
            var base = job.matrix.base
            if !job.matrix.isPacked && FastKernels.packs(job.matrix.type) {
                let bytes = job.matrix.rowBytes * job.matrix.rows
                let copy = UnsafeMutableRawPointer.allocate(byteCount: max(1, bytes), alignment: 64)
                copy.copyMemory(from: job.matrix.base, byteCount: bytes)
                FastKernels.pack(job.matrix, in: copy)
                ownedCopies.append(copy)
                base = UnsafeRawPointer(copy)
            }
            jobs[i] = sn_matmul_job(type: FastKernels.kernelType(job.matrix.type),
                                    w: base.assumingMemoryBound(to: UInt8.self),
                                    row_bytes: job.matrix.rowBytes,
                                    rows: Int32(job.matrix.rows), blocks: Int32(job.matrix.columns / 32),
                                    out: job.out, out_stride: job.outStride)
        }
    }

    deinit {
        jobs.deallocate()
        for p in ownedCopies { p.deallocate() }
    }
}

/// Attention heads to run together, in a buffer allocated once.
public final class AttentionBatch: @unchecked Sendable {
    fileprivate let tasks: UnsafeMutableBufferPointer<sn_attention_task>
    /// Tasks set for the next run.
    public var count = 0
    /// Attention logit soft-capping of every head of the next run (0: none; Gemma 2's
    /// `attn_logit_softcapping`); kept until changed.
    public var softCap: Float = 0

    public init(capacity: Int) {
        tasks = .allocate(capacity: max(1, capacity))
    }

    deinit { tasks.deallocate() }

    public var capacity: Int { tasks.count }

    /// The keys and the number of cached positions of head `i` (below `count`): what a modeled
    /// backend needs to account for the bytes the head reads. Not used by the compute path.
    public func member(_ i: Int) -> (keys: UnsafePointer<UInt16>, positions: Int) {
        precondition(i >= 0 && i < count, "attention batch member \(i) of \(count)")
        return (tasks[i].keys, Int(tasks[i].positions))
    }

    /// Runs the tasks with the Swift reference (`Attention.head`), one after another, and empties
    /// the batch: the path on CPUs without the C kernels.
    public func runReference(stride: Int, headDim: Int, scale: Float, profile: SIMDProfile,
                             scratch: UnsafeMutablePointer<Float>) {
        for i in 0 ..< count {
            let t = tasks[i]
            Attention.head(query: t.query, keys: t.keys, values: t.values, stride: stride, positions: Int(t.positions),
                           first: Int(t.first), headDim: headDim, scale: scale, softCap: softCap,
                           order: t.tiny != 0 ? .tinyBLAS : .vecDotF16,
                           profile: profile, scratch: scratch, out: t.out)
        }
        count = 0
    }

    /// Appends one head: the attention of `query` over `positions` cached positions into `out`,
    /// those before `first` masked (a sliding window).
    @inline(__always)
    public func append(query: UnsafePointer<Float>, keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>,
                       positions: Int, first: Int = 0, order: Attention.DotOrder, out: UnsafeMutablePointer<Float>) {
        precondition(count < tasks.count, "attention batch overflow")
        tasks[count] = sn_attention_task(query: query, keys: keys, values: values, positions: Int32(positions),
                                         tiny: order == .tinyBLAS ? 1 : 0, out: out, first: Int32(first))
        count += 1
    }
}

/// `ThreadPool.forEach`'s closure, for the members to borrow.
private final class ForEachBody {
    let body: (Int, Int) -> Void
    init(_ body: @escaping (Int, Int) -> Void) { self.body = body }
}

/// A fixed team of `size` threads (the caller's included) for the transformer's data-parallel
/// operations. Idle members spin for at most 0.2 ms, then sleep: an idle pool takes no CPU.
/// One caller at a time (the engine that owns it).
public final class ThreadPool: @unchecked Sendable {
    private let pool: OpaquePointer?
    /// Members, the caller's thread included.
    public let size: Int

    /// A pool of `threads` members, or of one (the caller) if threads cannot be made.
    public init(threads: Int) {
        pool = FastKernels.available && threads > 1 ? sn_pool_create(Int32(threads)) : nil
        size = pool.map { Int(sn_pool_size($0)) } ?? 1
    }

    deinit { sn_pool_destroy(pool) }

    /// Runs `plan` against `count` activations already quantized (by `FastKernels.quantize`) at
    /// `activations`, `activationStride` bytes apart; rows are split among the members.
    public func multiply(_ plan: MatMulPlan, activations: UnsafeRawPointer, activationStride: Int, count: Int) {
        sn_pool_matmul(pool, plan.jobs.baseAddress, Int32(plan.jobs.count),
                       activations.assumingMemoryBound(to: UInt8.self), activationStride, Int32(count))
    }

    /// `Q4_1Groups.multiplyDirect` for every row of `plan` (packed Q4_1 matrices only): activation
    /// `t < count`'s outputs go to row `firstActivation + t` of each job's output; rows are split
    /// among the members in chunks, as `multiply` splits them.
    public func multiplyQ4_1Direct(_ plan: MatMulPlan, firstActivation: Int, activations: UnsafeRawPointer, activationStride: Int,
                                   scales: UnsafePointer<Float>, scalesStride: Int, count: Int) {
        precondition(plan.jobs.allSatisfy { $0.type == Int32(SN_Q4_1) })
        sn_pool_q4_1_direct(pool, plan.jobs.baseAddress, Int32(plan.jobs.count), Int32(firstActivation),
                            activations.assumingMemoryBound(to: UInt8.self), activationStride, scales, scalesStride, Int32(count))
    }

    /// Calls `body(index, member)` once for every `index < count`, spread over the members (each
    /// takes the next index when it is free); `member` (below `size`) names the calling member, for
    /// its own scratch. Returns when every call has returned.
    /// The closure reaches the members in a box they borrow: called through a pointer to the closure
    /// itself, every call retained and released its context, an atomic on a line both cores write
    /// (2.7% of `serve`'s time at 16 streams, `perf`).
    public func forEach(_ count: Int, _ body: (_ index: Int, _ member: Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            let box = ForEachBody(body)
            withExtendedLifetime(box) {
                sn_pool_for(pool, Int32(count), { context, index, member in
                    Unmanaged<ForEachBody>.fromOpaque(context!)._withUnsafeGuaranteedRef { $0.body(Int(index), Int(member)) }
                }, Unmanaged.passUnretained(box).toOpaque())
            }
        }
    }

    /// Runs the batch's heads (sharing `stride`, `headDim`, `scale` and the profile) and empties it;
    /// `scratch` holds `size * scratchPerMember` floats, `scratchPerMember >=
    /// Attention.scratchCount(positions:headDim:)` for the longest head.
    public func attention(_ batch: AttentionBatch, stride: Int, headDim: Int, scale: Float, profile: SIMDProfile,
                          scratch: UnsafeMutablePointer<Float>, scratchPerMember: Int) {
        sn_pool_attention(pool, batch.tasks.baseAddress, Int32(batch.count), stride, Int32(headDim), scale,
                          batch.softCap, Int32(profile.width), scratch, scratchPerMember)
        batch.count = 0
    }
}
