import GGUFTestSupport
import Testing
import ModelFormat

/// Parses `bytes`, expects a `GGUFError` about `field`, and checks that its reason mentions `reason`.
@discardableResult
func expectRefusal(
    _ bytes: [UInt8], field: String, _ reason: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) -> GGUFError? {
    guard let error = parseError(bytes) else {
        Issue.record("parsed, but expected an error about \(field)", sourceLocation: sourceLocation)
        return nil
    }
    #expect(error.field == field, "\(error)", sourceLocation: sourceLocation)
    if let reason {
        #expect(error.reason.contains(reason), "\(error)", sourceLocation: sourceLocation)
    }
    #expect(error.offset != nil, "\(error)", sourceLocation: sourceLocation)
    return error
}

/// Header bytes: magic, version 3, the two counts.
func header(tensors: UInt64 = 0, metadata: UInt64) -> [UInt8] {
    Array("GGUF".utf8) + le(UInt32(3)) + le(tensors) + le(metadata)
}

/// One validation rule per test, each named after the defect it refuses.
@Suite("GGUF validation")
struct GGUFValidationTests {
    // MARK: Header

    @Test func refusesTruncatedHeader() {
        let empty = expectRefusal([], field: "header.magic")
        #expect(empty?.kind == .truncated(need: 4, have: 0))
        expectRefusal(Array("GG".utf8), field: "header.magic")
        expectRefusal(Array("GGUF".utf8) + [3, 0], field: "header.version")
        let cut = expectRefusal(Array("GGUF".utf8) + le(UInt32(3)) + [1, 0, 0, 0], field: "header.tensor_count")
        #expect(cut?.kind == .truncated(need: 8, have: 4))
        #expect(cut?.offset == 8)
        expectRefusal(Array(GGUFBuilder().build().prefix(20)), field: "header.metadata_kv_count")
    }

    @Test func refusesBadMagic() {
        var builder = GGUFBuilder()
        builder.magic = Array("GGML".utf8)
        expectRefusal(builder.build(), field: "header.magic", "not a GGUF file")
    }

    @Test func refusesBigEndian() {
        var builder = GGUFBuilder()
        builder.version = UInt32(3).byteSwapped
        let error = expectRefusal(builder.build(), field: "header.version", "big-endian GGUF is not supported")
        #expect(error?.kind == .unsupported("big-endian GGUF is not supported (version 3 is byte-swapped)"))
        builder.version = 3
        builder.magic = Array("FUGG".utf8)
        expectRefusal(builder.build(), field: "header.magic", "big-endian GGUF is not supported")
    }

    @Test func refusesVersion1() {
        var builder = GGUFBuilder()
        builder.version = 1
        let error = expectRefusal(builder.build(), field: "header.version", "version 1 is not supported")
        #expect(error?.offset == 4)
    }

    @Test(arguments: [UInt32(0), 4, 0xFFFF])
    func refusesUnknownVersion(version: UInt32) {
        var builder = GGUFBuilder()
        builder.version = version
        expectRefusal(builder.build(), field: "header.version", "unknown GGUF version \(version)")
    }

    @Test(arguments: [UInt64.max, 1 << 62, 1 << 40, 4])
    func refusesHugeTensorCount(count: UInt64) {
        var builder = GGUFBuilder.sample()
        builder.tensors = []
        builder.tensorCountOverride = count
        builder.metadata = [(Array("k".utf8), .uint8(1))]
        expectRefusal(builder.build(), field: "header.tensor_count", "tensor infos")
    }

    @Test(arguments: [UInt64.max, 1 << 60, 1 << 20])
    func refusesHugeMetadataCount(count: UInt64) {
        var builder = GGUFBuilder.sample()
        builder.metadataCountOverride = count
        expectRefusal(builder.build(), field: "header.metadata_kv_count", "key/value pairs")
    }

    @Test func refusesCountsThatOnlyFitSeparately() {
        // 100 bytes after the header: room for 7 key/value pairs or 3 tensor infos, not both.
        let bytes = header(tensors: 3, metadata: 7) + [UInt8](repeating: 1, count: 100)
        expectRefusal(bytes, field: "header.metadata_kv_count", "cannot fit")
    }

