import Foundation
import Testing
import ModelFormat

/// The SmolLM2-135M-Instruct Q4_1 GGUF, if it is on this machine: `$SECURENODE_TEST_MODEL`, or
/// `models/cache/…` under the package root. When neither is set up the tests are skipped (and
/// shown as skipped), never passed silently.
enum RealModel {
    static let defaultRelativePath = "models/cache/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"

    static let path: String? = {
        if let path = ProcessInfo.processInfo.environment["SECURENODE_TEST_MODEL"], !path.isEmpty {
            return path // set explicitly: a wrong path must fail, not skip
        }
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent() // ModelFormatTests
            .deletingLastPathComponent() // Tests
            .deletingLastPathComponent()
        let path = packageRoot.appendingPathComponent(defaultRelativePath).path
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()

    static var isAvailable: Bool { path != nil }
    static let missingReason: Comment = "model not found: set SECURENODE_TEST_MODEL or put it at \(defaultRelativePath)"

    /// Parsed once and shared by the tests that need it.
    static let file: Result<GGUFFile, GGUFError>? = path.map { path in
        Result { () throws(GGUFError) -> GGUFFile in try GGUFFile.parse(GGUFBuffer.read(contentsOf: path)) }
    }

    static func load() throws -> GGUFFile {
        try #require(file, "no model file").get()
    }
}

@Suite("Real model: SmolLM2-135M-Instruct Q4_1", .enabled(if: RealModel.isAvailable, RealModel.missingReason))
struct RealModelTests {
    @Test func header() throws {
        let file = try RealModel.load()
        #expect(file.version == 3)
        #expect(file.fileSize == 98_362_432)
        #expect(file.metadataKeys.count == 33)
        #expect(file.metadataKeys.first == "general.architecture")
        #expect(file.metadataKeys.last == "general.quantization_version")
        #expect(file.alignment == 32)
        #expect(file.dataOffset == 1_785_664)
    }

    @Test func metadata() throws {
        let file = try RealModel.load()
        #expect(file.string("general.architecture") == "llama")
        #expect(file.string("general.basename") == "smollm2")
        #expect(file.string("general.size_label") == "135M")
        #expect(file.uint32("llama.block_count") == 30)
        #expect(file.uint32("llama.context_length") == 8192)
        #expect(file.uint32("llama.embedding_length") == 576)
        #expect(file.uint32("llama.feed_forward_length") == 1536)
        #expect(file.uint32("llama.attention.head_count") == 9)
        #expect(file.uint32("llama.attention.head_count_kv") == 3)
        #expect(file.uint32("llama.vocab_size") == 49152)
        #expect(file.uint32("general.file_type") == 3) // MOSTLY_Q4_1
        #expect(file.float("llama.rope.freq_base") == 100_000)
        #expect(file.bool("tokenizer.ggml.add_bos_token") == false)
        #expect(file.string("tokenizer.ggml.model") == "gpt2")
        #expect(file.string("tokenizer.ggml.pre") == "smollm")
        #expect(file.uint32("tokenizer.ggml.bos_token_id") == 1)
        #expect(file.uint32("tokenizer.ggml.eos_token_id") == 2)
        #expect(file.string("tokenizer.chat_template")?.hasPrefix("{% for message in messages %}") == true)
        #expect(try file.array("general.languages")?.strings() == ["en"])
    }

    @Test func vocabulary() throws {
        let file = try RealModel.load()
        let tokens = try #require(file.array("tokenizer.ggml.tokens"))
        #expect(tokens.elementType == .string)
        #expect(tokens.count == 49152)
        let strings = try tokens.strings()
        #expect(strings.count == 49152)
        #expect(Array(strings.prefix(3)) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])

        let types = try #require(file.array("tokenizer.ggml.token_type"))
        #expect(types.elementType == .int32)
        #expect(try types.int32s().prefix(3) == [3, 3, 3])
        #expect(try types.int32s().count == 49152)

        let merges = try #require(file.array("tokenizer.ggml.merges"))
        #expect(merges.count == 48900)
        #expect(try merges.strings().first == "Ġ t")
    }

    @Test func tensors() throws {
        let file = try RealModel.load()
        #expect(file.tensors.count == 272)
        let embedding = try #require(file.tensor(named: "token_embd.weight"))
        #expect(embedding.index == 0)
        #expect(embedding.type == .q8_0)
        #expect(embedding.dims == [576, 49152])
        #expect(embedding.offset == 0)
        #expect(embedding.byteCount == 576 / 32 * 34 * 49152)

        let down = try #require(file.tensor(named: "blk.0.ffn_down.weight"))
        #expect(down.type == .q4_1)
        #expect(down.dims == [1536, 576])
        #expect(down.offset == 30_083_328)
        #expect(file.tensor(named: "output_norm.weight")?.dims == [576])
        #expect(file.tensor(named: "blk.29.attn_q.weight")?.type == .q4_1)
        #expect(file.tensor(named: "blk.30.attn_q.weight") == nil)

        // The data section is packed: the last tensor ends exactly at the end of the file.
        #expect(file.tensors.map(\.fileRange.upperBound).max() == file.fileSize)
    }

    @Test func summary() throws {
        let summary = try RealModel.load().summary
        #expect(summary.architecture == "llama")
        #expect(summary.name == "Smollm2 135M 8k Lc100K Mix1 Ep2")
        #expect(summary.tensorCount == 272)
        #expect(summary.tensorTypeCounts == [.q4_1: 210, .f32: 61, .q8_0: 1])
        #expect(summary.typeCountsDescription == "Q4_1: 210, F32: 61, Q8_0: 1")
        #expect(summary.parameterCount == 134_515_008)
        #expect(summary.tensorBytes == 96_576_768)
    }

    @Test func tensorViewsPointIntoTheBuffer() throws {
        let file = try RealModel.load()
        let base = file.buffer.withUnsafeBytes { Int(bitPattern: $0.baseAddress) }
        for tensor in file.tensors {
            let view = try #require(file.view(of: tensor))
            let (start, count) = view.withUnsafeBytes { (Int(bitPattern: $0.baseAddress), $0.count) }
            #expect(start == base + file.dataOffset + tensor.offset)
            #expect(count == tensor.byteCount)
        }
    }
}
