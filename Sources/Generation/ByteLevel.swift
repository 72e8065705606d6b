/// GPT-2's byte-level alphabet: each of the 256 byte values is shown as one printable Unicode
/// character (the printable Latin-1 bytes as themselves, the others as U+0100 onwards, e.g. the
/// space as `Ġ` U+0120), so that every token is a string of such characters.
enum ByteLevel {
    /// `scalars[byte]`: the character that stands for `byte`.
    static let scalars: [Unicode.Scalar] = {
        var table = [Unicode.Scalar?](repeating: nil, count: 256)
        for byte in 0x21 ... 0x7e { table[byte] = Unicode.Scalar(UInt8(byte)) }
        for byte in 0xa1 ... 0xac { table[byte] = Unicode.Scalar(UInt8(byte)) }
        for byte in 0xae ... 0xff { table[byte] = Unicode.Scalar(UInt8(byte)) }
        var next: UInt32 = 256
        for byte in 0 ..< 256 where table[byte] == nil {
            table[byte] = Unicode.Scalar(next)
            next += 1
        }
        return table.map { $0! }
    }()

    /// The byte a character stands for, or nil when it is not one of the 256.
    static let bytes: [Unicode.Scalar: UInt8] = {
        var map: [Unicode.Scalar: UInt8] = [:]
        for (byte, scalar) in scalars.enumerated() { map[scalar] = UInt8(byte) }
        return map
    }()

    /// `text`'s UTF-8 bytes, each as its byte-level character.
    static func encode<S: Sequence>(_ utf8: S) -> String where S.Element == UInt8 {
        var out = String.UnicodeScalarView()
        for byte in utf8 { out.append(scalars[Int(byte)]) }
        return String(out)
    }

    /// The bytes of a token written in the byte-level alphabet. A character outside it (not
    /// produced by GPT-2 conversion) is kept as its own UTF-8.
    static func decode(_ token: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            if let byte = bytes[scalar] {
                out.append(byte)
            } else {
                out += Array(String(scalar).utf8)
            }
        }
        return out
    }
}