    @Test func refusesMoreMetadataThanTheLimit() {
        let count = (1 << 16) + 1
        let bytes = header(metadata: UInt64(count)) + [UInt8](repeating: 0, count: count * 14)
        let error = expectRefusal(bytes, field: "header.metadata_kv_count", "exceed this reader's limit of 65536")
        if case .unsupported = error?.kind {} else { Issue.record("expected .unsupported, got \(String(describing: error))") }
    }

    @Test func refusesMoreTensorsThanTheLimit() {
        let count = (1 << 20) + 1
        let bytes = header(tensors: UInt64(count), metadata: 0) + [UInt8](repeating: 0, count: count * 33)
        expectRefusal(bytes, field: "header.tensor_count", "exceed this reader's limit of 1048576")
    }

    // MARK: Metadata keys

    @Test func refusesMissingMetadata() {
        var builder = GGUFBuilder()
        builder.add("general.architecture", .string("llama"))
        builder.metadataCountOverride = 2
        let error = expectRefusal(builder.build(), field: "metadata[1].key")
        #expect(error?.kind == .truncated(need: 8, have: 0))
    }

    @Test func refusesTruncatedKey() {
        let bytes = header(metadata: 1) + le(UInt64(100)) + [UInt8](repeating: 0x61, count: 20)
        let error = expectRefusal(bytes, field: "metadata[0].key")
        #expect(error?.kind == .truncated(need: 100, have: 20))
        #expect(error?.offset == 24)
    }

    @Test func refusesKeyLengthBeyondInt() {
        let bytes = header(metadata: 1) + le(UInt64.max) + [UInt8](repeating: 0x61, count: 20)
        expectRefusal(bytes, field: "metadata[0].key", "truncated")
    }

    @Test func refusesEmptyKey() {
        var builder = GGUFBuilder()
        builder.metadata = [([], .uint32(1))]
        expectRefusal(builder.build(), field: "metadata[0].key", "name is empty")
    }

    @Test(arguments: [
        [0x67, 0xC3, 0x28],             // truncated two-byte sequence
        [0xC0, 0xAF],                   // overlong '/'
        [0xED, 0xA0, 0x80],             // UTF-16 surrogate
        [0xF4, 0x90, 0x80, 0x80],       // above U+10FFFF
        [0x61, 0xFF],                   // never valid
        [0xE2, 0x82],                   // cut short
    ] as [[UInt8]])
    func refusesInvalidUTF8Key(key: [UInt8]) {
        var builder = GGUFBuilder()
        builder.metadata = [(key, .uint32(1))]
        expectRefusal(builder.build(), field: "metadata[0].key", "not valid UTF-8")
    }

    @Test func refusesNULInKey() {
        var builder = GGUFBuilder()
        builder.metadata = [(Array("general.name".utf8) + [0] + Array("x".utf8), .uint32(1))]
        expectRefusal(builder.build(), field: "metadata[0].key", "NUL")
    }

    @Test func refusesDuplicateKey() {
        var builder = GGUFBuilder()
        builder.add("general.name", .string("a"))
        builder.add("general.name", .string("b"))
        let error = expectRefusal(builder.build(), field: "metadata[1].key", "duplicate key (first at metadata[0])")
        #expect(error?.subject == "key \"general.name\"")
    }

    // MARK: Metadata values

    @Test(arguments: [UInt32(13), 14, 0xFFFF_FFFF])
    func refusesUnknownValueType(type: UInt32) {
        var builder = GGUFBuilder()
        builder.add("k", GGUFBuilder.Value(type: type, payload: [0, 0, 0, 0]))
        let error = expectRefusal(builder.build(), field: "metadata[0].value_type", "unknown value type \(type)")
        #expect(error?.subject == "key \"k\"")
    }

    @Test func refusesInvalidBool() {
        var builder = GGUFBuilder()
        builder.add("flag", GGUFBuilder.Value(type: 7, payload: [2]))
        expectRefusal(builder.build(), field: "metadata[0].value", "bool must be 0 or 1, found 2")
    }

