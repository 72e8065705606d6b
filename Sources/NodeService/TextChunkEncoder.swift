import Foundation
import NIOCore

/// Writes the streamed text chunks of one choice (`data: {...}\n\n` with only the text changing from
/// chunk to chunk) without running a `JSONEncoder` per token: the chunk is encoded once with a
/// marker in place of the text and cut around the marker; each token's event is the part before,
/// the text escaped as a JSON string, and the part after. It parses to what `JSONEncoder` writes for
/// the same chunk (`TextChunkEncoderTests`); the keys keep the order of that one encoding (the
/// encoder's own order is unspecified: it keeps an object's keys in a dictionary).
///
/// `init` returns nil, and the caller encodes as before, when the template cannot be cut safely
/// (the marker appears more than once, say in a client's `model` string) or when `escape` does not
/// round-trip through this platform's `JSONDecoder` (checked once per process on every ASCII
/// character and a few others).
struct TextChunkEncoder: Sendable {
    let prefix: [UInt8]
    let suffix: [UInt8]

    /// `encode(text)` must be the chunk for `text` (without `data: `).
    init?(_ encode: (String) throws -> Data) {
        guard Self.escapingRoundTrips else { return nil }
        let marker = "securenode-text-marker-7f3a9c"
        guard let data = try? encode(marker) else { return nil }
        let bytes = Array(data)
        let inner = Array(marker.utf8)
        guard let start = Self.find(inner, in: bytes[...]), Self.find(inner, in: bytes[(start + inner.count)...]) == nil else { return nil }
        prefix = Array("data: ".utf8) + bytes[..<start]
        suffix = Array(bytes[(start + inner.count)...]) + Array("\n\n".utf8)
    }

    /// Whether `escape` gives JSON strings that decode to the text, for every ASCII character and a
    /// few others (checked once).
    static let escapingRoundTrips: Bool = {
        (try? JSONDecoder().decode(String.self, from: Data(quoted(probe)))) == probe
    }()

    /// The event for `text`.
    func event(_ text: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(prefix.count + suffix.count + text.utf8.count + 8)
        buffer.writeBytes(prefix)
        Self.escape(text, into: &buffer)
        buffer.writeBytes(suffix)
        return buffer
    }

    /// Characters whose escaping is checked against `JSONEncoder` before the fast path is used.
    static let probe: String = {
        var s = String((0 ..< 0x80).map { Character(Unicode.Scalar(UInt8($0))) })
        s += "é€😀\u{2028}\u{2029}\u{FFFD}\u{7F}\u{85}\u{A0}"
        return s
    }()

    /// `text` as a JSON string with its quotes.
    static func quoted(_ text: String) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8(ascii: "\""))
        escape(text, into: &buffer)
        buffer.writeInteger(UInt8(ascii: "\""))
        return Array(buffer.readableBytesView)
    }

    /// `text`'s UTF-8 with JSONEncoder's escapes (`.withoutEscapingSlashes`): `\"`, `\\`, `\b`, `\f`,
    /// `\n`, `\r`, `\t`, other control characters as `\u00xx`; everything else as it is.
    static func escape(_ text: String, into buffer: inout ByteBuffer) {
        var text = text
        text.withUTF8 { utf8 in
            var start = 0
            for (i, byte) in utf8.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(utf8)[start ..< i]))
                start = i + 1
                switch byte {
                case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
                case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
                case 0x08: buffer.writeStaticString("\\b")
                case 0x0C: buffer.writeStaticString("\\f")
                case 0x0A: buffer.writeStaticString("\\n")
                case 0x0D: buffer.writeStaticString("\\r")
                case 0x09: buffer.writeStaticString("\\t")
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    buffer.writeBytes([UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 15)]])
                }
            }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(utf8)[start...]))
        }
    }

    static func find(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard let first = needle.first, haystack.count >= needle.count else { return nil }
        var i = haystack.startIndex
        while i <= haystack.endIndex - needle.count {
            if haystack[i] == first && haystack[i ..< i + needle.count].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}
