/// A metadata array, validated at parse time but decoded only when asked.
///
/// The parser walked it once (every string length against the remaining bytes, every string's
/// UTF-8, every bool byte) and recorded where it lies; the accessors decode it from the buffer
/// on each call. They re-check every length while decoding, so they are memory-safe even if
/// the buffer was (wrongly) modified after parsing; they then throw instead of trapping.
/// Nested arrays are refused by the parser, so elements are never arrays.
public struct GGUFArray: Sendable, Equatable, CustomStringConvertible {
    /// Metadata key the array belongs to.
    public let key: String
    public let elementType: GGUFValueType
    public let count: Int
    /// Absolute byte range of the elements in the buffer (after the element type and count).
    public let byteRange: Range<Int>
    /// Field path for errors, e.g. `metadata[24].value`.
    let field: String
    let buffer: GGUFBuffer

    init(key: String, field: String, elementType: GGUFValueType, count: Int, byteRange: Range<Int>, buffer: GGUFBuffer) {
        self.key = key
        self.field = field
        self.elementType = elementType
        self.count = count
        self.byteRange = byteRange
        self.buffer = buffer
    }

    public var isEmpty: Bool { count == 0 }

    public var description: String { "[\(elementType) × \(count)]" }

    /// Equal when the element types, counts and encoded bytes are equal.
    public static func == (lhs: GGUFArray, rhs: GGUFArray) -> Bool {
        guard lhs.elementType == rhs.elementType, lhs.count == rhs.count,
              lhs.byteRange.count == rhs.byteRange.count
        else { return false }
        return lhs.withElementBytes { left in
            rhs.withElementBytes { right in left.elementsEqual(right) }
        }
    }

    // MARK: Decoding

    public func strings() throws(GGUFError) -> [String] {
        try check(.string)
        return try withReader { (reader) throws(GGUFError) -> [String] in
            var result: [String] = []
            result.reserveCapacity(min(count, reader.remaining / 8))
            for index in 0 ..< count {
                result.append(try reader.readString("\(field)[\(index)]"))
            }
            return result
        }
    }

    public func uint8s() throws(GGUFError) -> [UInt8] { try integers(UInt8.self, .uint8) }
    public func int8s() throws(GGUFError) -> [Int8] { try integers(Int8.self, .int8) }
    public func uint16s() throws(GGUFError) -> [UInt16] { try integers(UInt16.self, .uint16) }
    public func int16s() throws(GGUFError) -> [Int16] { try integers(Int16.self, .int16) }
    public func uint32s() throws(GGUFError) -> [UInt32] { try integers(UInt32.self, .uint32) }
    public func int32s() throws(GGUFError) -> [Int32] { try integers(Int32.self, .int32) }
    public func uint64s() throws(GGUFError) -> [UInt64] { try integers(UInt64.self, .uint64) }
    public func int64s() throws(GGUFError) -> [Int64] { try integers(Int64.self, .int64) }
    public func float32s() throws(GGUFError) -> [Float] { try integers(UInt32.self, .float32).map(Float.init(bitPattern:)) }
    public func float64s() throws(GGUFError) -> [Double] { try integers(UInt64.self, .float64).map(Double.init(bitPattern:)) }

    public func bools() throws(GGUFError) -> [Bool] {
        try check(.bool)
        return try withReader { (reader) throws(GGUFError) -> [Bool] in
            var result: [Bool] = []
            result.reserveCapacity(min(count, reader.remaining))
            for index in 0 ..< count {
                let byte = try reader.read(UInt8.self, "\(field)[\(index)]")
                guard byte <= 1 else {
                    throw reader.invalid("\(field)[\(index)]", at: reader.position - 1, "bool must be 0 or 1, found \(byte)")
                }
                result.append(byte == 1)
            }
            return result
        }
    }