    @Test func refusesTruncatedValue() {
        var builder = GGUFBuilder()
        builder.add("k", GGUFBuilder.Value(type: 10, payload: [1, 2, 3]))
        let error = expectRefusal(builder.build(), field: "metadata[0].value")
        #expect(error?.kind == .truncated(need: 8, have: 3))
    }

    @Test func refusesTruncatedStringValue() {
        var builder = GGUFBuilder()
        builder.add("k", GGUFBuilder.Value(type: 8, payload: le(UInt64(50)) + Array("abc".utf8)))
        let error = expectRefusal(builder.build(), field: "metadata[0].value")
        #expect(error?.kind == .truncated(need: 50, have: 3))
    }

    @Test func refusesInvalidUTF8StringValue() {
        var builder = GGUFBuilder()
        builder.add("general.name", GGUFBuilder.Value(type: 8, payload: str([0x41, 0xC0, 0x80])))
        expectRefusal(builder.build(), field: "metadata[0].value", "not valid UTF-8")
    }

    @Test(arguments: [
        (UInt32(4), UInt64.max), (4, 1 << 62), (0, 1 << 40), (8, 1_000_000), (12, 3),
    ] as [(UInt32, UInt64)])
    func refusesHugeArrayCount(elementType: UInt32, count: UInt64) {
        var builder = GGUFBuilder()
        builder.add("tokenizer.ggml.tokens", .rawArray(elementType: elementType, count: count, payload: [UInt8](repeating: 0, count: 16)))
        expectRefusal(builder.build(), field: "metadata[0].value.count", "cannot fit in the remaining 16 bytes")
    }

    @Test func refusesNestedArray() {
        var builder = GGUFBuilder()
        let inner = le(UInt32(4)) + le(UInt64(1)) + le(UInt32(7))
        builder.add("nested", .rawArray(elementType: 9, count: 1, payload: inner))
        let error = expectRefusal(builder.build(), field: "metadata[0].value.element_type", "nested arrays are not supported")
        #expect(error?.kind == .unsupported("nested arrays are not supported"))
    }

    @Test func refusesUnknownArrayElementType() {
        var builder = GGUFBuilder()
        builder.add("a", .rawArray(elementType: 13, count: 1, payload: [0, 0, 0, 0]))
        expectRefusal(builder.build(), field: "metadata[0].value.element_type", "unknown array element type 13")
    }

    @Test func refusesTruncatedStringInArray() {
        var builder = GGUFBuilder()
        let payload = str(Array("a".utf8)) + str(Array("b".utf8)) + le(UInt64(1000)) + Array("c".utf8)
        builder.add("tokenizer.ggml.tokens", .rawArray(elementType: 8, count: 3, payload: payload))
        let error = expectRefusal(builder.build(), field: "metadata[0].value[2]")
        #expect(error?.kind == .truncated(need: 1000, have: 1))
        #expect(error?.subject == "key \"tokenizer.ggml.tokens\"")
    }

    @Test func refusesInvalidUTF8InArray() {
        var builder = GGUFBuilder()
        let payload = str(Array("ok".utf8)) + str([0xFE])
        builder.add("tokenizer.ggml.merges", .rawArray(elementType: 8, count: 2, payload: payload))
        expectRefusal(builder.build(), field: "metadata[0].value[1]", "not valid UTF-8")
    }

    @Test func refusesInvalidBoolInArray() {
        var builder = GGUFBuilder()
        builder.add("flags", .rawArray(elementType: 7, count: 3, payload: [1, 5, 0]))
        expectRefusal(builder.build(), field: "metadata[0].value[1]", "bool must be 0 or 1, found 5")
    }

    @Test func refusesAlignmentOfWrongType() {
        var builder = GGUFBuilder()
        builder.add("general.alignment", .uint64(32))
        let error = expectRefusal(builder.build(), field: "metadata[0].value_type", "general.alignment must be uint32, found uint64")
        #expect(error?.subject == "key \"general.alignment\"")
    }

