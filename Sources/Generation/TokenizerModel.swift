/// The tokenization algorithm of a vocabulary (GGUF `tokenizer.ggml.model`, llama.cpp's
/// `llama_vocab_type`). The `Tokenizer` API is the same for each.
///
/// | `tokenizer.ggml.model` | algorithm | here |
/// |---|---|---|
/// | `gpt2` | byte-level BPE (merge ranks, `tokenizer.ggml.pre` pre-tokenizer) | `.bpe` (`Tokenizer+BPE.swift`) |
/// | `llama` | SentencePiece BPE (token scores, `▁`, `<0xXX>` byte fallback) | `.sentencePiece` (`SentencePiece.swift`) |
/// | `bert` (WPM), `t5` (UGM), `rwkv`, `plamo2`, `gemma4`, `none`, others | — | refused, naming the model |
public enum TokenizerModel: Sendable {
    case bpe
    case sentencePiece(SentencePiece)

    /// Which algorithm a `tokenizer.ggml.model` name selects.
    enum Kind: Equatable {
        case bpe
        case sentencePiece

        /// Refuses, naming the model, any name but `gpt2` and `llama`.
        init(name: String?) throws(InferenceError) {
            switch name {
            case "gpt2": self = .bpe
            case "llama": self = .sentencePiece
            default:
                let known: [String: String] = [
                    "bert": "WordPiece (WPM)", "t5": "Unigram (UGM)", "rwkv": "RWKV", "plamo2": "PLaMo-2",
                    "gemma4": "Gemma 4 BPE", "no_vocab": "no vocabulary", "none": "no vocabulary",
                ]
                let described = name.map { "\"\($0)\"" + (known[$0].map { " (\($0))" } ?? "") } ?? "absent"
                throw InferenceError(.invalidVocabulary,
                                     "unsupported tokenizer model: tokenizer.ggml.model is \(described); supported are \"gpt2\" (byte-level BPE) and \"llama\" (SentencePiece)")
            }
        }
    }
}
