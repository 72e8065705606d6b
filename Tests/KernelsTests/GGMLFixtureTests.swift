import Foundation
import Testing
@testable import Kernels

/// The Swift references against llama.cpp's own ggml (fixtures written by
/// Fixtures/make_ggml_q32_fixtures.py through ctypes from llama-cpp-python 0.3.36's libggml):
/// dequantized floats, quantized activations and dot products, bit for bit.
@Suite struct GGMLFixtureTests {
    struct Fixture: Decodable {
        struct Dot: Decodable { let first: Int, count: Int, bits: UInt32 }
        struct TypeCase: Decodable {
            let type: String
            let weights: String
            let dequantized: [UInt32]
            let activations: [UInt32]
            let quantized: String
            let dots: [Dot]
        }
        let blocks: Int
        let types: [TypeCase]
    }

    static let fixture: Fixture? = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/ggml-q32.json")
        guard let data = try? Data(contentsOf: url) else { return nil }
        return try? JSONDecoder().decode(Fixture.self, from: data)
    }()

    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            out.append(UInt8(hex[index ..< next], radix: 16)!)
            index = next
        }
        return out
    }

    static func type(_ name: String) -> BlockType {
        BlockType.allCases.first { $0.description == name }!
    }

    @Test func fixtureIsPresent() {
        #expect(Self.fixture?.types.map(\.type) == ["Q4_0", "Q5_0", "Q5_1"])
    }

    @Test(arguments: ["Q4_0", "Q5_0", "Q5_1"])
    func dequantizeEqualsGGML(name: String) throws {
        let c = try #require(Self.fixture?.types.first { $0.type == name })
        let type = Self.type(name)
        let weights = Self.bytes(c.weights)
        var out = [Float](repeating: .nan, count: c.dequantized.count)
        weights.withUnsafeBytes { RowKernels.dequantize(type, $0.baseAddress!, count: out.count, into: &out) }
        #expect(out.map(\.bitPattern) == c.dequantized)
    }

    /// Our Q8_0 / Q8_1 activation quantizers write ggml's bytes for the same floats.
    @Test(arguments: ["Q4_0", "Q5_0", "Q5_1"])
    func activationQuantizerEqualsGGML(name: String) throws {
        let c = try #require(Self.fixture?.types.first { $0.type == name })
        let format = Self.type(name).dotType
        let x = c.activations.map(Float.init(bitPattern:))
        var out = [UInt8](repeating: 0, count: format.rowBytes(x.count)!)
        x.withUnsafeBufferPointer { RowKernels.quantize($0.baseAddress!, count: x.count, to: format, into: &out) }
        #expect(out == Self.bytes(c.quantized))
    }

    /// Q5_0 and Q5_1 follow ggml's AVX2 `vec_dot` exactly. (Q4_0 follows llama.cpp's repacked
    /// q4_0_8x8 kernels instead, which type traits do not expose: checked end to end, see README.)
    @Test(arguments: ["Q5_0", "Q5_1"])
    func dotEqualsGGML(name: String) throws {
        let c = try #require(Self.fixture?.types.first { $0.type == name })
        let type = Self.type(name)
        let weights = Self.bytes(c.weights), activations = Self.bytes(c.quantized)
        for dot in c.dots {
            let value = weights.withUnsafeBytes { w in
                activations.withUnsafeBytes { a in
                    RowKernels.referenceDot(type, w.baseAddress! + dot.first * type.blockBytes,
                                            a.baseAddress! + dot.first * type.dotType.blockBytes, count: 32 * dot.count)
                }
            }
            #expect(value.bitPattern == dot.bits, "\(name) blocks \(dot.first)..<\(dot.first + dot.count): \(value) != \(Float(bitPattern: dot.bits))")
        }
    }
}