    @Test(arguments: [UInt32(0), 3, 48, 0xFFFF_FFFF])
    func refusesAlignmentNotPowerOfTwo(alignment: UInt32) {
        var builder = GGUFBuilder()
        builder.add("general.name", .string("x"))
        builder.add("general.alignment", .uint32(alignment))
        builder.layoutAlignment = 32
        expectRefusal(builder.build(), field: "metadata[1].value", "nonzero power of two, found \(alignment)")
    }

    // MARK: Tensor infos

    @Test func refusesTruncatedTensorInfo() throws {
        let output = GGUFBuilder.sample().encode()
        // tensor[0] is "token_embd.weight": 8 + 17 name bytes, then n_dims; keep 2 of its 4 bytes.
        let error = expectRefusal(Array(output.bytes.prefix(output.tensorInfoStart + 27)), field: "tensor[0].n_dims")
        #expect(error?.kind == .truncated(need: 4, have: 2))
        #expect(error?.subject == "tensor \"token_embd.weight\"")
    }

    @Test func refusesEmptyTensorName() {
        var builder = GGUFBuilder.sample()
        builder.tensors[0].name = []
        expectRefusal(builder.build(), field: "tensor[0].name", "name is empty")
    }

    @Test func refusesInvalidUTF8TensorName() {
        var builder = GGUFBuilder.sample()
        builder.tensors[1].name = [0x62, 0x6C, 0x6B, 0x80]
        expectRefusal(builder.build(), field: "tensor[1].name", "not valid UTF-8")
    }

    @Test func refusesNULInTensorName() {
        var builder = GGUFBuilder.sample()
        builder.tensors[1].name = Array("output.weight".utf8) + [0]
        expectRefusal(builder.build(), field: "tensor[1].name", "NUL")
    }

    @Test func refusesDuplicateTensorName() {
        var builder = GGUFBuilder.sample()
        builder.tensors[2].name = builder.tensors[0].name
        let error = expectRefusal(builder.build(), field: "tensor[2].name", "duplicate tensor name (first at tensor[0])")
        #expect(error?.subject == "tensor \"token_embd.weight\"")
    }

    @Test(arguments: [UInt32(0), 5, 0xFFFF_FFFF])
    func refusesDimensionCountOutOfRange(count: UInt32) {
        var builder = GGUFBuilder.sample()
        builder.tensors[1].dimensionCount = count
        expectRefusal(builder.build(), field: "tensor[1].n_dims", "n_dims must be 1...4, found \(count)")
    }

    @Test func refusesZeroDimension() {
        var builder = GGUFBuilder.sample()
        builder.tensors[1].dims = [64, 0]
        let error = expectRefusal(builder.build(), field: "tensor[1].dims[1]", "dimension must be >= 1, found 0")
        #expect(error?.subject == "tensor \"blk.0.attn_norm.weight\"")
    }

    @Test func refusesDimensionBeyondInt() {
        var builder = GGUFBuilder.sample()
        builder.tensors[1].dims = [UInt64(Int.max) + 1]
        expectRefusal(builder.build(), field: "tensor[1].dims[0]", "does not fit in Int")
    }

    @Test func refusesElementCountOverflow() {
        var builder = GGUFBuilder()
        builder.tensors = [.init(name: Array("huge".utf8), dims: [1 << 32, 1 << 32], type: GGMLType.f32.id)]
        expectRefusal(builder.build(), field: "tensor[0].dims", "element count of [4294967296, 4294967296] overflows")
    }

    @Test func refusesByteCountOverflow() {
        // 2^62 elements fit in Int; 2^62 * 8 bytes do not.
        var builder = GGUFBuilder()
        builder.tensors = [.init(name: Array("huge".utf8), dims: [1 << 31, 1 << 31], type: GGMLType.f64.id)]
        expectRefusal(builder.build(), field: "tensor[0].dims", "byte size of F64")
    }

    @Test(arguments: [UInt32(4), 5, 31, 32, 33, 36, 0xFFFF_FFFF])
    func refusesUnknownTensorType(id: UInt32) {
        var builder = GGUFBuilder.sample()
        builder.tensors[2].type = id
        let error = expectRefusal(builder.build(), field: "tensor[2].type", "tensor \"output.weight\" has unknown ggml type id \(id)")
        if case .unsupported = error?.kind {} else { Issue.record("expected .unsupported, got \(String(describing: error))") }
    }