    /// Elements of any integer type as `Int`; throws if one does not fit (a uint64 above `Int.max`).
    public func ints() throws(GGUFError) -> [Int] {
        func widen<T: BinaryInteger>(_ values: [T]) throws(GGUFError) -> [Int] {
            var result: [Int] = []
            result.reserveCapacity(values.count)
            for (index, value) in values.enumerated() {
                guard let wide = Int(exactly: value) else {
                    throw GGUFError(.invalid("value \(value) does not fit in Int"), field: "\(field)[\(index)]", subject: "key \"\(key)\"")
                }
                result.append(wide)
            }
            return result
        }
        switch elementType {
        case .uint8: return try widen(uint8s())
        case .int8: return try widen(int8s())
        case .uint16: return try widen(uint16s())
        case .int16: return try widen(int16s())
        case .uint32: return try widen(uint32s())
        case .int32: return try widen(int32s())
        case .uint64: return try widen(uint64s())
        case .int64: return try widen(int64s())
        default: throw mismatch(.int64)
        }
    }

    /// Every element as a `GGUFValue`.
    public func values() throws(GGUFError) -> [GGUFValue] {
        switch elementType {
        case .uint8: try uint8s().map(GGUFValue.uint8)
        case .int8: try int8s().map(GGUFValue.int8)
        case .uint16: try uint16s().map(GGUFValue.uint16)
        case .int16: try int16s().map(GGUFValue.int16)
        case .uint32: try uint32s().map(GGUFValue.uint32)
        case .int32: try int32s().map(GGUFValue.int32)
        case .float32: try float32s().map(GGUFValue.float32)
        case .bool: try bools().map(GGUFValue.bool)
        case .string: try strings().map(GGUFValue.string)
        case .uint64: try uint64s().map(GGUFValue.uint64)
        case .int64: try int64s().map(GGUFValue.int64)
        case .float64: try float64s().map(GGUFValue.float64)
        case .array: throw mismatch(.uint8) // unreachable: the parser refuses nested arrays
        }
    }

    // MARK: Helpers

    private func mismatch(_ expected: GGUFValueType) -> GGUFError {
        GGUFError(.typeMismatch(expected: expected, found: elementType), field: field, subject: "key \"\(key)\"")
    }

    private func check(_ expected: GGUFValueType) throws(GGUFError) {
        guard elementType == expected else { throw mismatch(expected) }
    }

    private func integers<T: FixedWidthInteger>(_: T.Type, _ expected: GGUFValueType) throws(GGUFError) -> [T] {
        try check(expected)
        return try withReader { (reader) throws(GGUFError) -> [T] in
            let size = MemoryLayout<T>.size
            let (total, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow else { throw reader.invalid(field, "\(count) elements overflow") }
            let bytes = try reader.readBytes(total, field)
            return [T](unsafeUninitializedCapacity: count) { elements, initialized in
                for index in 0 ..< count {
                    let raw = bytes.loadUnaligned(fromByteOffset: index * size, as: T.self)
                    elements.initializeElement(at: index, to: T(littleEndian: raw))
                }
                initialized = count
            }
        }
    }

    /// A reader over exactly the element bytes, positioned at their start; the range is
    /// clamped to the buffer so a foreign or stale range can never read outside it.
    private func withReader<R>(_ body: (inout GGUFReader) throws(GGUFError) -> R) throws(GGUFError) -> R {
        try buffer.withUnsafeBytes { (all) throws(GGUFError) -> R in
            let range = byteRange.clamped(to: 0 ..< all.count)
            var reader = GGUFReader(UnsafeRawBufferPointer(rebasing: all[..<range.upperBound]), position: range.lowerBound)
            reader.subject = "key \"\(key)\""
            return try body(&reader)
        }
    }

    private func withElementBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        buffer.withUnsafeBytes { all in
            body(UnsafeRawBufferPointer(rebasing: all[byteRange.clamped(to: 0 ..< all.count)]))
        }
    }
}
