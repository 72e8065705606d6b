/// How a session computes its decoding rows (`LlamaSession.decodesAsPromptRows`), as `generate`'s
/// and `bench-engine`'s `--decoding` and the service's `limits.decoding` name it.
public enum Decoding: String, Sendable, CaseIterable {
    /// llama.cpp's one-token kernels, bit for bit (with an exact engine: llama.cpp's whole output).
    case oneToken = "one-token"
    /// Each token as the last row of a prompt holding the text so far (the prompt rows' kernels):
    /// the answer depends only on its text, and concurrent decoding rows take the prompt rows'
    /// faster products.
    case promptRows = "prompt-rows"
}