    @Test func refusesRowNotMultipleOfBlockSize() {
        var builder = GGUFBuilder.sample()
        builder.tensors[0].dims = [48, 5]
        expectRefusal(builder.build(), field: "tensor[0].dims[0]", "ne0 = 48 is not a multiple of the Q8_0 block size 32")
    }

    @Test func refusesMisalignedOffset() {
        var builder = GGUFBuilder.sample()
        builder.tensors[1].offset = 16 + 352
        expectRefusal(builder.build(), field: "tensor[1].offset", "offset 368 is not a multiple of the alignment 32")
    }

    @Test func refusesOffsetMisalignedForCustomAlignment() {
        var builder = GGUFBuilder.sample()
        builder.add("general.alignment", .uint32(256))
        builder.tensors[1].offset = 32
        expectRefusal(builder.build(), field: "tensor[1].offset", "not a multiple of the alignment 256")
    }

    // MARK: Tensor data

    @Test func refusesTensorOffsetOutsideFile() {
        var builder = GGUFBuilder.sample()
        builder.tensors[1].offset = 1 << 20
        expectRefusal(builder.build(), field: "tensor[1].offset", "extends past the end of the file")
    }

    @Test func refusesTensorOffsetOverflow() {
        var builder = GGUFBuilder.sample()
        builder.tensors[1].offset = UInt64(Int.max) & ~31
        expectRefusal(builder.build(), field: "tensor[1].offset", "overflows Int")
        builder.tensors[1].offset = UInt64.max & ~31
        expectRefusal(builder.build(), field: "tensor[1].offset", "does not fit in Int")
    }

    @Test func refusesTruncatedTensorData() throws {
        let bytes = GGUFBuilder.sample().build()
        let last = try #require(try parse(bytes).tensors.last)
        expectRefusal(Array(bytes.prefix(last.fileRange.upperBound - 1)), field: "tensor[2].offset", "extends past the end of the file")
    }

    @Test func refusesOverlappingTensors() {
        var builder = GGUFBuilder()
        builder.addTensor("a", .f32, [16])
        builder.addTensor("b", .f32, [16])
        builder.tensors[1].offset = 32
        let error = expectRefusal(builder.build(), field: "tensor[1].offset", "overlaps tensor[0] \"a\"")
        #expect(error?.subject == "tensor \"b\"")

        builder.tensors[1].offset = 0
        expectRefusal(builder.build(), field: "tensor[1].offset", "overlaps tensor[0] \"a\"")

        // The later tensor in the file may be the earlier one in the data.
        builder.tensors[0].offset = 32
        expectRefusal(builder.build(), field: "tensor[0].offset", "overlaps tensor[1] \"b\"")
    }

    @Test func refusesTrailingGarbage() {
        var builder = GGUFBuilder.sample()
        builder.trailing = [0xAA]
        expectRefusal(builder.build(), field: "tensor_data", "1 unexpected bytes after the tensor data")

        var empty = GGUFBuilder()
        empty.add("general.name", .string("no tensors"))
        empty.trailing = [UInt8](repeating: 0, count: 64)
        expectRefusal(empty.build(), field: "tensor_data", "unexpected bytes")
    }

    // MARK: Lazily decoded arrays stay memory-safe

    @Test func arrayAccessorsThrowIfBufferChangesAfterParsing() throws {
        var builder = GGUFBuilder()
        builder.add("tokenizer.ggml.tokens", .strings(["a", "b", "c"]))
        let file = try parse(builder.build())
        let tokens = try #require(file.array("tokenizer.ggml.tokens"))
        // Corrupt the second string's length (a misuse: the buffer must not change after parsing).
        let lengthOffset = tokens.byteRange.lowerBound + 9
        file.buffer.withUnsafeMutableBytes { $0.storeBytes(of: UInt64.max, toByteOffset: lengthOffset, as: UInt64.self) }
        let error = #expect(throws: GGUFError.self) { try tokens.strings() }
        #expect(error?.field == "metadata[0].value[1]")
    }
}
