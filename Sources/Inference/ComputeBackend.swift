import Kernels

/// The operations of the transformer that a compute backend runs. The engine (`LlamaEngine`) runs
/// every forward pass through one backend; the cheap per-token vector steps (RMSNorm, RoPE,
/// residual adds, embedding lookup) stay on the host.
public enum BackendOperation: String, Sendable, CaseIterable, Codable {
    /// Quantized matrix products (`Projection`).
    case matmul
    /// Causal attention over the F16 KV cache.
    case attention
    /// SwiGLU gating of the feed-forward block.
    case swiglu
    /// Writing keys and values into the F16 cache.
    case kvStore
}

/// Where a backend's tensors live.
public enum TensorLocation: String, Sendable, Codable {
    /// In host memory, computed by the host's cores.
    case host
    /// In the device's own memory, reached over a host link (PCIe, NVLink-C2C).
    case device
}

/// What a backend can do: the engine refuses a model whose tensors a backend cannot compute.
public struct BackendCapabilities: Sendable, Equatable {
    public var operations: Set<BackendOperation>
    /// Weight formats its matrix products take natively.
    public var weightTypes: Set<BlockType>
    public var tensorLocation: TensorLocation
    /// Threads (or streams) it computes with.
    public var parallelism: Int

    public init(operations: Set<BackendOperation>, weightTypes: Set<BlockType>, tensorLocation: TensorLocation, parallelism: Int) {
        self.operations = operations
        self.weightTypes = weightTypes
        self.tensorLocation = tensorLocation
        self.parallelism = parallelism
    }
}

/// A group of matrix products that read the same input (Q, K and V; gate and up), prepared once:
/// each matrix writes `out[t * rows + r]` into its own output buffer.
public final class Projection: @unchecked Sendable {
    public let matrices: [WeightMatrix]
    public let outputs: [UnsafeMutablePointer<Float>]
    /// Input width shared by every matrix.
    public let columns: Int
    /// The format the input is quantized to before the products (the matrices' `dotType`).
    public let activationFormat: BlockType
    /// The C kernels' plan, when every matrix has a fast kernel on this CPU.
    public let plan: MatMulPlan?

    /// Nil if the matrices do not share their input width and activation format, or if they mix
    /// packed matrices (`WeightMatrix.isPacked`, which only the C kernels read) with matrices that
    /// have no C kernel: such a group must run as one projection per matrix.
    public init?(_ matrices: [WeightMatrix], outputs: [UnsafeMutablePointer<Float>]) {
        guard let first = matrices.first, matrices.count == outputs.count,
              matrices.allSatisfy({ $0.columns == first.columns && $0.type.dotType == first.type.dotType }) else { return nil }
        self.matrices = matrices
        self.outputs = outputs
        columns = first.columns
        activationFormat = first.type.dotType
        plan = MatMulPlan(zip(matrices, outputs).map { MatMulJob($0, out: $1) })
        if plan == nil && matrices.contains(where: \.isPacked) { return nil }
    }

    /// Multiply-accumulates per input vector (`sum rows * columns`).
    public var multiplyAccumulates: Int { matrices.reduce(0) { $0 + $1.rows * $1.columns } }
    /// Bytes of weights read per pass.
    public var weightBytes: Int { matrices.reduce(0) { $0 + $1.rows * $1.rowBytes } }
}

/// A compute backend: the CPU (`CPUBackend`, real), or a modeled accelerator that computes on
/// the host and reports the time its target would take.
///
/// Buffers are host pointers valid for the duration of a call; a device backend copies what it
/// needs (and accounts for the link). Calls are made from one thread at a time; `synchronize`
/// returns once every submitted operation has finished (the CPU backend is synchronous).
public protocol ComputeBackend: AnyObject {
    /// Short name (`cpu`, `bluefield-3`, ...).
    var name: String { get }
    var capabilities: BackendCapabilities { get }

    /// Called once per projection when an engine is built (a device backend makes the weights resident).
    func prepare(_ projection: Projection)

    /// `count` input vectors of `projection.columns` floats at `input` (stride `columns`) through
    /// every matrix of `projection`. `scratch` holds at least
    /// `projection.activationFormat.rowBytes(columns) * count` bytes.
    func project(_ projection: Projection, input: UnsafePointer<Float>, count: Int, scratch: UnsafeMutableRawPointer)

    /// `project` in single precision, for a prompt batch (`PrefillMode.blas`): the weights
    /// dequantized to F32 and multiplied by the F32 input (no activation quantization), so results
    /// are within a tolerance of `project`'s, not equal. Returns false, having done nothing, when the
    /// backend has no such path (the default); the engine then calls `project`.
    func projectInFloat(_ projection: Projection, input: UnsafePointer<Float>, count: Int) -> Bool

