import ModelFormat

/// Shared by ModelFormatTests and InferenceTests (test-only code).
///
/// Writes GGUF bytes for tests: valid files by default (v2 or v3, any metadata, tensors of any
/// type with correct sizes and alignment padding), with overrides for every field that the
/// negative tests need to break.
public struct GGUFBuilder {
    /// A metadata value as encoded after its key: a type tag and a payload.
    public struct Value {
        public var type: UInt32
        public var payload: [UInt8]
        public init(type: UInt32, payload: [UInt8]) {
            self.type = type
            self.payload = payload
        }

        public static func uint8(_ v: UInt8) -> Value { Value(type: 0, payload: le(v)) }
        public static func int8(_ v: Int8) -> Value { Value(type: 1, payload: le(v)) }
        public static func uint16(_ v: UInt16) -> Value { Value(type: 2, payload: le(v)) }
        public static func int16(_ v: Int16) -> Value { Value(type: 3, payload: le(v)) }
        public static func uint32(_ v: UInt32) -> Value { Value(type: 4, payload: le(v)) }
        public static func int32(_ v: Int32) -> Value { Value(type: 5, payload: le(v)) }
        public static func float32(_ v: Float) -> Value { Value(type: 6, payload: le(v.bitPattern)) }
        public static func bool(_ v: Bool) -> Value { Value(type: 7, payload: [v ? 1 : 0]) }
        public static func string(_ v: String) -> Value { Value(type: 8, payload: str(Array(v.utf8))) }
        public static func uint64(_ v: UInt64) -> Value { Value(type: 10, payload: le(v)) }
        public static func int64(_ v: Int64) -> Value { Value(type: 11, payload: le(v)) }
        public static func float64(_ v: Double) -> Value { Value(type: 12, payload: le(v.bitPattern)) }

        /// An array of scalar or string values (their tags are dropped; all must share `elementType`).
        public static func array(_ elementType: UInt32, _ elements: [Value]) -> Value {
            rawArray(elementType: elementType, count: UInt64(elements.count), payload: elements.flatMap(\.payload))
        }
        public static func rawArray(elementType: UInt32, count: UInt64, payload: [UInt8]) -> Value {
            Value(type: 9, payload: le(elementType) + le(count) + payload)
        }
        public static func strings(_ v: [String]) -> Value { array(8, v.map(string)) }
        public static func int32s(_ v: [Int32]) -> Value { array(5, v.map(int32)) }
        public static func uint32s(_ v: [UInt32]) -> Value { array(4, v.map(uint32)) }
        public static func float32s(_ v: [Float]) -> Value { array(6, v.map(float32)) }
        public static func bools(_ v: [Bool]) -> Value { array(7, v.map(bool)) }
    }

    public struct Tensor {
        public var name: [UInt8]
        public var dims: [UInt64]
        public var type: UInt32
        /// Recorded offset; nil lays the tensor out after the previous one, aligned.
        public var offset: UInt64?
        /// Data bytes; nil writes a deterministic filler of the size the type and dims imply.
        public var data: [UInt8]?
        /// Recorded n_dims; nil writes `dims.count`.
        public var dimensionCount: UInt32?

        public init(name: [UInt8], dims: [UInt64], type: UInt32, offset: UInt64? = nil, data: [UInt8]? = nil,
                    dimensionCount: UInt32? = nil) {
            self.name = name
            self.dims = dims
            self.type = type
            self.offset = offset
            self.data = data
            self.dimensionCount = dimensionCount
        }
    }

    public var magic = Array("GGUF".utf8)
    public var version: UInt32 = 3
    public var metadata: [(key: [UInt8], value: Value)] = []
    public var tensors: [Tensor] = []
    public var tensorCountOverride: UInt64?
    public var metadataCountOverride: UInt64?
    /// Alignment used for the layout; nil takes `general.alignment` when it is a uint32, else 32.
    public var layoutAlignment: Int?
    /// Bytes appended after the padded tensor data.
    public var trailing: [UInt8] = []

    public init(version: UInt32 = 3) {
        self.version = version
    }

    public mutating func add(_ key: String, _ value: Value) {
        metadata.append((Array(key.utf8), value))
    }

    public mutating func addTensor(_ name: String, _ type: GGMLType, _ dims: [Int], data: [UInt8]? = nil) {
        tensors.append(Tensor(name: Array(name.utf8), dims: dims.map { UInt64($0) }, type: type.id, data: data))
    }

    public var alignment: Int {
        if let layoutAlignment { return layoutAlignment }
        if let entry = metadata.last(where: { $0.key == Array("general.alignment".utf8) }),
           entry.value.type == 4, entry.value.payload.count == 4 {
            let value = entry.value.payload.enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            if value > 0, value & (value - 1) == 0 { return value }
        }
        return 32
    }

