import GGUFTestSupport
import ModelFormat
@testable import Inference

/// A tiny, valid Llama GGUF built in memory (F32 weights, 1 layer, dim 32, 2 heads, 1 KV head,
/// feed-forward 64, a 10-token byte-level vocabulary), and the knobs the negative tests turn.
struct TinyModel {
    var builder = GGUFBuilder()
    static let tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "ab", "Ġ", "Ġa", "c", "\n"]

    /// `architecture` only renames the keys (`{arch}.block_count`, ...); the tensors are Llama's.
    init(layers: Int = 1, dim: Int = 32, heads: Int = 2, kvHeads: Int = 1, ff: Int = 64, context: Int = 64,
         architecture a: String = "llama") {
        var b = GGUFBuilder()
        b.add("general.architecture", .string(a))
        b.add("\(a).block_count", .uint32(UInt32(layers)))
        b.add("\(a).embedding_length", .uint32(UInt32(dim)))
        b.add("\(a).feed_forward_length", .uint32(UInt32(ff)))
        b.add("\(a).attention.head_count", .uint32(UInt32(heads)))
        b.add("\(a).attention.head_count_kv", .uint32(UInt32(kvHeads)))
        b.add("\(a).rope.freq_base", .float32(10000))
        b.add("\(a).attention.layer_norm_rms_epsilon", .float32(1e-5))
        b.add("\(a).context_length", .uint32(UInt32(context)))
        b.add("tokenizer.ggml.model", .string("gpt2"))
        b.add("tokenizer.ggml.pre", .string("smollm"))
        b.add("tokenizer.ggml.tokens", .strings(Self.tokens))
        b.add("tokenizer.ggml.token_type", .int32s([3, 3, 3, 1, 1, 1, 1, 1, 1, 1]))
        b.add("tokenizer.ggml.merges", .strings(["a b", "Ġ a"]))
        b.add("tokenizer.ggml.eos_token_id", .uint32(2))
        b.add("tokenizer.ggml.add_bos_token", .bool(false))
        b.add("tokenizer.chat_template", .string("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"))
        let v = Self.tokens.count, hd = dim / heads
        func weights(_ count: Int, seed: Int) -> [UInt8] {
            (0 ..< count).flatMap { i -> [UInt8] in
                let value = Float((i * 7919 + seed * 104_729) % 97) / 97 - 0.5
                return withUnsafeBytes(of: (value * 0.2).bitPattern.littleEndian) { Array($0) }
            }
        }
        func ones(_ count: Int) -> [UInt8] {
            (0 ..< count).flatMap { _ in withUnsafeBytes(of: Float(1).bitPattern.littleEndian) { Array($0) } }
        }
        b.addTensor("token_embd.weight", .f32, [dim, v], data: weights(dim * v, seed: 1))
        for l in 0 ..< layers {
            b.addTensor("blk.\(l).attn_norm.weight", .f32, [dim], data: ones(dim))
            b.addTensor("blk.\(l).attn_q.weight", .f32, [dim, heads * hd], data: weights(dim * heads * hd, seed: 2))
            b.addTensor("blk.\(l).attn_k.weight", .f32, [dim, kvHeads * hd], data: weights(dim * kvHeads * hd, seed: 3))
            b.addTensor("blk.\(l).attn_v.weight", .f32, [dim, kvHeads * hd], data: weights(dim * kvHeads * hd, seed: 4))
            b.addTensor("blk.\(l).attn_output.weight", .f32, [heads * hd, dim], data: weights(dim * heads * hd, seed: 5))
            b.addTensor("blk.\(l).ffn_norm.weight", .f32, [dim], data: ones(dim))
            b.addTensor("blk.\(l).ffn_gate.weight", .f32, [dim, ff], data: weights(dim * ff, seed: 6))
            b.addTensor("blk.\(l).ffn_up.weight", .f32, [dim, ff], data: weights(dim * ff, seed: 7))
            b.addTensor("blk.\(l).ffn_down.weight", .f32, [ff, dim], data: weights(dim * ff, seed: 8))
        }
        b.addTensor("output_norm.weight", .f32, [dim], data: ones(dim))
        builder = b
    }

    /// Replaces (or adds) a metadata value.
    mutating func set(_ key: String, _ value: GGUFBuilder.Value) {
        builder.metadata.removeAll { $0.key == Array(key.utf8) }
        builder.add(key, value)
    }

    mutating func remove(key: String) { builder.metadata.removeAll { $0.key == Array(key.utf8) } }
    /// Adds an F32 tensor of `dims` filled with ones.
    mutating func addOnes(_ name: String, _ dims: [Int]) {
        let count = dims.reduce(1, *)
        builder.addTensor(name, .f32, dims, data: (0 ..< count).flatMap { _ in withUnsafeBytes(of: Float(1).bitPattern.littleEndian) { Array($0) } })
    }
    mutating func remove(tensor: String) { builder.tensors.removeAll { $0.name == Array(tensor.utf8) } }

    func file() throws -> GGUFFile { try parse(builder.build()) }
    func model() throws -> LlamaModel { try LlamaModel(file: file()) }
}
