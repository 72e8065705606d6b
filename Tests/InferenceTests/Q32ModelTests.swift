import Generation
import GGUFTestSupport
import Kernels
import ModelFormat
import Testing
@testable import Inference

/// Models whose matrices are Q4_0, Q5_0 or Q5_1 load and run; truncated or malformed Q5 tensors
/// are refused with an error naming the tensor and its type.
@Suite struct Q32ModelTests {
    static let types: [GGMLType] = [.q4_0, .q5_0, .q5_1]

    /// `count` elements of `type` (32 per block): seeded quant bytes, small F16 scales.
    static func blocks(_ type: GGMLType, count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        func next() -> UInt8 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        var out: [UInt8] = []
        for b in 0 ..< count / 32 {
            var block = (0 ..< type.typeSize).map { _ in next() }
            let d = Half.bits(0.01 + 0.0005 * Float(b % 7))
            block[0] = UInt8(d & 0xff); block[1] = UInt8(d >> 8)
            if type == .q5_1 {
                let m = Half.bits(-0.08)
                block[2] = UInt8(m & 0xff); block[3] = UInt8(m >> 8)
            }
            out += block
        }
        return out
    }

    /// The tiny model with its feed-forward matrices (and `last`, moved to the end of the file) in `type`.
    static func model(_ type: GGMLType) -> TinyModel {
        var tiny = TinyModel()
        for (i, name) in ["blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"].enumerated() {
            tiny.remove(tensor: name)
            let dims = name.contains("down") ? [64, 32] : [32, 64]
            tiny.builder.addTensor(name, type, dims, data: blocks(type, count: 32 * 64, seed: UInt64(i + 1)))
        }
        return tiny
    }

    @Test(arguments: types)
    func modelWithTheseMatricesLoadsAndRuns(type: GGMLType) throws {
        let model = try Self.model(type).model()
        let session = try model.makeSession()
        let logits = try session.evaluate([3, 4, 5, 6])
        #expect(logits.count == TinyModel.tokens.count && logits.allSatisfy(\.isFinite))
        // One token at a time (the decode kernels) picks what the batch (the prompt kernels) picks.
        let stepwise = try model.makeSession()
        var last: [Float] = []
        for t in [3, 4, 5, 6] { last = try stepwise.evaluate([t]) }
        #expect(Sampler.argmax(last) == Sampler.argmax(logits))
        for (a, b) in zip(last, logits) { #expect(abs(a - b) < 1e-3) }
    }

    @Test(arguments: [GGMLType.q5_0, .q5_1])
    func truncatedQ5TensorIsRefused(type: GGMLType) {
        let tiny = Self.model(type)
        let encoded = tiny.builder.encode()
        let last = tiny.builder.tensors.count - 1
        let end = encoded.dataOffset + encoded.dataOffsets[last] + 64 * type.typeSize
        let error = parseError(Array(encoded.bytes.prefix(end - 7)))
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.contains("blk.0.ffn_down.weight") && text.contains(type.name) && text.contains("past the end"), "\(text)")
    }

    @Test(arguments: [GGMLType.q5_0, .q5_1])
    func q5TensorWithPartialBlocksIsRefused(type: GGMLType) {
        var tiny = TinyModel()
        tiny.remove(tensor: "blk.0.ffn_gate.weight")
        tiny.builder.addTensor("blk.0.ffn_gate.weight", type, [48, 64])
        let text = parseError(tiny.builder.build()).map(String.init(describing:)) ?? ""
        #expect(text.contains("blk.0.ffn_gate.weight") && text.contains(type.name) && text.contains("block size"), "\(text)")
    }
}
