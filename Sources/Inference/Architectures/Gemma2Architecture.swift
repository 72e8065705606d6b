import Generation
import ModelFormat

/// `gemma2`: the embedding scaled by `sqrt(n_embd)`, NeoX RoPE, GeGLU (tanh GELU), RMS norms after
/// attention and feed-forward as well as before, attention scores soft-capped
/// (`attn_logit_softcapping`, default 50) and logits too (`final_logit_softcapping`, default 30),
/// queries scaled before attention, a sliding window (`attention.sliding_window`, default 4096) on
/// every other layer (pattern 2: even layers local), the output tied to the embedding.
public enum Gemma2Architecture: TransformerArchitecture {
    public static let name = "gemma2"

    public static func traits(_ file: GGUFFile, _ c: LlamaConfig) throws(InferenceError) -> ArchitectureTraits {
        var t = ArchitectureTraits()
        t.ropeStyle = .neox
        t.activation = .geluTanh
        t.postNorms = true
        t.outputAlwaysTied = true
        t.embeddingScale = Float(c.embeddingLength).squareRoot()
        t.queryScale = Architectures.gemmaQueryScale(c, is27B: c.layerCount == 46)
        t.attentionSoftCap = try file.optionalFloat("gemma2.attn_logit_softcapping", in: 1e-3 ... 1e6) ?? 50
        t.finalSoftCap = try file.optionalFloat("gemma2.final_logit_softcapping", in: 1e-3 ... 1e6) ?? 30
        let window = try file.optionalInt("gemma2.attention.sliding_window", in: 1 ... 1 << 24) ?? 4096
        t.slidingWindow = try checkedWindow(window, "gemma2", c)
        t.slidingWindowLayers = try Architectures.slidingWindowLayers(file, c, defaultPeriod: 2)
        t.localRopeBase = try file.optionalFloat("gemma2.rope.freq_base_swa", in: 1 ... 1e12) ?? c.ropeFreqBase
        t.localRopeScale = c.ropeFreqScale
        return t
    }

    /// A window wider than the model's context is inconsistent metadata (a crafted file), refused.
    static func checkedWindow(_ window: Int, _ arch: String, _ c: LlamaConfig) throws(InferenceError) -> Int {
        guard window <= c.contextLength else {
            throw InferenceError(.invalidMetadata,
                                 "\(arch).attention.sliding_window (\(window)) is larger than \(arch).context_length (\(c.contextLength))")
        }
        return window
    }
}
