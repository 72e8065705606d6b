import Foundation
import Testing
@testable import Kernels

/// The K-quant references against llama.cpp's own ggml, bit for bit: `Fixtures/kquants.json`
/// (written by `Fixtures/make_kquant_fixtures.py` through llama-cpp-python 0.3.36 compiled on
/// this machine) holds random blocks of each type with extreme super-block scales (subnormal to
/// 65504, zero, negative), ggml's dequantized floats, Q8_K activations from ggml's quantizer, and
/// the dot products of ggml's AVX2 `vec_dot` kernels.
@Suite struct KQuantFixtureTests {
    static let types: [(String, BlockType)] = [("Q2_K", .q2_K), ("Q3_K", .q3_K), ("Q4_K", .q4_K), ("Q5_K", .q5_K), ("Q6_K", .q6_K)]

    struct Case: Decodable, Sendable {
        let blocks: String
        let dequantized: String
        let dots: [String]
    }

    struct Fixture: Decodable, Sendable {
        let activationFloats: [String]
        let q8K: String
        let types: [String: Case]
    }

    static let fixture: Fixture? = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/kquants.json")
        guard let data = try? Data(contentsOf: url) else { return nil }
        return try? JSONDecoder().decode(Fixture.self, from: data)
    }()

    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(hex.utf8.count / 2)
        var high: UInt8?
        for c in hex.utf8 {
            let v = c <= 57 ? c - 48 : c - 87
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return out
    }

    /// Little-endian F32 bit patterns from hex.
    static func floatBits(_ hex: String) -> [UInt32] {
        let b = bytes(hex)
        return stride(from: 0, to: b.count, by: 4).map { i in
            UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
        }
    }

    static func activations() -> [UInt8] { bytes(fixture?.q8K ?? "") }

    @Test func q8KQuantizationEqualsGGML() {
        let floats = (Self.fixture?.activationFloats ?? []).map { Float(bitPattern: Self.floatBits($0)[0]) }
        let expected = Self.activations()
        #expect(floats.count == 2048 && expected.count == 8 * Q8_K.blockBytes, "fixture missing")
        var ours = [UInt8](repeating: 0, count: expected.count)
        ours.withUnsafeMutableBytes { Q8_K.quantize(floats, blocks: floats.count / 256, into: $0.baseAddress!) }
        #expect(ours == expected)
        if FastKernels.available {
            var fast = [UInt8](repeating: 0, count: expected.count)
            floats.withUnsafeBufferPointer { FastKernels.quantize($0.baseAddress!, columns: 512, count: 4, to: .q8_K, into: &fast) }
            #expect(fast == expected, "sn_quantize_q8_K differs from ggml")
        }
    }

    @Test(arguments: types.map(\.0))
    func dequantizeEqualsGGML(name: String) throws {
        let type = try #require(Self.types.first { $0.0 == name }?.1)
        let entry = try #require(Self.fixture?.types[name], "fixture for \(name) missing")
        let blocks = Self.bytes(entry.blocks)
        let expected = Self.floatBits(entry.dequantized)
        let count = blocks.count / type.blockBytes * 256
        #expect(expected.count == count)
        var ours = [Float](repeating: .nan, count: count)
        blocks.withUnsafeBytes { RowKernels.dequantize(type, $0.baseAddress!, count: count, into: &ours) }
        let mismatches = (0 ..< count).filter { ours[$0].bitPattern != expected[$0] }
        #expect(mismatches.isEmpty, "\(name): \(mismatches.count) of \(count) dequantized values differ, first at \(mismatches.first ?? -1): \(mismatches.first.map { ours[$0] } ?? 0) vs \(mismatches.first.map { Float(bitPattern: expected[$0]) } ?? 0)")
    }

    /// Rows of two blocks against the four activation rows: the Swift reference, and the C kernel
    /// through a matrix product, each equal to ggml's `vec_dot` bit for bit.
    @Test(arguments: types.map(\.0))
    func dotEqualsGGML(name: String) throws {
        let type = try #require(Self.types.first { $0.0 == name }?.1)
        let entry = try #require(Self.fixture?.types[name], "fixture for \(name) missing")
        let blocks = Self.bytes(entry.blocks)
        let expected = entry.dots.map { Self.floatBits($0)[0] }
        let a = Self.activations()
        let rows = blocks.count / (2 * type.blockBytes), tokens = 4, rowBytes = 2 * type.blockBytes
        #expect(expected.count == rows * tokens)
        blocks.withUnsafeBytes { w in
            a.withUnsafeBytes { act in
                for r in 0 ..< rows {
                    for t in 0 ..< tokens {
                        let ours = RowKernels.dot(type, w.baseAddress! + r * rowBytes, act.baseAddress! + t * 2 * Q8_K.blockBytes, count: 512)
                        let theirs = expected[r * tokens + t]
                        #expect(ours.bitPattern == theirs, "\(name) row \(r) token \(t): \(ours) vs ggml \(Float(bitPattern: theirs))")
                    }
                }
                guard FastKernels.available else { return }
                let matrix = WeightMatrix(type: type, rows: rows, columns: 512, base: w.baseAddress!)!
                var out = [Float](repeating: .nan, count: rows * tokens)
                out.withUnsafeMutableBufferPointer { o in
                    let plan = MatMulPlan([MatMulJob(matrix, out: o.baseAddress!)])!
                    ThreadPool(threads: 1).multiply(plan, activations: act.baseAddress!, activationStride: 2 * Q8_K.blockBytes, count: tokens)
                }
                for r in 0 ..< rows {
                    for t in 0 ..< tokens {
                        #expect(out[t * rows + r].bitPattern == expected[r * tokens + t], "\(name) C kernel row \(r) token \(t)")
                    }
                }
            }
        }
    }
}
