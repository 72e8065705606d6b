/// A set of bytes: one grammar terminal, matching one byte of the output.
public struct ByteSet: Hashable, Sendable {
    var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    public init() {}

    /// The bytes of `ranges`.
    public init(_ ranges: ClosedRange<UInt8>...) {
        for r in ranges { insert(r) }
    }

    public init(byte: UInt8) { insert(byte ... byte) }

    public mutating func insert(_ range: ClosedRange<UInt8>) {
        for b in range {
            let bit = UInt64(1) << UInt64(b & 63)
            switch b >> 6 {
            case 0: w0 |= bit
            case 1: w1 |= bit
            case 2: w2 |= bit
            default: w3 |= bit
            }
        }
    }

    /// The bytes not in this set.
    public var inverted: ByteSet {
        var s = ByteSet()
        s.w0 = ~w0
        s.w1 = ~w1
        s.w2 = ~w2
        s.w3 = ~w3
        return s
    }

    @inline(__always)
    public func contains(_ b: UInt8) -> Bool {
        let bit = UInt64(1) << UInt64(b & 63)
        switch b >> 6 {
        case 0: return w0 & bit != 0
        case 1: return w1 & bit != 0
        case 2: return w2 & bit != 0
        default: return w3 & bit != 0
        }
    }
}
