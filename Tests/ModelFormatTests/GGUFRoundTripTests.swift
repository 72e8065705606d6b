import GGUFTestSupport
import Testing
@testable import ModelFormat

@Suite("GGUF round trips")
struct GGUFRoundTripTests {
    @Test("metadata of every value type", arguments: [UInt32(2), 3])
    func everyValueType(version: UInt32) throws {
        var builder = GGUFBuilder(version: version)
        builder.add("u8", .uint8(200))
        builder.add("i8", .int8(-100))
        builder.add("u16", .uint16(60000))
        builder.add("i16", .int16(-30000))
        builder.add("u32", .uint32(4_000_000_000))
        builder.add("i32", .int32(-2_000_000_000))
        builder.add("f32", .float32(1.5))
        builder.add("yes", .bool(true))
        builder.add("no", .bool(false))
        builder.add("s", .string("héllo ✓"))
        builder.add("empty", .string(""))
        builder.add("u64", .uint64(.max))
        builder.add("i64", .int64(.min))
        builder.add("f64", .float64(-2.25))
        let file = try parse(builder.build())

        #expect(file.version == version)
        #expect(file.metadataKeys == ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "yes", "no", "s", "empty", "u64", "i64", "f64"])
        #expect(file["u8"] == .uint8(200))
        #expect(file["i8"] == .int8(-100))
        #expect(file["u16"] == .uint16(60000))
        #expect(file["i16"] == .int16(-30000))
        #expect(file["u32"] == .uint32(4_000_000_000))
        #expect(file["i32"] == .int32(-2_000_000_000))
        #expect(file["f32"] == .float32(1.5))
        #expect(file["yes"] == .bool(true))
        #expect(file["no"] == .bool(false))
        #expect(file["s"] == .string("héllo ✓"))
        #expect(file["empty"] == .string(""))
        #expect(file["u64"] == .uint64(.max))
        #expect(file["i64"] == .int64(.min))
        #expect(file["f64"] == .float64(-2.25))
        #expect(file.tensors.isEmpty)
        #expect(file.alignment == 32)
    }

    @Test func typedAccessors() throws {
        var builder = GGUFBuilder()
        builder.add("u32", .uint32(7))
        builder.add("i16", .int16(-3))
        builder.add("u64big", .uint64(.max))
        builder.add("f32", .float32(0.5))
        builder.add("f64", .float64(0.25))
        builder.add("flag", .bool(true))
        builder.add("name", .string("x"))
        builder.add("list", .strings(["a"]))
        let file = try parse(builder.build())

        #expect(file.uint32("u32") == 7)
        #expect(file.uint32("i16") == nil)
        #expect(file.int("u32") == 7)
        #expect(file.int("i16") == -3)
        #expect(file.int("u64big") == nil)
        #expect(file.int("name") == nil)
        #expect(file.float("f32") == 0.5)
        #expect(file.float("f64") == nil)
        #expect(file.double("f32") == 0.5)
        #expect(file.double("f64") == 0.25)
        #expect(file.bool("flag") == true)
        #expect(file.bool("u32") == nil)
        #expect(file.string("name") == "x")
        #expect(file.string("missing") == nil)
        #expect(file.array("list")?.count == 1)
        #expect(file.array("name") == nil)
    }

    @Test func arraysDecodeOnlyWhenAsked() throws {
        let words = (0 ..< 1000).map { "tok\($0)·" }
        var builder = GGUFBuilder()
        builder.add("strings", .strings(words))
        builder.add("int32s", .int32s([-1, 0, 1, .max, .min]))
        builder.add("uint32s", .uint32s([0, 1, .max]))
        builder.add("floats", .float32s([0, -1.5, .infinity]))
        builder.add("bools", .bools([true, false, true]))
        builder.add("uint8s", .array(0, [.uint8(1), .uint8(255)]))
        builder.add("int8s", .array(1, [.int8(-128)]))
        builder.add("uint16s", .array(2, [.uint16(65535)]))
        builder.add("int16s", .array(3, [.int16(-2)]))
        builder.add("uint64s", .array(10, [.uint64(.max)]))
        builder.add("int64s", .array(11, [.int64(-5), .int64(5)]))
        builder.add("float64s", .array(12, [.float64(3.5)]))
        builder.add("none", .strings([]))
        let file = try parse(builder.build())

        let strings = try #require(file.array("strings"))
        #expect(strings.elementType == .string)
        #expect(strings.count == 1000)
        #expect(strings.key == "strings")
        #expect(try strings.strings() == words)
        #expect(try file.array("int32s")?.int32s() == [-1, 0, 1, .max, .min])
        #expect(try file.array("int32s")?.ints() == [-1, 0, 1, Int(Int32.max), Int(Int32.min)])
        #expect(try file.array("uint32s")?.uint32s() == [0, 1, .max])
        #expect(try file.array("floats")?.float32s() == [0, -1.5, .infinity])
        #expect(try file.array("bools")?.bools() == [true, false, true])
        #expect(try file.array("uint8s")?.uint8s() == [1, 255])
        #expect(try file.array("int8s")?.int8s() == [-128])
        #expect(try file.array("uint16s")?.uint16s() == [65535])
        #expect(try file.array("int16s")?.int16s() == [-2])
        #expect(try file.array("uint64s")?.uint64s() == [.max])
        #expect(try file.array("int64s")?.int64s() == [-5, 5])
        #expect(try file.array("float64s")?.float64s() == [3.5])
        #expect(try file.array("none")?.strings() == [])
        #expect(try file.array("int64s")?.values() == [.int64(-5), .int64(5)])
        #expect(try file.array("bools")?.values() == [.bool(true), .bool(false), .bool(true)])
    }

