import GGUFTestSupport
import Testing
import ModelFormat

/// Seeded, deterministic structured mutations of valid files: every parse must either succeed
/// (and then uphold the reader's guarantees) or throw `GGUFError`; a crash fails the whole run.
/// libFuzzer does the open-ended version of this: see fuzz/README.md.
@Suite("GGUF mutation fuzzing")
struct MutationFuzzTests {
    /// SplitMix64: small, seedable, good enough to spread mutations.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let interestingBytes: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF, 9, 13, 36]
    static let interestingWords: [UInt64] = [
        0, 1, 2, 3, 4, 5, 9, 32, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
        1 << 32, 1 << 62, UInt64(Int64.max), UInt64(Int64.max) + 1, .max, .max - 31,
    ]

    /// Valid inputs that exercise every code path: all value types, string/number arrays,
    /// many tensor types, custom alignment.
    static func seeds() -> [[UInt8]] {
        var everything = GGUFBuilder(version: 2)
        everything.add("u8", .uint8(1))
        everything.add("i8", .int8(-1))
        everything.add("u16", .uint16(2))
        everything.add("i16", .int16(-2))
        everything.add("i32", .int32(-3))
        everything.add("f32", .float32(0.5))
        everything.add("b", .bool(true))
        everything.add("u64", .uint64(4))
        everything.add("i64", .int64(-4))
        everything.add("f64", .float64(0.25))
        everything.add("bools", .bools([true, false]))
        everything.add("floats", .float32s([1, 2]))
        everything.add("general.alignment", .uint32(64))
        everything.addTensor("a", .q4_0, [64, 2])
        everything.addTensor("b", .iq2_xxs, [256])
        everything.addTensor("c", .f16, [3, 1, 1, 2])

        var tiny = GGUFBuilder()
        tiny.addTensor("x", .f32, [1])

        return [GGUFBuilder.sample().build(), GGUFBuilder.sample(version: 2).build(), everything.build(), tiny.build()]
    }

    static func mutate(_ input: [UInt8], using random: inout Generator) -> [UInt8] {
        var bytes = input
        for _ in 0 ..< Int.random(in: 1 ... 4, using: &random) {
            guard !bytes.isEmpty else { return bytes }
            let position = Int.random(in: 0 ..< bytes.count, using: &random)
            switch Int.random(in: 0 ..< 9, using: &random) {
            case 0: // flip a bit
                bytes[position] ^= 1 << UInt8.random(in: 0 ..< 8, using: &random)
            case 1: // overwrite a byte with an interesting value
                bytes[position] = interestingBytes.randomElement(using: &random) ?? 0
            case 2, 3: // overwrite a u32 or u64 with an interesting value, aligned or not
                let word = interestingWords.randomElement(using: &random) ?? 0
                let width = Bool.random(using: &random) ? 4 : 8
                let start = Bool.random(using: &random) ? position & ~(width - 1) : position
                for index in 0 ..< width where start + index < bytes.count {
                    bytes[start + index] = UInt8(truncatingIfNeeded: word >> (8 * index))
                }
            case 4: // truncate
                bytes.removeLast(bytes.count - position)
            case 5: // duplicate a range somewhere else
                let end = min(bytes.count, position + Int.random(in: 1 ... 64, using: &random))
                let target = Int.random(in: 0 ... bytes.count, using: &random)
                bytes.insert(contentsOf: bytes[position ..< end], at: target)
            case 6: // insert random bytes
                let count = Int.random(in: 1 ... 16, using: &random)
                bytes.insert(contentsOf: (0 ..< count).map { _ in UInt8.random(in: 0 ... 255, using: &random) }, at: position)
            case 7: // delete a range
                bytes.removeSubrange(position ..< min(bytes.count, position + Int.random(in: 1 ... 16, using: &random)))
            default: // random byte
                bytes[position] = UInt8.random(in: 0 ... 255, using: &random)
            }
        }
        return bytes
    }

    enum Outcome: Hashable { case parsed, truncated, invalid, unsupported, other }

    /// Parses `bytes`; on success checks the invariants that callers rely on.
    static func check(_ bytes: [UInt8], decodeArrays: Bool) throws -> Outcome {
        let file: GGUFFile
        do {
            file = try parse(bytes)
        } catch {
            #expect(!error.field.isEmpty)
            switch error.kind {
            case .truncated: return .truncated
            case .invalid: return .invalid
            case .unsupported: return .unsupported
            default: return .other
            }
        }
        #expect(file.version == 2 || file.version == 3)
        #expect(file.dataOffset % file.alignment == 0)
        #expect(file.metadataKeys.count == file.metadata.count)
        var previousEnd = 0
        for tensor in file.tensors.sorted(by: { $0.fileRange.lowerBound < $1.fileRange.lowerBound }) {
            #expect(tensor.fileRange.lowerBound >= max(previousEnd, file.dataOffset))
            #expect(tensor.fileRange.upperBound <= file.fileSize)
            #expect(tensor.byteCount == tensor.type.byteCount(dims: tensor.dims))
            #expect(file.view(of: tensor)?.withUnsafeBytes(\.count) == tensor.byteCount)
            previousEnd = tensor.fileRange.upperBound
        }
        if decodeArrays {
            // Validated at parse time, so decoding cannot fail.
            for key in file.metadataKeys {
                if let array = file.array(key) { _ = try array.values() }
            }
        }
        _ = file.summary.description
        return .parsed
    }

    @Test func builtFilesSurviveMutation() throws {
        var random = Generator(state: 0x5EC0_2E0D)
        var outcomes: [Outcome: Int] = [:]
        for seed in Self.seeds() {
            #expect(try Self.check(seed, decodeArrays: true) == .parsed)
            for _ in 0 ..< 1500 {
                let mutated = Self.mutate(seed, using: &random)
                outcomes[try Self.check(mutated, decodeArrays: true), default: 0] += 1
            }
        }
        // The mutations must reach both sides: files that still parse and every kind of refusal
        // (with this seed: about 1150 parse, 3500 invalid, 1100 truncated, 260 unsupported).
        #expect(outcomes[.parsed, default: 0] > 100, "\(outcomes)")
        #expect(outcomes[.truncated, default: 0] > 100, "\(outcomes)")
        #expect(outcomes[.invalid, default: 0] > 100, "\(outcomes)")
        #expect(outcomes[.unsupported, default: 0] > 10, "\(outcomes)")
        #expect(outcomes[.other, default: 0] == 0, "\(outcomes)")
    }

    @Test(.enabled(if: RealModel.isAvailable, RealModel.missingReason))
    func realModelHeaderSurvivesMutation() throws {
        let path = try #require(RealModel.path)
        let full = try GGUFBuffer.read(contentsOf: path)
        // The header, metadata and tensor infos are the first ~1.7 MiB; the tensor data is not
        // needed (truncated files are valid inputs: they must be refused cleanly).
        let head = full.withUnsafeBytes { Array($0.prefix(2 << 20)) }
        let small = Array(head.prefix(64 << 10))
        var random = Generator(state: 0x6775_6666)
        var outcomes: [Outcome: Int] = [:]
        for _ in 0 ..< 1500 {
            outcomes[try Self.check(Self.mutate(small, using: &random), decodeArrays: false), default: 0] += 1
        }
        // Mutations of the whole header walk the full vocabulary: fewer of them.
        for _ in 0 ..< 25 {
            outcomes[try Self.check(Self.mutate(head, using: &random), decodeArrays: false), default: 0] += 1
        }
        #expect(outcomes[.other, default: 0] == 0, "\(outcomes)")
        #expect(outcomes.values.reduce(0, +) == 1525)
    }
}
