import GGUFTestSupport
import Testing
import ModelFormat
import Generation
@testable import Inference

/// Models of the supported architectures that are inconsistent or use what the engine does not
/// run are refused with one line naming the architecture, key or tensor; never run half-right.
@Suite struct ArchitectureRefusalTests {
    /// The error of loading a tiny model of `architecture` after `build`, or nil if it loaded.
    func refusal(_ architecture: String = "llama", _ build: (inout TinyModel) -> Void) -> InferenceError? {
        var tiny = TinyModel(architecture: architecture)
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

    /// A tiny Gemma 2 (its post-norms added to the Llama tensors, a window of 8 in a context of 64).
    static func gemma2(_ tiny: inout TinyModel) {
        tiny.addOnes("blk.0.post_attention_norm.weight", [32])
        tiny.addOnes("blk.0.post_ffw_norm.weight", [32])
        tiny.set("gemma2.attention.sliding_window", .uint32(8))
    }

    @Test func everySupportedArchitectureLoadsItsTinyModel() throws {
        #expect(refusal("llama") { _ in } == nil)
        #expect(refusal("qwen2") { _ in } == nil)
        #expect(refusal("phi3") { _ in } == nil)  // separate Q/K/V and gate/up are accepted too
        #expect(refusal("qwen3") {
            $0.addOnes("blk.0.attn_q_norm.weight", [16])
            $0.addOnes("blk.0.attn_k_norm.weight", [16])
        } == nil)
        #expect(refusal("gemma2", Self.gemma2) == nil)
        var tiny = TinyModel(architecture: "gemma2")
        Self.gemma2(&tiny)
        let model = try tiny.model()
        #expect(model.config.traits.slidingWindowLayers == [true])
        #expect(model.config.traits.slidingWindow == 8 && model.config.traits.attentionSoftCap == 50)
        #expect(model.weights.isOutputTied)
    }

    @Test func refusesUnknownArchitecture() {
        let error = refusal { $0.set("general.architecture", .string("rwkv6")) }
        #expect(error?.code == .unsupportedArchitecture)
        #expect(error?.reason.contains("\"rwkv6\"") == true)
        #expect(error?.reason.contains("gemma3") == true)  // and says what runs
    }

    @Test func refusesMixtureOfExpertsLlama() {
        let error = refusal { $0.set("llama.expert_count", .uint32(8)) }
        #expect(error?.reason.contains("llama.expert_count") == true)
    }

    @Test func refusesQwen2BiasOfWrongWidth() {
        let error = refusal("qwen2") { $0.addOnes("blk.0.attn_k.bias", [32]) }  // K is 16 wide (one KV head)
        #expect(error?.code == .invalidTensor)
        #expect(error?.reason.contains("blk.0.attn_k.bias") == true)
    }

    @Test func refusesBiasOnTheWrongTensor() {
        let error = refusal("qwen2") { $0.addOnes("blk.0.ffn_up.bias", [64]) }
        #expect(error?.reason.contains("blk.0.ffn_up.bias") == true)
        #expect(error?.reason.contains("qwen2") == true)
    }

    @Test func refusesQwen3WithoutQueryNorm() {
        let error = refusal("qwen3") { $0.addOnes("blk.0.attn_k_norm.weight", [16]) }
        #expect(error?.code == .missingTensor)
        #expect(error?.reason.contains("blk.0.attn_q_norm.weight") == true)
    }

    @Test func refusesQwen3NormOfModelWidth() {
        let error = refusal("qwen3") {
            $0.addOnes("blk.0.attn_q_norm.weight", [32])
            $0.addOnes("blk.0.attn_k_norm.weight", [16])
        }
        #expect(error?.reason.contains("blk.0.attn_q_norm.weight") == true)
    }

    @Test func refusesPhi3LongRope() {
        let error = refusal("phi3") { $0.addOnes("rope_factors_long.weight", [8]) }
        #expect(error?.reason.contains("rope_factors_long.weight") == true)
        #expect(error?.reason.contains("phi3") == true)
    }

    @Test func refusesPhi3FusedUpOfSingleWidth() {
        // Without ffn_gate, Phi-3's ffn_up must hold gate and up: [dim, 2 ff].
        let error = refusal("phi3") { $0.remove(tensor: "blk.0.ffn_gate.weight") }
        #expect(error?.reason.contains("blk.0.ffn_up.weight") == true)
        #expect(error?.reason.contains("[32, 128]") == true)
    }

    @Test func refusesGemmaWindowLargerThanContext() {
        // Without the key, Gemma 2's window is llama.cpp's default, 4096: wider than this context.
        let error = refusal("gemma2") {
            Self.gemma2(&$0)
            $0.remove(key: "gemma2.attention.sliding_window")
        }
        #expect(error?.code == .invalidMetadata)
        #expect(error?.reason.contains("gemma2.attention.sliding_window (4096)") == true)
    }

    @Test func refusesGemma2WithoutPostNorms() {
        let error = refusal("gemma2") { $0.set("gemma2.attention.sliding_window", .uint32(8)) }
        #expect(error?.code == .missingTensor)
        #expect(error?.reason.contains("blk.0.post_attention_norm.weight") == true)
    }

    @Test func refusesGemma2SeparateOutput() {
        // Gemma 2's output is always the embedding: an output.weight would be silently ignored.
        let error = refusal("gemma2") {
            Self.gemma2(&$0)
            $0.builder.addTensor("output.weight", .f32, [32, TinyModel.tokens.count], data: GGUFBuilder.filler(index: 1, count: 4 * 32 * TinyModel.tokens.count))
        }
        #expect(error?.reason.contains("\"output.weight\"") == true)
        #expect(error?.reason.contains("gemma2") == true)
    }

    @Test func refusesSlidingWindowPatternOfWrongLength() {
        let error = refusal("gemma3") {
            $0.addOnes("blk.0.attn_q_norm.weight", [16])
            $0.addOnes("blk.0.attn_k_norm.weight", [16])
            $0.addOnes("blk.0.post_attention_norm.weight", [32])
            $0.addOnes("blk.0.post_ffw_norm.weight", [32])
            $0.set("gemma3.attention.sliding_window", .uint32(8))
            $0.set("gemma3.attention.sliding_window_pattern", .bools([]))
        }
        #expect(error?.reason.contains("gemma3.attention.sliding_window_pattern") == true)
    }

    @Test func refusesYarnRopeScaling() {
        let error = refusal { $0.set("llama.rope.scaling.type", .string("yarn")) }
        #expect(error?.reason.contains("\"yarn\"") == true)
    }

    @Test func refusesLlama3ScalingWithoutFactors() {
        let error = refusal { $0.set("llama.rope.scaling.type", .string("llama3")) }
        #expect(error?.code == .missingTensor)
        #expect(error?.reason.contains("rope_freqs.weight") == true)
    }
}