    @Test func arrayAccessorRefusesWrongElementType() throws {
        var builder = GGUFBuilder()
        builder.add("tokenizer.ggml.token_type", .int32s([1, 2]))
        let array = try #require(try parse(builder.build()).array("tokenizer.ggml.token_type"))
        let error = #expect(throws: GGUFError.self) { try array.strings() }
        #expect(error?.kind == .typeMismatch(expected: .string, found: .int32))
        #expect(error?.field == "metadata[0].value")
        #expect(error?.subject == "key \"tokenizer.ggml.token_type\"")
        #expect(throws: GGUFError.self) { try array.uint32s() }
        #expect(throws: GGUFError.self) { try array.float32s() }
        #expect(throws: GGUFError.self) { try singleArray(.array(10, [.uint64(.max)])).ints() }
    }

    private func singleArray(_ value: GGUFBuilder.Value) throws -> GGUFArray {
        var builder = GGUFBuilder()
        builder.add("a", value)
        return try #require(try parse(builder.build()).array("a"))
    }

    @Test("tensors of several types", arguments: [UInt32(2), 3])
    func tensorsOfSeveralTypes(version: UInt32) throws {
        let layout: [(String, GGMLType, [Int])] = [
            ("f32", .f32, [3]),
            ("f16", .f16, [5, 3]),
            ("bf16", .bf16, [2, 2, 2]),
            ("q4_0", .q4_0, [64, 2]),
            ("q8_0", .q8_0, [32, 3, 1, 2]),
            ("q4_k", .q4_k, [512]),
            ("q6_k", .q6_k, [256, 2]),
            ("iq4_xs", .iq4_xs, [256]),
            ("iq4_nl", .iq4_nl, [32]),
            ("tq1_0", .tq1_0, [256]),
            ("i8", .i8, [7]),
            ("f64", .f64, [1, 1, 1, 1]),
        ]
        var builder = GGUFBuilder(version: version)
        builder.add("general.architecture", .string("test"))
        for (name, type, dims) in layout { builder.addTensor(name, type, dims) }
        let output = builder.encode()
        let file = try parse(output.bytes)

        #expect(file.tensors.count == layout.count)
        #expect(file.dataOffset == output.dataOffset)
        #expect(file.dataOffset % 32 == 0)
        for (index, (name, type, dims)) in layout.enumerated() {
            let tensor = try #require(file.tensor(named: name))
            #expect(tensor.index == index)
            #expect(tensor.type == type)
            #expect(tensor.dims == dims)
            #expect(tensor.elementCount == dims.reduce(1, *))
            #expect(tensor.byteCount == dims[0] / type.blockSize * type.typeSize * dims.dropFirst().reduce(1, *))
            #expect(tensor.offset == output.dataOffsets[index])
            #expect(tensor.offset % 32 == 0)
            #expect(tensor.fileRange == file.dataOffset + tensor.offset ..< file.dataOffset + tensor.offset + tensor.byteCount)
            let view = try #require(file.view(named: name))
            let bytes = view.withUnsafeBytes { Array($0) }
            #expect(bytes == GGUFBuilder.filler(index: index, count: tensor.byteCount))
        }
        #expect(file.tensor(named: "missing") == nil)
    }