    /// Size of a tensor's data: its explicit data, or what its type and dims imply (0 when they are invalid).
    public static func size(of tensor: Tensor) -> Int {
        if let data = tensor.data { return data.count }
        guard let type = GGMLType(rawValue: tensor.type) else { return 0 }
        let dims = tensor.dims.map { Int(exactly: $0) ?? -1 }
        guard dims.allSatisfy({ $0 >= 0 && $0 < 1 << 24 }) else { return 0 }
        return type.byteCount(dims: dims) ?? 0
    }

    /// The deterministic filler written for tensor `index` when it has no explicit data.
    public static func filler(index: Int, count: Int) -> [UInt8] {
        (0 ..< count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &* 7 &+ 1) }
    }

    /// The encoded file, and where its parts start.
    public struct Output {
        public var bytes: [UInt8]
        /// Absolute offset of the first tensor info.
        public var tensorInfoStart: Int
        /// Absolute offset of the tensor data section.
        public var dataOffset: Int
        /// Offsets (relative to the data section) where each tensor's data was written.
        public var dataOffsets: [Int]
    }

    public func build() -> [UInt8] { encode().bytes }

    public func encode() -> Output {
        let alignment = alignment
        var out: [UInt8] = magic + le(version)
        out += le(tensorCountOverride ?? UInt64(tensors.count))
        out += le(metadataCountOverride ?? UInt64(metadata.count))
        for (key, value) in metadata {
            out += str(key) + le(value.type) + value.payload
        }

        var dataOffsets: [Int] = []
        var cursor = 0
        for tensor in tensors {
            let offset = align(cursor, alignment)
            dataOffsets.append(offset)
            cursor = offset + Self.size(of: tensor)
        }

        let tensorInfoStart = out.count
        for (index, tensor) in tensors.enumerated() {
            out += str(tensor.name)
            out += le(tensor.dimensionCount ?? UInt32(tensor.dims.count))
            for dim in tensor.dims { out += le(dim) }
            out += le(tensor.type)
            out += le(tensor.offset ?? UInt64(dataOffsets[index]))
        }

        let dataOffset = align(out.count, alignment)
        if !tensors.isEmpty {
            out += [UInt8](repeating: 0, count: dataOffset - out.count)
            for (index, tensor) in tensors.enumerated() {
                out += [UInt8](repeating: 0, count: dataOffset + dataOffsets[index] - out.count)
                out += tensor.data ?? Self.filler(index: index, count: Self.size(of: tensor))
            }
            out += [UInt8](repeating: 0, count: align(out.count, alignment) - out.count)
        }
        out += trailing
        return Output(bytes: out, tensorInfoStart: tensorInfoStart, dataOffset: dataOffset, dataOffsets: dataOffsets)
    }
}

public func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

/// A GGUF string: u64 length and the bytes.
public func str(_ bytes: [UInt8]) -> [UInt8] { le(UInt64(bytes.count)) + bytes }

public func align(_ value: Int, _ alignment: Int) -> Int { (value + alignment - 1) / alignment * alignment }

/// Parses bytes the way the model loader does: into a `GGUFBuffer`, then `GGUFFile.parse`.
public func parse(_ bytes: [UInt8]) throws(GGUFError) -> GGUFFile {
    try GGUFFile.parse(GGUFBuffer(bytes: bytes))
}

/// The error parsing `bytes` throws, or nil if it parses.
public func parseError(_ bytes: [UInt8]) -> GGUFError? {
    do {
        _ = try parse(bytes)
        return nil
    } catch {
        return error
    }
}

extension GGUFBuilder {
    /// A small valid file with a bit of everything: used by many tests as a starting point.
    public static func sample(version: UInt32 = 3) -> GGUFBuilder {
        var builder = GGUFBuilder(version: version)
        builder.add("general.architecture", .string("llama"))
        builder.add("general.name", .string("tiny"))
        builder.add("llama.block_count", .uint32(2))
        builder.add("llama.rope.freq_base", .float32(10000))
        builder.add("tokenizer.ggml.tokens", .strings(["<s>", "</s>", "a", "b", "ab"]))
        builder.add("tokenizer.ggml.token_type", .int32s([3, 3, 1, 1, 1]))
        builder.addTensor("token_embd.weight", .q8_0, [64, 5])
        builder.addTensor("blk.0.attn_norm.weight", .f32, [64])
        builder.addTensor("output.weight", .q4_k, [256, 5])
        return builder
    }
}
