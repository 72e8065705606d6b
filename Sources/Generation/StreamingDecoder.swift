/// Turns token pieces into text as they come without ever emitting half a UTF-8 character: bytes
/// of an incomplete character at the end are held until the next piece completes them (or `finish`
/// flushes them as U+FFFD). Bytes that can never form a character are emitted as U+FFFD at once.
public struct StreamingDecoder: Sendable {
    private var pending: [UInt8] = []

    public init() {}

    /// Adds `bytes` and returns the text that is now complete (possibly empty).
    public mutating func append(_ bytes: [UInt8]) -> String {
        pending += bytes
        let complete = Self.completePrefixLength(pending)
        guard complete > 0 else { return "" }
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Whatever is held back, decoded (an unfinished character becomes U+FFFD), and resets.
    public mutating func finish() -> String {
        defer { pending = [] }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Bytes held back, waiting for the rest of a character.
    public var pendingByteCount: Int { pending.count }

    /// The length of the longest prefix of `bytes` that does not end inside a character that the
    /// following bytes could still complete.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        // Look back at most 3 bytes for the lead byte of the last character.
        var i = n - 1
        while i >= 0 && i >= n - 4 {
            let b = bytes[i]
            if b & 0xc0 != 0x80 { // not a continuation byte
                let needed: Int
                switch b {
                case 0xc2 ... 0xdf: needed = 2
                case 0xe0 ... 0xef: needed = 3
                case 0xf0 ... 0xf4: needed = 4
                default: needed = 1 // ASCII or an invalid lead byte: complete as it is
                }
                return n - i < needed ? i : n
            }
            i -= 1
        }
        return n
    }
}
