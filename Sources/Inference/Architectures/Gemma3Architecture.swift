import Generation
import ModelFormat

/// `gemma3` (text): Gemma 2's block without attention soft-capping, plus per-head RMS norms of Q
/// and K; a sliding window (when `attention.sliding_window` is present) on five layers of every six
/// (`sliding_window_pattern`, default 6), whose RoPE uses `rope.freq_base_swa` (default 10,000,
/// llama.cpp's) and no scaling; the global layers use `rope.freq_base` and the file's linear
/// scaling. Final soft-capping only when the file sets it; `output.weight` optional.
public enum Gemma3Architecture: TransformerArchitecture {
    public static let name = "gemma3"

    public static func traits(_ file: GGUFFile, _ c: LlamaConfig) throws(InferenceError) -> ArchitectureTraits {
        var t = ArchitectureTraits()
        t.ropeStyle = .neox
        t.activation = .geluTanh
        t.postNorms = true
        t.queryKeyNorm = true
        t.embeddingScale = Float(c.embeddingLength).squareRoot()
        t.queryScale = Architectures.gemmaQueryScale(c, is27B: c.layerCount == 62)
        if let cap = try file.optionalFloat("gemma3.final_logit_softcapping", in: 0 ... 1e6), cap > 0 { t.finalSoftCap = cap }
        if let window = try file.optionalInt("gemma3.attention.sliding_window", in: 0 ... 1 << 24), window > 0 {
            t.slidingWindow = try Gemma2Architecture.checkedWindow(window, "gemma3", c)
            t.slidingWindowLayers = try Architectures.slidingWindowLayers(file, c, defaultPeriod: 6)
            t.localRopeBase = try file.optionalFloat("gemma3.rope.freq_base_swa", in: 1 ... 1e12) ?? 10000
            t.localRopeScale = 1
        }
        return t
    }
}
