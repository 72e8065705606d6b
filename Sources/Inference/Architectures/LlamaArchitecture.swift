import Generation
import ModelFormat

/// `llama`: Llama 2 and 3.x (llama3 RoPE frequency factors in `rope_freqs.weight`), Mistral,
/// TinyLlama, SmolLM. The reference block: RMSNorm, adjacent-pair RoPE, SwiGLU, optional Q/K/V
/// biases, an optional (else tied) `output.weight`.
public enum LlamaArchitecture: TransformerArchitecture {
    public static let name = "llama"

    public static func traits(_ file: GGUFFile, _ config: LlamaConfig) throws(InferenceError) -> ArchitectureTraits {
        if let experts = try file.optionalInt("llama.expert_count", in: 0 ... 1 << 16), experts > 0 {
            throw InferenceError(.invalidMetadata, "llama.expert_count is \(experts): mixture-of-experts Llama models (Mixtral) are not supported")
        }
        return ArchitectureTraits()
    }
}