    @Test func tensorViewIsZeroCopy() throws {
        let file = try parse(GGUFBuilder.sample().build())
        let tensor = try #require(file.tensor(named: "output.weight"))
        let view = try #require(file.view(of: tensor))
        #expect(view.buffer === file.buffer)
        let (bufferStart, bufferEnd) = file.buffer.withUnsafeBytes { all in
            (Int(bitPattern: all.baseAddress), Int(bitPattern: all.baseAddress) + all.count)
        }
        let (viewStart, viewCount) = view.withUnsafeBytes { (Int(bitPattern: $0.baseAddress), $0.count) }
        #expect(viewStart == bufferStart + tensor.fileRange.lowerBound)
        #expect(viewStart >= bufferStart && viewStart + viewCount <= bufferEnd)
        #expect(viewCount == tensor.byteCount)
        #expect(bufferStart % GGUFBuffer.alignment == 0)
    }

    @Test func viewRefusesForeignTensorInfo() throws {
        let file = try parse(GGUFBuilder.sample().build())
        var other = GGUFBuilder.sample()
        other.tensors[2].dims = [512, 5]
        let foreign = try #require(try parse(other.build()).tensor(named: "output.weight"))
        #expect(file.view(of: foreign) == nil)
    }

    @Test func customAlignmentAndPadding() throws {
        var builder = GGUFBuilder.sample()
        builder.add("general.alignment", .uint32(64))
        let output = builder.encode()
        let file = try parse(output.bytes)
        #expect(file.alignment == 64)
        #expect(file.dataOffset % 64 == 0)
        #expect(file.tensors.allSatisfy { $0.offset % 64 == 0 })
        #expect(output.bytes.count % 64 == 0)

        builder.metadata[builder.metadata.count - 1].value = .uint32(1)
        #expect(try parse(builder.build()).alignment == 1)
    }

    @Test func paddingAfterLastTensorIsAllowed() throws {
        // The last tensor (Q8_0 [32, 1], 34 bytes) ends unaligned: the writer pads to 32.
        var builder = GGUFBuilder()
        builder.addTensor("t", .q8_0, [32])
        let bytes = builder.build()
        let file = try parse(bytes)
        #expect(bytes.count == file.dataOffset + 64)
        // Without the padding, too.
        #expect(try parse(Array(bytes.dropLast(30))).tensors.count == 1)
    }

    @Test func gapsBetweenTensorsAreAllowed() throws {
        var builder = GGUFBuilder()
        builder.addTensor("a", .f32, [8])
        builder.addTensor("b", .f32, [8])
        builder.tensors[1].offset = 64
        builder.trailing = [UInt8](repeating: 0, count: 32)
        let file = try parse(builder.build())
        #expect(file.tensors.map(\.offset) == [0, 64])
    }

    @Test func emptyFileWithHeaderOnly() throws {
        let file = try parse(GGUFBuilder().build())
        #expect(file.metadata.isEmpty)
        #expect(file.tensors.isEmpty)
        #expect(file.dataOffset == 32)
        #expect(file.fileSize == 24)
    }

    @Test func summary() throws {
        let summary = try parse(GGUFBuilder.sample().build()).summary
        #expect(summary.architecture == "llama")
        #expect(summary.name == "tiny")
        #expect(summary.tensorCount == 3)
        #expect(summary.metadataCount == 6)
        #expect(summary.tensorTypeCounts == [.q8_0: 1, .f32: 1, .q4_k: 1])
        #expect(summary.parameterCount == 64 * 5 + 64 + 256 * 5)
        #expect(summary.tensorBytes == 2 * 34 * 5 + 64 * 4 + 144 * 5)
        #expect(summary.typeCountsDescription == "F32: 1, Q8_0: 1, Q4_K: 1")
        #expect(summary.description.contains("architecture: llama"))
        #expect(GGUFSummary.abbreviated(134_515_008) == "134.5M")
        #expect(GGUFSummary.abbreviated(999) == "999")
    }

    @Test func errorDescriptionNamesFieldSubjectAndOffset() {
        let error = GGUFError(.invalid("dimension must be >= 1, found 0"), field: "tensor[12].dims[1]",
                              subject: "tensor \"blk.0.attn_q.weight\"", offset: 1234)
        #expect(error.description == "GGUF tensor[12].dims[1] (tensor \"blk.0.attn_q.weight\") at byte 1234: dimension must be >= 1, found 0")
        let truncated = GGUFError(.truncated(need: 8, have: 2), field: "metadata[3].key", offset: 40)
        #expect(truncated.description == "GGUF metadata[3].key at byte 40: truncated: needs 8 bytes but only 2 remain")
    }
}
