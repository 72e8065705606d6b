/// One validated tensor info record.
public struct GGUFTensorInfo: Sendable, Hashable, CustomStringConvertible {
    /// Position in the file's tensor info list.
    public let index: Int
    public let name: String
    /// Dimensions in ggml order (`ne0`, the contiguous row length, first); 1 to 4 of them, each >= 1.
    public let dims: [Int]
    public let type: GGMLType
    /// Offset of the data relative to the start of the tensor data section (`GGUFFile.dataOffset`).
    public let offset: Int
    /// `dims[0] / type.blockSize * type.typeSize * dims[1] * …`.
    public let byteCount: Int
    /// Product of the dimensions.
    public let elementCount: Int
    /// Absolute byte range of the data in the file (and buffer).
    public let fileRange: Range<Int>

    public var description: String {
        "\(name) \(type) \(dims) @\(offset) (\(byteCount) bytes)"
    }
}

/// A zero-copy view of one tensor's bytes inside the file's buffer.
public struct GGUFTensorView: Sendable {
    public let info: GGUFTensorInfo
    /// The buffer the bytes live in; the view keeps it alive.
    public let buffer: GGUFBuffer

    init(info: GGUFTensorInfo, buffer: GGUFBuffer) {
        self.info = info
        self.buffer = buffer
    }

    public var count: Int { info.byteCount }

    /// Calls `body` with the tensor's bytes, in place.
    public func withUnsafeBytes<R, E: Error>(
        _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try buffer.withUnsafeBytes { (all) throws(E) -> R in
            // The range was checked against this buffer at parse time; clamping keeps that true
            // even for a view built by hand.
            try body(UnsafeRawBufferPointer(rebasing: all[info.fileRange.clamped(to: 0 ..< all.count)]))
        }
    }
}
