/// A metadata value. Scalars and strings are decoded at parse time; arrays stay in the buffer
/// as a validated, lazily decoded `GGUFArray`.
public enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint8(UInt8)
    case int8(Int8)
    case uint16(UInt16)
    case int16(Int16)
    case uint32(UInt32)
    case int32(Int32)
    case float32(Float)
    case bool(Bool)
    case string(String)
    case array(GGUFArray)
    case uint64(UInt64)
    case int64(Int64)
    case float64(Double)

    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .float32: .float32
        case .bool: .bool
        case .string: .string
        case .array: .array
        case .uint64: .uint64
        case .int64: .int64
        case .float64: .float64
        }
    }

    /// Any integer type, if the value fits in `Int`.
    public var intValue: Int? {
        switch self {
        case let .uint8(v): Int(v)
        case let .int8(v): Int(v)
        case let .uint16(v): Int(v)
        case let .int16(v): Int(v)
        case let .uint32(v): Int(exactly: v)
        case let .int32(v): Int(v)
        case let .uint64(v): Int(exactly: v)
        case let .int64(v): Int(exactly: v)
        default: nil
        }
    }

    /// `float32` or `float64`, widened to `Double`.
    public var doubleValue: Double? {
        switch self {
        case let .float32(v): Double(v)
        case let .float64(v): v
        default: nil
        }
    }

    public var stringValue: String? {
        if case let .string(v) = self { v } else { nil }
    }

    public var boolValue: Bool? {
        if case let .bool(v) = self { v } else { nil }
    }

    public var arrayValue: GGUFArray? {
        if case let .array(v) = self { v } else { nil }
    }

    public var description: String {
        switch self {
        case let .uint8(v): "\(v)"
        case let .int8(v): "\(v)"
        case let .uint16(v): "\(v)"
        case let .int16(v): "\(v)"
        case let .uint32(v): "\(v)"
        case let .int32(v): "\(v)"
        case let .float32(v): "\(v)"
        case let .bool(v): "\(v)"
        case let .string(v): "\"\(v)\""
        case let .array(v): "\(v)"
        case let .uint64(v): "\(v)"
        case let .int64(v): "\(v)"
        case let .float64(v): "\(v)"
        }
    }
}