    /// `project` for rows `first ..< first + count` of a pass, all of them prompt rows (`PrefillMode.blas`
    /// only, never decoding rows): `input` is row `first`'s, the outputs go to those rows. Where the
    /// backend has faster products within the tolerance of `project`'s that still compute every row
    /// independently of the others (the CPU's `Q4_1Groups`), it runs them and returns true; otherwise
    /// false, having done nothing (the default), and the engine calls `project`.
    func projectPromptRows(_ projection: Projection, input: UnsafePointer<Float>, first: Int, count: Int) -> Bool

    /// Whether `projectInFloat` leaves products with `matrix` on the exact kernels in a pass of
    /// `rows` rows because those are faster there (`PrefillMode.keepsExactKernels`). A BLAS pass
    /// whose products all stay exact keeps its attention exact too below
    /// `PrefillMode.gemmAttentionMinimumPositions`. Default false.
    func keepsExact(_ matrix: WeightMatrix, rows: Int) -> Bool

    /// Runs (and empties) a batch of attention heads over F16 caches with KV row stride `stride`.
    /// `scratch` holds `scratchPerMember * capabilities.parallelism` floats.
    func attention(_ batch: AttentionBatch, stride: Int, headDim: Int, scale: Float, profile: SIMDProfile,
                   scratch: UnsafeMutablePointer<Float>, scratchPerMember: Int)

    /// Attention of `count` consecutive rows of one sequence (positions `position ..< position +
    /// count`, queries and outputs `[row][heads * headDim]`) over one layer's F16 cache rows, in
    /// single precision as matrix products (`GEMMAttention`), for a prompt batch
    /// (`PrefillMode.blas`): within a tolerance of `attention`, not equal. Returns false, having
    /// done nothing, when the backend has no such path (the default); the engine then calls `attention`.
    func attentionInFloat(queries: UnsafePointer<Float>, count: Int, position: Int, keys: UnsafePointer<UInt16>,
                          values: UnsafePointer<UInt16>, shape: GEMMAttention.Shape, out: UnsafeMutablePointer<Float>) -> Bool

    /// `gate[i] = silu(gate[i]) * up[i]` for `rows` rows of `width` floats.
    func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, rows: Int, width: Int, profile: SIMDProfile)

    /// Stores `count` floats as F16 at `destination`.
    func storeHalf(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<UInt16>, count: Int)

    /// Waits for every submitted operation.
    func synchronize()
}

extension ComputeBackend {
    /// No single-precision path: the engine stays on `project`.
    public func projectInFloat(_ projection: Projection, input: UnsafePointer<Float>, count: Int) -> Bool { false }

    /// No prompt-row products: the engine stays on `project`.
    public func projectPromptRows(_ projection: Projection, input: UnsafePointer<Float>, first: Int, count: Int) -> Bool { false }

    /// No single-precision path, so nothing kept exact in its place.
    public func keepsExact(_ matrix: WeightMatrix, rows: Int) -> Bool { false }

    /// No single-precision attention: the engine stays on `attention`.
    public func attentionInFloat(queries: UnsafePointer<Float>, count: Int, position: Int, keys: UnsafePointer<UInt16>,
                                 values: UnsafePointer<UInt16>, shape: GEMMAttention.Shape, out: UnsafeMutablePointer<Float>) -> Bool {
        false
    }
}

/// The host CPU: the C kernels (AVX2/FMA/F16C) on a thread pool where the CPU has them, the Swift
/// reference kernels otherwise. Bit-identical either way. Prompt batches may instead run in F32
/// through OpenBLAS on the same pool (`projectInFloat`, `BLASProjector`; attention as matrix
/// products, `attentionInFloat`, `GEMMAttention`), and Q4_1 prompt rows in integer groups
/// (`projectPromptRows`, `PromptRowProjector`), when the engine's `PrefillMode` asks for it.
public final class CPUBackend: ComputeBackend {
    public let name = "cpu"
    public let pool: ThreadPool
    public let capabilities: BackendCapabilities
    private let blas: BLASProjector
    private let promptRows: PromptRowProjector
    private let gemmAttention: GEMMAttention
    /// Batches of at least this many rows quantize their activations and gate their feed-forward
    /// rows on every member of the pool; smaller ones on the caller (a pool job costs about a row).
    public static let parallelRowsMinimum = 4
    /// Whether BLAS passes leave the products of types with a faster exact prompt GEMM on it
    /// (`PrefillMode.keepsExactKernels`; default true). False sends every product of a BLAS pass
    /// through F32 and OpenBLAS, as on a CPU without AVX512-VNNI (Q4_K and Q6_K included: no
    /// `KQuantGroups` either): for tests and benchmarks of that path.
    public var keepsExactPromptGEMMs = true {
        didSet { blas.kQuantGroups = keepsExactPromptGEMMs && KQuantGroups.available }
    }

