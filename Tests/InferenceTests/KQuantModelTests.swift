import GGUFTestSupport
import Testing
import ModelFormat
import Generation
@testable import Inference

/// Models with K-quant matrices (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) load and run; truncated or
/// malformed K-quant tensors are refused with an error naming the tensor and its type.
@Suite struct KQuantModelTests {
    /// Random blocks of `type` for a `[columns, rows]` tensor, F16 super-block scales small and sane.
    static func blocks(_ type: GGMLType, columns: Int, rows: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        func next() -> UInt8 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        let count = columns / 256 * rows
        var out: [UInt8] = []
        for _ in 0 ..< count {
            var block = (0 ..< type.typeSize).map { _ in next() }
            let halves: [Int] = switch type {
            case .q2_k: [80, 82]
            case .q3_k: [108]
            case .q6_k: [208]
            default: [0, 2]
            }
            for offset in halves { block[offset] = 0x00; block[offset + 1] = 0x14 }  // F16 0.000977
            out += block
        }
        return out
    }

    static func model(types: [GGMLType]) -> TinyModel {
        var tiny = TinyModel(dim: 256, heads: 2, kvHeads: 1, ff: 512)
        let shapes: [(String, [Int])] = [("attn_q", [256, 256]), ("attn_k", [256, 128]), ("attn_v", [256, 128]),
                                         ("attn_output", [256, 256]), ("ffn_gate", [256, 512]), ("ffn_up", [256, 512]),
                                         ("ffn_down", [512, 256])]
        for (i, (name, dims)) in shapes.enumerated() {
            let type = types[i % types.count]
            tiny.remove(tensor: "blk.0.\(name).weight")
            tiny.builder.addTensor("blk.0.\(name).weight", type, dims,
                                   data: blocks(type, columns: dims[0], rows: dims[1], seed: UInt64(i + 1)))
        }
        return tiny
    }

    @Test(arguments: [[GGMLType.q2_k], [.q3_k], [.q4_k], [.q5_k], [.q6_k], [.q4_k, .q4_k, .q6_k], [.q2_k, .q3_k, .q4_k, .q5_k, .q6_k]])
    func kQuantModelLoadsAndRuns(types: [GGMLType]) throws {
        let model = try Self.model(types: types).model()
        let session = try model.makeSession()
        let logits = try session.evaluate([3, 4, 5])
        #expect(logits.count == TinyModel.tokens.count && logits.allSatisfy(\.isFinite))
        let stepwise = try model.makeSession()
        var last: [Float] = []
        for t in [3, 4, 5] { last = try stepwise.evaluate([t]) }
        #expect(Sampler.argmax(last) == Sampler.argmax(logits))
    }

    /// The attack: a file whose last K-quant tensor is cut short (a truncated download, or a
    /// header that promises more bytes than the file holds).
    @Test(arguments: [GGMLType.q2_k, .q3_k, .q4_k, .q5_k, .q6_k])
    func truncatedKQuantTensorIsRefusedNamingTensorAndType(type: GGMLType) throws {
        var tiny = Self.model(types: [.q4_k])
        tiny.remove(tensor: "blk.0.ffn_down.weight")
        tiny.builder.addTensor("blk.0.ffn_down.weight", type, [512, 256], data: Self.blocks(type, columns: 512, rows: 256, seed: 9))
        let bytes = tiny.builder.build()
        do {
            _ = try LlamaModel(file: parse(Array(bytes.dropLast(type.typeSize + 64))))
            Issue.record("a truncated \(type) tensor was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("blk.0.ffn_down.weight") && text.contains(type.name), "\(text)")
        }
    }

    /// The attack: a K-quant tensor whose rows are not whole 256-element blocks.
    @Test func kQuantTensorOfPartialBlocksIsRefusedNamingTensorAndType() {
        var tiny = Self.model(types: [.q4_k])
        tiny.remove(tensor: "blk.0.attn_q.weight")
        tiny.builder.addTensor("blk.0.attn_q.weight", .q5_k, [128, 512], data: [UInt8](repeating: 0, count: 176 * 256))
        do {
            _ = try tiny.model()
            Issue.record("a Q5_K tensor of 128-wide rows was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("blk.0.attn_q.weight") && text.contains("Q5_K"), "\(text)")
        }
    }

    /// The attack: a K-quant matrix of the wrong shape for the model.
    @Test func kQuantTensorOfWrongShapeIsRefusedNamingTensor() {
        var tiny = Self.model(types: [.q4_k])
        tiny.remove(tensor: "blk.0.attn_k.weight")
        tiny.builder.addTensor("blk.0.attn_k.weight", .q6_k, [256, 256], data: Self.blocks(.q6_k, columns: 256, rows: 256, seed: 3))
        do {
            _ = try tiny.model()
            Issue.record("a mis-shaped Q6_K tensor was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("blk.0.attn_k.weight") && text.contains("[256, 128]"), "\(text)")
        }
    }
}
