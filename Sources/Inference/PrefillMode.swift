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
    /// where an exact prompt GEMM is faster than dequantizing to F32 for `sgemm` (Q4_1, Q4_K and
    /// Q6_K with AVX512-VNNI, Q4_0 with AVX2 or VNNI, `FastKernels.hasExactPromptGEMM`; measured in
    /// bench/results/kquant-gemm.md, blas-threshold-q4_0.md and blas-threshold-avx2-q4_0.md). A
    /// pass whose products all stay exact keeps exact attention too, below
    /// `gemmAttentionMinimumPositions`.
    /// On a CPU without AVX512-VNNI, also Q4_1 in passes of fewer than `avx2Q4_1ExactBelowRows`
    /// rows: its AVX2 multi-row kernels beat dequantize + sgemm there (below).
    /// Not Q4_K or Q6_K where `KQuantGroups` exist (AVX512-VNNI): those grouped integer products,
    /// within the BLAS path's tolerance, run 1.5x (Q4_K) and 1.3-1.5x (Q6_K) the exact GEMM at 64
    /// rows, 1.8-2x at 320 (bench/results/kquant-groups.md), so a BLAS pass takes them.
    public static func keepsExactKernels(_ type: BlockType, rows: Int) -> Bool {
        if KQuantGroups.supports(type) { return false }
        if FastKernels.hasExactPromptGEMM(type) { return true }
        return type == .q4_1 && rows < avx2Q4_1ExactBelowRows && FastKernels.machineInstructionSet == .avx2
    }

    /// On a CPU with AVX2 and no AVX512-VNNI, the pass size from which dequantizing Q4_1 for
    /// OpenBLAS beats its exact AVX2 kernels: measured on a 2-core AVX2-only EPYC (OpenBLAS "Zen"
    /// kernels; `bench/results/blas-threshold-avx2.md`): SmolLM2-135M Q4_1, BLAS/exact 0.56x at 32
    /// tokens, 0.78x at 64, 0.91x at 128, 1.11x at 256, 1.06x at 512. Q4_0 stays exact at every size
    /// there (BLAS 0.46-0.85x up to 512). Q5_0 and Q4_K_M gain from BLAS from 32 tokens on (1.68x
    /// and 1.37x at 64; `blas-threshold-avx2-{q5_0,q4_k_m}.md`), so they keep `measuredMinimumRows`.
    public static let avx2Q4_1ExactBelowRows = 256

    /// In a BLAS pass whose matrix products all stay on the exact kernels (`keepsExactKernels`), the
    /// fewest attended positions (the pass's last position + 1) from which its attention runs as
    /// matrix products (`GEMMAttention`); below it the pass is exact from end to end, the same bits as
    /// llama.cpp's. Measured with exact products (`bench/gemm-attention.sh`,
    /// `bench/results/gemm-attention-exact-products.md`): on SmolLM2-135M Q4_1 the exact attention
    /// kernels are faster up to 256 positions (1.09-1.20x), even at 512, slower from 1,024 (GEMM 1.13x
    /// there, 1.63x at 2,048); on Llama-3.2-1B shapes Q4_K_M exact attention at 512 positions cost 9%
    /// of pp512. Passes with F32 products keep GEMM attention at every length (1.27x already at 128).
    public static let gemmAttentionMinimumPositions = 512

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
