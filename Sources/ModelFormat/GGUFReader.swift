/// A bounds-checked little-endian cursor over untrusted bytes.
///
/// Every read checks the remaining length first and throws `GGUFError` naming the field;
/// nothing here can trap on any input. Multi-byte values are read with `loadUnaligned`.
/// Field names are autoclosures so that the hot paths (tens of thousands of vocabulary strings)
/// build no strings unless they fail.
struct GGUFReader {
    let bytes: UnsafeRawBufferPointer
    /// Absolute offset of the next byte to read; always within `0...bytes.count`.
    private(set) var position: Int
    /// The key or tensor being read, for error messages.
    var subject: String?

    init(_ bytes: UnsafeRawBufferPointer, position: Int = 0) {
        self.bytes = bytes
        self.position = min(max(position, 0), bytes.count)
    }

    var remaining: Int { bytes.count - position }

    func error(_ kind: GGUFError.Kind, _ field: String, at offset: Int? = nil) -> GGUFError {
        GGUFError(kind, field: field, subject: subject, offset: offset ?? position)
    }

    func invalid(_ field: String, at offset: Int? = nil, _ reason: String) -> GGUFError {
        error(.invalid(reason), field, at: offset)
    }

    /// Throws `.truncated` unless `count` more bytes remain.
    func require(_ count: Int, _ field: @autoclosure () -> String) throws(GGUFError) {
        guard count <= remaining else {
            throw error(.truncated(need: count, have: remaining), field())
        }
    }

    mutating func read<T: FixedWidthInteger>(
        _: T.Type, _ field: @autoclosure () -> String
    ) throws(GGUFError) -> T {
        let size = MemoryLayout<T>.size
        try require(size, field())
        let value = bytes.loadUnaligned(fromByteOffset: position, as: T.self)
        position += size
        return T(littleEndian: value)
    }

    mutating func readFloat32(_ field: @autoclosure () -> String) throws(GGUFError) -> Float {
        Float(bitPattern: try read(UInt32.self, field()))
    }

    mutating func readFloat64(_ field: @autoclosure () -> String) throws(GGUFError) -> Double {
        Double(bitPattern: try read(UInt64.self, field()))
    }

    /// Returns the next `count` bytes (a view, not a copy) and moves past them.
    mutating func readBytes(
        _ count: Int, _ field: @autoclosure () -> String
    ) throws(GGUFError) -> UnsafeRawBufferPointer {
        guard count >= 0 else { throw invalid(field(), "negative length \(count)") }
        try require(count, field())
        let slice = UnsafeRawBufferPointer(rebasing: bytes[position ..< position + count])
        position += count
        return slice
    }

    /// Moves past `count` bytes.
    mutating func skip(_ count: Int, _ field: @autoclosure () -> String) throws(GGUFError) {
        guard count >= 0 else { throw invalid(field(), "negative length \(count)") }
        try require(count, field())
        position += count
    }

    /// Reads a GGUF string (u64 length, then that many bytes) and returns its bytes, after
    /// checking the length against the remaining bytes and the bytes for valid UTF-8.
    mutating func readStringBytes(
        _ field: @autoclosure () -> String
    ) throws(GGUFError) -> UnsafeRawBufferPointer {
        let start = position
        let length = try read(UInt64.self, field())
        guard let count = Int(exactly: length), count <= remaining else {
            throw error(.truncated(need: Int(clamping: length), have: remaining), field(), at: start)
        }
        let text = try readBytes(count, field())
        guard String(validating: text, as: UTF8.self) != nil else {
            throw invalid(field(), at: start, "string of \(count) bytes is not valid UTF-8")
        }
        return text
    }

    /// Reads a GGUF string value (may be empty).
    mutating func readString(_ field: @autoclosure () -> String) throws(GGUFError) -> String {
        String(decoding: try readStringBytes(field()), as: UTF8.self)
    }

    /// Reads a key or tensor name: a GGUF string that must be non-empty, valid UTF-8 and free of
    /// NUL bytes (C code would see a different, shorter name).
    mutating func readName(_ field: @autoclosure () -> String) throws(GGUFError) -> String {
        let start = position
        let text = try readStringBytes(field())
        guard !text.isEmpty else { throw invalid(field(), at: start, "name is empty") }
        guard !text.contains(0) else { throw invalid(field(), at: start, "name contains a NUL byte") }
        return String(decoding: text, as: UTF8.self)
    }
}
