import Generation
import ModelFormat

/// `qwen3` (dense Qwen3): NeoX RoPE and per-head RMS norms of Q and K (`attn_q_norm`,
/// `attn_k_norm`, `[key_length]`) before RoPE; no biases.
public enum Qwen3Architecture: TransformerArchitecture {
    public static let name = "qwen3"

    public static func traits(_ file: GGUFFile, _ config: LlamaConfig) throws(InferenceError) -> ArchitectureTraits {
        var t = ArchitectureTraits()
        t.ropeStyle = .neox
        t.queryKeyNorm = true
        return t
    }
}
