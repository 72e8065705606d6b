import Accelerators
import Foundation
import GGUFTestSupport
import Inference
import Kernels
import ModelFormat
import SoftwareTPM
import Testing
import TPM

/// Where the tests find the real model (`$SECURENODE_TEST_MODEL` or models/cache/…) and whether the
/// tools must be there (`SECURENODE_REQUIRE_TOOLS=1` turns skips into failures, as in the other suites).
enum TestPaths {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let profiles = packageRoot.appendingPathComponent("firmware-profiles")
    static let modelRelativePath = "models/cache/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
    static var requireTools: Bool { ProcessInfo.processInfo.environment["SECURENODE_REQUIRE_TOOLS"] == "1" }

    static let modelPath: String? = {
        if let path = ProcessInfo.processInfo.environment["SECURENODE_TEST_MODEL"], !path.isEmpty { return path }
        let path = packageRoot.appendingPathComponent(modelRelativePath).path
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()
    static var runModelTests: Bool { modelPath != nil || requireTools }
    static let modelMissing: Comment = "model not found: set SECURENODE_TEST_MODEL or put it at \(modelRelativePath)"

    static func installed(_ tool: String) -> Bool {
        ["/usr/bin", "/usr/local/bin"].contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") }
    }
    static var swtpm: Bool { requireTools || (installed("swtpm") && installed("swtpm_setup")) }

    static func temporaryDirectory(_ label: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("securenode-accel-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// The real model, parsed and mapped once.
enum RealModel {
    static let loaded: Result<LlamaModel, any Error>? = TestPaths.modelPath.map { path in
        Result { try LlamaModel(file: try GGUFFile.parse(GGUFBuffer.read(contentsOf: path))) }
    }
    static func model() throws -> LlamaModel { try #require(loaded, "\(TestPaths.modelMissing)").get() }
}

/// A small valid Llama GGUF with Q4_1 layer matrices (so the C kernels run, as on the real
/// model) and a tied F32 embedding: 2 layers, dim 64, 4 heads, 2 KV heads, feed-forward 128,
/// a 10-token vocabulary.
enum SyntheticModel {
    static let tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "ab", "Ġ", "Ġa", "c", "\n"]
    static let layers = 2, dim = 64, heads = 4, kvHeads = 2, ff = 128, context = 64

    static func f32(_ count: Int, seed: Int) -> [UInt8] {
        (0 ..< count).flatMap { i -> [UInt8] in
            let value = (Float((i * 7919 + seed * 104_729) % 97) / 97 - 0.5) * 0.2
            return withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
        }
    }

    /// Q4_1 blocks (scale, minimum, 32 nibbles) for a `rows` x `columns` matrix.
    static func q4_1(rows: Int, columns: Int, seed: Int) -> [UInt8] {
        var out: [UInt8] = []
        for b in 0 ..< rows * columns / 32 {
            let d = Half.bits(0.01 + Float((b * 31 + seed) % 7) * 0.002), m = Half.bits(-0.08 + Float((b + seed) % 5) * 0.01)
            out += withUnsafeBytes(of: d.littleEndian) { Array($0) } + withUnsafeBytes(of: m.littleEndian) { Array($0) }
            out += (0 ..< 16).map { UInt8(truncatingIfNeeded: ($0 * 37 + b * 11 + seed * 5) & 0xff) }
        }
        return out
    }

    static func model() throws -> LlamaModel {
        var b = GGUFBuilder()
        b.add("general.architecture", .string("llama"))
        b.add("llama.block_count", .uint32(UInt32(layers)))
        b.add("llama.embedding_length", .uint32(UInt32(dim)))
        b.add("llama.feed_forward_length", .uint32(UInt32(ff)))
        b.add("llama.attention.head_count", .uint32(UInt32(heads)))
        b.add("llama.attention.head_count_kv", .uint32(UInt32(kvHeads)))
        b.add("llama.rope.freq_base", .float32(10000))
        b.add("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        b.add("llama.context_length", .uint32(UInt32(context)))
        b.add("tokenizer.ggml.model", .string("gpt2"))
        b.add("tokenizer.ggml.pre", .string("smollm"))
        b.add("tokenizer.ggml.tokens", .strings(tokens))
        b.add("tokenizer.ggml.token_type", .int32s([3, 3, 3, 1, 1, 1, 1, 1, 1, 1]))
        b.add("tokenizer.ggml.merges", .strings(["a b", "Ġ a"]))
        b.add("tokenizer.ggml.eos_token_id", .uint32(2))
        let hd = dim / heads, kvw = kvHeads * hd
        let ones = (0 ..< dim).flatMap { _ in withUnsafeBytes(of: Float(1).bitPattern.littleEndian) { Array($0) } }
        b.addTensor("token_embd.weight", .f32, [dim, tokens.count], data: f32(dim * tokens.count, seed: 1))
        for l in 0 ..< layers {
            b.addTensor("blk.\(l).attn_norm.weight", .f32, [dim], data: ones)
            b.addTensor("blk.\(l).attn_q.weight", .q4_1, [dim, dim], data: q4_1(rows: dim, columns: dim, seed: 2 + l))
            b.addTensor("blk.\(l).attn_k.weight", .q4_1, [dim, kvw], data: q4_1(rows: kvw, columns: dim, seed: 3 + l))
            b.addTensor("blk.\(l).attn_v.weight", .q4_1, [dim, kvw], data: q4_1(rows: kvw, columns: dim, seed: 4 + l))
            b.addTensor("blk.\(l).attn_output.weight", .q4_1, [dim, dim], data: q4_1(rows: dim, columns: dim, seed: 5 + l))
            b.addTensor("blk.\(l).ffn_norm.weight", .f32, [dim], data: ones)
            b.addTensor("blk.\(l).ffn_gate.weight", .q4_1, [dim, ff], data: q4_1(rows: ff, columns: dim, seed: 6 + l))
            b.addTensor("blk.\(l).ffn_up.weight", .q4_1, [dim, ff], data: q4_1(rows: ff, columns: dim, seed: 7 + l))
            b.addTensor("blk.\(l).ffn_down.weight", .q4_1, [ff, dim], data: q4_1(rows: dim, columns: ff, seed: 8 + l))
        }
        b.addTensor("output_norm.weight", .f32, [dim], data: ones)
        return try LlamaModel(file: try parse(b.build()))
    }

    /// Its shape, as the forward-pass model sees it.
    static let shape = TransformerShapeFixture.shape(layers: layers, dim: dim, ff: ff, heads: heads, kvHeads: kvHeads,
                                                     vocabulary: tokens.count, weightType: .q4_1, outputType: .f32)
}

enum TransformerShapeFixture {
    static func shape(layers: Int, dim: Int, ff: Int, heads: Int, kvHeads: Int, vocabulary: Int,
                      weightType: BlockType, outputType: BlockType) -> TransformerShape {
        TransformerShape(name: "test", layers: layers, embedding: dim, feedForward: ff, heads: heads, kvHeads: kvHeads,
                         vocabulary: vocabulary, weightType: weightType, outputType: outputType, tiedEmbedding: true)
    }

    /// The shape of a loaded model whose layer matrices share one format.
    static func shape(of model: LlamaModel) throws -> TransformerShape {
        let c = model.config, w = model.weights
        let types = Set(w.layers.flatMap { [$0.query.type, $0.key.type, $0.value.type, $0.output.type, $0.gate.type, $0.up.type, $0.down.type] })
        let type = try #require(types.count == 1 ? types.first : nil, "layer matrices in one format")
        return shape(layers: c.layerCount, dim: c.embeddingLength, ff: c.feedForwardLength, heads: c.headCount, kvHeads: c.headCountKV,
                     vocabulary: c.vocabularySize, weightType: type, outputType: w.output.type)
    }
}

