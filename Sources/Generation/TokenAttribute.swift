/// What a vocabulary entry is, from `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
public enum TokenAttribute: Int32, Sendable {
    case undefined = 0
    /// Ordinary text, written in the byte-level alphabet.
    case normal = 1
    case unknown = 2
    /// Template structure and end markers (`<|im_start|>`): only parsed from text when asked, and
    /// not printed unless asked.
    case control = 3
    /// Added text tokens: always matched in text before BPE, printed as their text.
    case userDefined = 4
    case unused = 5
    /// `<0xXX>` byte-fallback tokens.
    case byte = 6

    /// Matched in raw text before BPE (llama.cpp's special-token cache): control, user-defined
    /// and unknown tokens.
    var isSpecial: Bool { self == .control || self == .userDefined || self == .unknown }
}
