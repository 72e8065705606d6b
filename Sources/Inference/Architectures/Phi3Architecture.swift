import Generation
import ModelFormat

/// `phi3` (Phi-3, Phi-3.5, Phi-4 mini): NeoX RoPE, a fused `attn_qkv` (or separate Q/K/V), a fused
/// `ffn_up` of twice the feed-forward width (gate rows first, then up: ggml's `swiglu` of one
/// tensor), queries scaled by `1/sqrt(head_dim)` before attention. llama.cpp ignores Phi-3's
/// sliding window, and so does this engine. LongRoPE (`rope_factors_long/short`, the 128k models)
/// is refused.
public enum Phi3Architecture: TransformerArchitecture {
    public static let name = "phi3"

    public static func traits(_ file: GGUFFile, _ config: LlamaConfig) throws(InferenceError) -> ArchitectureTraits {
        for tensor in ["rope_factors_long.weight", "rope_factors_short.weight"] where file.tensor(named: tensor) != nil {
            throw InferenceError(.invalidTensor, "phi3: tensor \"\(tensor)\" (LongRoPE, the 128k-context models) is not supported")
        }
        var t = ArchitectureTraits()
        t.ropeStyle = .neox
        t.fusedProjections = true
        t.queryScale = 1 / Float(config.headDimension).squareRoot()
        return t
    }
}
