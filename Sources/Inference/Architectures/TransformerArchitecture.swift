import Generation
import ModelFormat

/// One `general.architecture` this engine runs: its name and how its block differs from Llama's,
/// read from the GGUF's own keys (`{arch}.…`) as llama.cpp reads them. Each architecture is one
/// small type in its own file; the forward pass (`LlamaEngine`) is shared and takes the
/// differences as `ArchitectureTraits` hooks.
public protocol TransformerArchitecture {
    /// `general.architecture` (`llama`, `qwen2`, ...).
    static var name: String { get }
    /// The traits of a model of this architecture whose common hyperparameters are `config`
    /// (already read and validated). Throws naming the key at fault.
    static func traits(_ file: GGUFFile, _ config: LlamaConfig) throws(InferenceError) -> ArchitectureTraits
}

/// The architectures this engine runs.
public enum Architectures {
    nonisolated(unsafe) public static let all: [any TransformerArchitecture.Type] = [
        LlamaArchitecture.self, Qwen2Architecture.self, Qwen3Architecture.self, Phi3Architecture.self,
        Gemma2Architecture.self, Gemma3Architecture.self,
    ]

    /// The architecture named `name`, or nil.
    public static func named(_ name: String) -> (any TransformerArchitecture.Type)? {
        all.first { $0.name == name }
    }

    /// Which layers use the sliding window: llama.cpp's `load_swa_pattern` (the
    /// `{arch}.attention.sliding_window_pattern` key, an array of bools per layer or a period `n`
    /// whose last layer of every `n` is global, default `defaultPeriod`).
    static func slidingWindowLayers(_ file: GGUFFile, _ c: LlamaConfig, defaultPeriod: Int) throws(InferenceError) -> [Bool] {
        let key = "\(c.architecture).attention.sliding_window_pattern"
        if let array = file.array(key) {
            guard let flags = try? array.bools(), flags.count >= c.layerCount else {
                throw InferenceError(.invalidMetadata, "\(key) must be an integer or \(c.layerCount) bools")
            }
            return Array(flags.prefix(c.layerCount))
        }
        let period = try file.optionalInt(key, in: 0 ... 4096) ?? defaultPeriod
        return (0 ..< c.layerCount).map { period == 0 || $0 % period < period - 1 }
    }

    /// `1 / sqrt(key_length)`, or `1 / sqrt(n_embd / n_head)` for the 27B Gemma shapes (llama.cpp's
    /// `f_attention_scale` for Gemma 2 and 3, after gemma_pytorch).
    static func gemmaQueryScale(_ c: LlamaConfig, is27B: Bool) -> Float {
        is27B ? 1 / Float(c.embeddingLength / c.headCount).squareRoot() : 1 / Float(c.headDimension).squareRoot()
    }
}

/// How an architecture's forward pass differs from Llama's. The defaults are Llama's.
public struct ArchitectureTraits: Sendable, Equatable {
    /// Which pairs RoPE rotates.
    public enum RopeStyle: Sendable, Equatable {
        /// Adjacent pairs (`x[2i], x[2i+1]`): ggml's "normal" RoPE (Llama).
        case normal
        /// Halves (`x[i], x[i + dims/2]`): `GGML_ROPE_TYPE_NEOX` (Qwen, Phi-3, Gemma).
        case neox
    }

    /// The feed-forward gate's activation.
    public enum Activation: Sendable, Equatable {
        /// SwiGLU (`silu(gate) * up`).
        case silu
        /// GeGLU with the tanh-approximated GELU, as ggml computes it (`VectorOps.geglu`).
        case geluTanh
    }

    public var ropeStyle = RopeStyle.normal
    public var activation = Activation.silu
    /// Per-head RMS norms of queries and keys (`attn_q_norm`, `attn_k_norm`), before RoPE.
    public var queryKeyNorm = false
    /// RMS norms of the attention and feed-forward outputs before each residual add
    /// (`post_attention_norm`, `post_ffw_norm`).
    public var postNorms = false
    /// Fused `attn_qkv` and a `ffn_up` of twice the width (gate then up) may replace the separate
    /// matrices (Phi-3).
    public var fusedProjections = false
    /// The output projection is always the embedding (`output.weight` must be absent: Gemma 2).
    public var outputAlwaysTied = false
    /// The embedding is multiplied by this (`sqrt(n_embd)` for Gemma).
    public var embeddingScale: Float?
    /// Queries are multiplied by this before attention, whose own scale is then 1 (Phi-3, Gemma).
    public var queryScale: Float?
    /// `tanh(kq / cap) * cap` on every attention score (Gemma 2).
    public var attentionSoftCap: Float?
    /// `tanh(logit / cap) * cap` on every output logit (Gemma 2, some Gemma 3).
    public var finalSoftCap: Float?
    /// Positions a sliding-window layer attends to: its own and the `window - 1` before it.
    public var slidingWindow: Int?
    /// Per layer, whether it uses the sliding window (empty: none does).
    public var slidingWindowLayers: [Bool] = []
    /// RoPE base and scale of the sliding-window layers (llama.cpp's `rope_freq_base_train_swa`).
    public var localRopeBase: Float?
    public var localRopeScale: Float = 1

    public init() {}

    /// Whether layer `l` attends through the sliding window.
    @inline(__always)
    public func isSlidingWindow(_ l: Int) -> Bool {
        slidingWindow != nil && l < slidingWindowLayers.count && slidingWindowLayers[l]
    }
}
