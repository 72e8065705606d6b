import GGUFTestSupport
import ModelFormat
@testable import Generation

/// A 10-token byte-level vocabulary with two merges and ChatML control tokens, as GGUF metadata
/// only (no tensors): the tokenizer tests that do not need the real model.
enum TinyVocabulary {
    static let tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "ab", "Ġ", "Ġa", "c", "\n"]

    static func file() throws -> GGUFFile {
        var b = GGUFBuilder()
        b.add("tokenizer.ggml.model", .string("gpt2"))
        b.add("tokenizer.ggml.pre", .string("smollm"))
        b.add("tokenizer.ggml.tokens", .strings(tokens))
        b.add("tokenizer.ggml.token_type", .int32s([3, 3, 3, 1, 1, 1, 1, 1, 1, 1]))
        b.add("tokenizer.ggml.merges", .strings(["a b", "Ġ a"]))
        b.add("tokenizer.ggml.eos_token_id", .uint32(2))
        b.add("tokenizer.ggml.add_bos_token", .bool(false))
        return try parse(b.build())
    }

    static func tokenizer() throws -> Tokenizer { try Tokenizer(file: file()) }
}
