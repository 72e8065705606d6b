import GGUFTestSupport
import Testing
import ModelFormat
import Generation
@testable import Inference

/// Corrupt or inconsistent models are refused with an error naming the key or tensor, never a crash.
@Suite struct ModelValidationTests {
    func refusal(_ build: (inout TinyModel) -> Void) -> InferenceError? {
        var tiny = TinyModel()
        build(&tiny)
        do {
            _ = try tiny.model()
            return nil
        } catch let error as InferenceError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test func tinyModelLoadsAndRuns() throws {
        let model = try TinyModel().model()
        #expect(model.config.headDimension == 16 && model.weights.isOutputTied)
        let session = try model.makeSession()
        let logits = try session.evaluate([3, 4, 5])
        #expect(logits.count == TinyModel.tokens.count && logits.allSatisfy(\.isFinite))
        // The same tokens one at a time give the same next-token choice as in a batch.
        let stepwise = try model.makeSession()
        var last: [Float] = []
        for t in [3, 4, 5] { last = try stepwise.evaluate([t]) }
        #expect(Sampler.argmax(last) == Sampler.argmax(logits))
        for (a, b) in zip(last, logits) { #expect(abs(a - b) < 1e-3) }
    }

    @Test func unsupportedArchitectureIsRefused() {
        let error = refusal { $0.set("general.architecture", .string("mamba")) }
        #expect(error?.code == .unsupportedArchitecture)
        #expect(error?.reason.contains("mamba") == true)
    }

    @Test func missingHyperparameterIsNamed() {
        let error = refusal { $0.remove(key: "llama.attention.layer_norm_rms_epsilon") }
        #expect(error?.code == .missingMetadata)
        #expect(error?.reason.contains("layer_norm_rms_epsilon") == true)
    }

    @Test func wrongValueTypeIsNamed() {
        let error = refusal { $0.set("llama.block_count", .string("thirty")) }
        #expect(error?.code == .invalidMetadata && error?.reason.contains("llama.block_count") == true)
    }

    @Test func headsThatDoNotDivideAreRefused() {
        let error = refusal { $0.set("llama.attention.head_count_kv", .uint32(3)) }
        #expect(error?.code == .invalidMetadata)
    }

    @Test func missingTensorIsNamed() {
        let error = refusal { $0.remove(tensor: "blk.0.ffn_up.weight") }
        #expect(error?.code == .missingTensor && error?.reason.contains("blk.0.ffn_up.weight") == true)
    }

    @Test func wrongTensorShapeIsNamed() {
        let error = refusal {
            $0.remove(tensor: "blk.0.attn_k.weight")
            $0.builder.addTensor("blk.0.attn_k.weight", .f32, [32, 32])
        }
        #expect(error?.code == .invalidTensor && error?.reason.contains("blk.0.attn_k.weight") == true)
        #expect(error?.reason.contains("[32, 16]") == true)
    }

    @Test func unsupportedTensorTypeIsNamed() {
        let error = refusal {
            $0.remove(tensor: "blk.0.ffn_gate.weight")
            $0.builder.addTensor("blk.0.ffn_gate.weight", .iq4_nl, [32, 64])
        }
        #expect(error?.code == .invalidTensor && error?.reason.contains("IQ4_NL") == true)
    }

    @Test func unexpectedTensorIsRefused() {
        // Q/K/V biases are part of the graph (as llama.cpp's); a feed-forward bias is not.
        let error = refusal { $0.builder.addTensor("blk.0.ffn_up.bias", .f32, [64]) }
        #expect(error?.code == .invalidTensor && error?.reason.contains("blk.0.ffn_up.bias") == true)
    }

    @Test func layerCountBeyondTheTensorsIsRefused() {
        let error = refusal { $0.set("llama.block_count", .uint32(2)) }
        #expect(error?.code == .missingTensor && error?.reason.contains("blk.1.") == true)
    }

    @Test func vocabularySizeMismatchIsRefused() {
        let declared = refusal { $0.set("llama.vocab_size", .uint32(11)) }
        #expect(declared?.code == .invalidVocabulary)
        let embedding = refusal {
            $0.remove(tensor: "token_embd.weight")
            $0.builder.addTensor("token_embd.weight", .f32, [32, 12])
        }
        #expect(embedding?.code == .invalidTensor && embedding?.reason.contains("token_embd.weight") == true)
    }

    @Test func contextLongerThanTheModelsIsRefused() throws {
        let model = try TinyModel().model()
        #expect(throws: InferenceError(.contextOverflow, "")) { try model.makeSession(contextLength: 65) }
        let session = try model.makeSession(contextLength: 4)
        #expect(throws: InferenceError(.contextOverflow, "")) { try session.evaluate([3, 4, 5, 3, 4]) }
        #expect(session.position == 0)
        #expect(throws: InferenceError(.invalidToken, "")) { try session.evaluate([3, 99]) }
        #expect(throws: InferenceError(.invalidToken, "")) { try session.evaluate([-1]) }
    }

    @Test func tokenizerInconsistenciesAreRefused() throws {
        var tiny = TinyModel()
        tiny.set("tokenizer.ggml.token_type", .int32s([1, 1]))
        #expect(throws: InferenceError(.invalidVocabulary, "")) { try Tokenizer(file: tiny.file()) }
        tiny = TinyModel()
        tiny.set("tokenizer.ggml.pre", .string("no-such-pre"))
        #expect(throws: InferenceError(.invalidVocabulary, "")) { try Tokenizer(file: tiny.file()) }
        tiny = TinyModel()
        tiny.set("tokenizer.ggml.eos_token_id", .uint32(1000))
        #expect(throws: InferenceError(.invalidVocabulary, "")) { try Tokenizer(file: tiny.file()) }
        tiny = TinyModel()
        tiny.set("tokenizer.ggml.merges", .strings(["nospace"]))
        #expect(throws: InferenceError(.invalidVocabulary, "")) { try Tokenizer(file: tiny.file()) }
        tiny = TinyModel()
        tiny.set("tokenizer.ggml.model", .string("rwkv")) // "llama" (SentencePiece) is supported now
        #expect(throws: InferenceError(.invalidVocabulary, "")) { try Tokenizer(file: tiny.file()) }
    }

    /// Seeded random corruption of metadata values and tensor shapes: every outcome is a load or
    /// a thrown error, never a trap.
    @Test func randomCorruptionNeverCrashes() throws {
        var state: UInt64 = 7
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        let keys = ["llama.block_count", "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
                    "llama.attention.head_count_kv", "llama.context_length", "llama.rope.dimension_count",
                    "llama.attention.key_length"]
        for _ in 0 ..< 200 {
            var tiny = TinyModel()
            let key = keys[Int(next() % UInt64(keys.count))]
            let value = [0, 1, 2, 3, 7, 15, 16, 31, 32, 33, 64, 1 << 20, Int(UInt32.max)][Int(next() % 13)]
            tiny.set(key, .uint32(UInt32(truncatingIfNeeded: value)))
            if let model = try? tiny.model(), let session = try? model.makeSession(contextLength: 8) {
                _ = try session.evaluate([3, 4])
            }
        }
    }
}