    /// Whether prompt rows of Q4_1 projections take `Q4_1Groups` (`projectPromptRows`; default: where
    /// the machine has them, `Q4_1Groups.enabledByDefault`). False keeps them on the exact kernels, for
    /// tests and benchmarks.
    public var groupsPromptRows = Q4_1Groups.enabledByDefault

    public init(threads: Int) {
        pool = ThreadPool(threads: threads)
        blas = BLASProjector(pool: pool)
        promptRows = PromptRowProjector(pool: pool)
        gemmAttention = GEMMAttention(pool: pool)
        capabilities = BackendCapabilities(
            operations: Set(BackendOperation.allCases),
            weightTypes: [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K],
            tensorLocation: .host, parallelism: pool.size)
    }

    public func prepare(_ projection: Projection) {}

    public func project(_ p: Projection, input: UnsafePointer<Float>, count: Int, scratch: UnsafeMutableRawPointer) {
        if let plan = p.plan {
            let stride = p.activationFormat.rowBytes(p.columns) ?? 0
            if count >= Self.parallelRowsMinimum && pool.size > 1 {
                // Each row's quantization is the same on any thread: spread them over the pool.
                pool.forEach(count) { t, _ in
                    FastKernels.quantize(input + t * p.columns, columns: p.columns, count: 1, to: p.activationFormat,
                                         into: scratch + t * stride)
                }
            } else {
                FastKernels.quantize(input, columns: p.columns, count: count, to: p.activationFormat, into: scratch)
            }
            pool.multiply(plan, activations: scratch, activationStride: p.activationFormat.rowBytes(p.columns) ?? 0, count: count)
            return
        }
        MatMul.quantize(input, count: count, for: p.matrices[0], into: scratch)
        for (w, out) in zip(p.matrices, p.outputs) {
            MatMul.multiply(w, quantized: scratch, count: count, into: out, threads: pool.size)
        }
    }

    public func projectInFloat(_ p: Projection, input: UnsafePointer<Float>, count: Int) -> Bool {
        // Exact prompt GEMMs that beat BLAS (PrefillMode.keepsExactKernels): the engine calls `project`.
        if p.plan != nil && p.matrices.allSatisfy({ keepsExact($0, rows: count) }) { return false }
        blas.project(p, input: input, count: count)
        return true
    }

    public func projectPromptRows(_ p: Projection, input: UnsafePointer<Float>, first: Int, count: Int) -> Bool {
        guard groupsPromptRows && PromptRowProjector.supports(p) else { return false }
        promptRows.project(p, input: input, first: first, count: count)
        return true
    }

    public func keepsExact(_ matrix: WeightMatrix, rows: Int) -> Bool {
        keepsExactPromptGEMMs && PrefillMode.keepsExactKernels(matrix.type, rows: rows)
    }

    public func attentionInFloat(queries: UnsafePointer<Float>, count: Int, position: Int, keys: UnsafePointer<UInt16>,
                                 values: UnsafePointer<UInt16>, shape: GEMMAttention.Shape, out: UnsafeMutablePointer<Float>) -> Bool {
        gemmAttention.run(queries: queries, count: count, position: position, keys: keys, values: values, shape: shape, out: out)
        return true
    }

    public func attention(_ batch: AttentionBatch, stride: Int, headDim: Int, scale: Float, profile: SIMDProfile,
                          scratch: UnsafeMutablePointer<Float>, scratchPerMember: Int) {
        if FastKernels.available {
            pool.attention(batch, stride: stride, headDim: headDim, scale: scale, profile: profile,
                           scratch: scratch, scratchPerMember: scratchPerMember)
        } else {
            batch.runReference(stride: stride, headDim: headDim, scale: scale, profile: profile, scratch: scratch)
        }
    }

    public func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, rows: Int, width: Int, profile: SIMDProfile) {
        if FastKernels.available && rows >= Self.parallelRowsMinimum && pool.size > 1 {
            pool.forEach(rows) { t, _ in FastKernels.swiglu(gate + t * width, up + t * width, count: width, profile: profile) }
            return
        }
        for t in 0 ..< rows {
            if FastKernels.available {
                FastKernels.swiglu(gate + t * width, up + t * width, count: width, profile: profile)
            } else {
                VectorOps.swiglu(gate + t * width, up + t * width, count: width, profile: profile)
            }
        }
    }

    public func storeHalf(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<UInt16>, count: Int) {
        if FastKernels.available {
            FastKernels.toHalf(source, destination, count: count)
        } else {
            for i in 0 ..< count { destination[i] = Half.bits(source[i]) }
        }
    }

    public func synchronize() {}
}
