/// A parsed, fully validated GGUF file (versions 2 and 3, little-endian) backed by a `GGUFBuffer`.
///
/// The input is untrusted. `parse(_:)` reads it through a bounds-checked cursor (`GGUFReader`),
/// never traps, never allocates in proportion to a count it has not checked against the bytes
/// that remain, and never copies tensor data. It checks, in this order:
///
/// 1. `header.magic`: at least 4 bytes, equal to `47 47 55 46` ("GGUF"); the byte-swapped
///    `FUGG` is reported as unsupported big-endian.
/// 2. `header.version`: 2 or 3. Version 1 (u32 counts) is refused as unsupported; a
///    byte-swapped 1, 2 or 3 as unsupported big-endian; anything else as an unknown version.
/// 3. `header.tensor_count`, `header.metadata_kv_count` (u64): each must fit in `Int`, and the
///    records they announce, at their smallest encoding (33 bytes per tensor info, 14 per
///    key/value pair), must fit in the remaining bytes, each alone and both together. Policy
///    limits: at most 65,536 key/value pairs and 1,048,576 tensors (refused as unsupported).
/// 4. For each `metadata[i]`:
///    - `key`: u64 length within the remaining bytes; non-empty, valid UTF-8, no NUL byte;
///      not a duplicate of an earlier key.
///    - `value_type`: one of the 13 known types (0...12).
///    - `value`: fixed-size scalars within the remaining bytes; `bool` must be 0 or 1; strings
///      as keys, but empty is allowed; arrays: `element_type` known and not itself an array
///      (nested arrays are refused as unsupported: one level only), `count` fitting in `Int` and,
///      at the element type's smallest size, in the remaining bytes. Then the whole array is
///      walked once: every string's length and UTF-8, every bool byte. Arrays are not decoded.
///    - `general.alignment`, if present, must be a `uint32` that is a nonzero power of two
///      (default 32).
/// 5. For each `tensor[i]`:
///    - `name`: as a key; not a duplicate of an earlier tensor name.
///    - `n_dims`: 1...4. `dims[d]`: each >= 1 and fitting in `Int`.
///    - `type`: a known ggml type id (`GGMLType`); unknown ids (4, 5, 31–33, > 35) are refused
///      naming the tensor and the id.
///    - `offset`: fits in `Int`.
///    - `dims`: the element count (product of dims) must not overflow; `dims[0]` must be a
///      multiple of the type's block size; the byte size `ne0 / block * typeSize * ne1 * ne2 * ne3`
///      must not overflow.
///    - `offset`: a multiple of the alignment.
/// 6. The tensor data section starts at `dataOffset`, the first multiple of the alignment at or
///    after the end of the tensor infos (overflow-checked). For each tensor,
///    `dataOffset + offset + byteCount` must not overflow and must lie within the file.
/// 7. No two tensors' data may overlap.
/// 8. After the last tensor's data only padding to the next multiple of the alignment may follow
///    (its bytes are not interpreted); with no tensors, nothing may follow the data section start.
///    Gaps between tensors are allowed (they are aligned padding in files from ggml's writers).
///
/// Each failure is a `GGUFError` naming the field (`tensor[12].dims[1]`), the key or tensor name
/// when known, and the byte offset.
public struct GGUFFile: Sendable {
    /// The bytes of the whole file; tensor views point into it.
    public let buffer: GGUFBuffer
    /// 2 or 3.
    public let version: UInt32
    /// All key/value pairs.
    public let metadata: [String: GGUFValue]
    /// The keys in file order.
    public let metadataKeys: [String]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// `general.alignment`, or 32.
    public let alignment: Int
    /// Absolute offset of the tensor data section; tensor offsets are relative to it.
    public let dataOffset: Int

    private let tensorIndex: [String: Int]

    init(buffer: GGUFBuffer, version: UInt32, metadata: [String: GGUFValue], metadataKeys: [String],
         tensors: [GGUFTensorInfo], alignment: Int, dataOffset: Int) {
        self.buffer = buffer
        self.version = version
        self.metadata = metadata
        self.metadataKeys = metadataKeys
        self.tensors = tensors
        self.alignment = alignment
        self.dataOffset = dataOffset
        self.tensorIndex = Dictionary(tensors.map { ($0.name, $0.index) }, uniquingKeysWith: { first, _ in first })
    }

    /// Parses and validates the file held by `buffer`. The buffer must not be modified afterwards.
    public static func parse(_ buffer: GGUFBuffer) throws(GGUFError) -> GGUFFile {
        try GGUFParser.parse(buffer)
    }

    /// Same as `GGUFFile.parse(buffer)`.
    public init(buffer: GGUFBuffer) throws(GGUFError) {
        self = try GGUFParser.parse(buffer)
    }

    public var fileSize: Int { buffer.count }

    // MARK: Metadata

    public subscript(key: String) -> GGUFValue? { metadata[key] }

    /// The value if it is a string.
    public func string(_ key: String) -> String? { metadata[key]?.stringValue }

    /// The value if it is stored as `uint32`.
    public func uint32(_ key: String) -> UInt32? {
        if case let .uint32(value) = metadata[key] { value } else { nil }
    }

    /// The value if it is stored as any integer type and fits in `Int`.
    public func int(_ key: String) -> Int? { metadata[key]?.intValue }

    /// The value if it is stored as `float32`.
    public func float(_ key: String) -> Float? {
        if case let .float32(value) = metadata[key] { value } else { nil }
    }

    /// The value if it is stored as `float32` or `float64`.
    public func double(_ key: String) -> Double? { metadata[key]?.doubleValue }

    /// The value if it is a bool.
    public func bool(_ key: String) -> Bool? { metadata[key]?.boolValue }

    /// The value if it is an array (not decoded; see `GGUFArray`).
    public func array(_ key: String) -> GGUFArray? { metadata[key]?.arrayValue }

    // MARK: Tensors

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// A zero-copy view of a tensor of this file; nil if `tensor` is not one of this file's infos.
    public func view(of tensor: GGUFTensorInfo) -> GGUFTensorView? {
        guard tensors.indices.contains(tensor.index), tensors[tensor.index] == tensor else { return nil }
        return GGUFTensorView(info: tensor, buffer: buffer)
    }

    /// A zero-copy view of the tensor called `name`.
    public func view(named name: String) -> GGUFTensorView? {
        tensor(named: name).map { GGUFTensorView(info: $0, buffer: buffer) }
    }

    /// Headline facts for a CLI.
    public var summary: GGUFSummary { GGUFSummary(self) }
}
