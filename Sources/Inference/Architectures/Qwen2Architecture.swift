import Generation
import ModelFormat

/// `qwen2` (Qwen 1.5, Qwen2, Qwen2.5): the Llama block with NeoX RoPE and biases on Q, K and V
/// (optional, as llama.cpp loads them).
public enum Qwen2Architecture: TransformerArchitecture {
    public static let name = "qwen2"

    public static func traits(_ file: GGUFFile, _ config: LlamaConfig) throws(InferenceError) -> ArchitectureTraits {
        var t = ArchitectureTraits()
        t.ropeStyle = .neox
        return t
    }
}
