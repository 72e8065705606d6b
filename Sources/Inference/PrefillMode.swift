import Kernels

/// How an engine multiplies prompt batches.
///
/// - `exact`: every matrix product, at every batch size, runs the bit-exact kernels (activations
///   quantized as llama.cpp does; the same bits as llama.cpp's CPU backend).
/// - `blas(minimumRows:)`: a forward pass of at least `minimumRows` rows (a prompt, or a prompt
///   chunk) dequantizes the weights to F32 tile by tile and multiplies them with OpenBLAS `sgemm`,
///   the activations left in F32, as llama.cpp's own BLAS backend does. Results are then within a
///   tolerance of llama.cpp's, not identical (`ReferenceModelTests`: `blasPrefillTolerance`).
///   Smaller passes (decoding, short prompts) stay exact.
public enum PrefillMode: Sendable, Equatable, CustomStringConvertible {
    case exact
    case blas(minimumRows: Int)

    /// The prompt batch size from which BLAS is faster than the exact kernels, measured on this
    /// machine kind (2 cores, AVX-512 EPYC, OpenBLAS 0.3.21 SkylakeX; `bench/blas-threshold.sh`,
    /// `bench/results/blas-threshold.md`).
    public static let measuredMinimumRows = 64

    /// Whether a BLAS pass keeps the matrix products of `type` on the exact kernels anyway: true
    /// where an exact prompt GEMM is faster than dequantizing to F32 for `sgemm` (Q4_K and Q6_K
    /// with AVX512-VNNI, `FastKernels.hasExactPromptGEMM`; measured in bench/results/kquant-gemm.md).
    /// The attention of such a pass stays on GEMM attention.
    public static func keepsExactKernels(_ type: BlockType) -> Bool {
        FastKernels.hasExactPromptGEMM(type)
    }

    /// BLAS above the measured threshold: what the CLI and the service use unless told `--exact` /
    /// `engine.exact: true`.
    public static let `default` = PrefillMode.blas(minimumRows: measuredMinimumRows)

    /// Whether a forward pass of `rows` rows runs in F32 with BLAS.
    @inlinable
    public func usesBLAS(rows: Int) -> Bool {
        switch self {
        case .exact: false
        case let .blas(minimumRows): rows >= minimumRows
        }
    }

    public var isExact: Bool { self == .exact }

    public var description: String {
        switch self {
        case .exact: "exact"
        case let .blas(minimumRows): "blas (batches of \(minimumRows)+ rows)"
        }
    }
}
