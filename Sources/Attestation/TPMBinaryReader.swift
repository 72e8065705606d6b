/// A bounds-checked big-endian cursor over TPM wire structures (untrusted input).
struct TPMBinaryReader {
    let bytes: [UInt8]
    private(set) var offset = 0
    let what: String

    init(_ bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    var remaining: Int { bytes.count - offset }
    var atEnd: Bool { offset == bytes.count }

    mutating func take(_ n: Int, _ field: String) throws(AttestationError) -> [UInt8] {
        guard n >= 0, n <= remaining else {
            throw AttestationError(.malformed, "\(what).\(field): needs \(n) bytes at offset \(offset), \(remaining) left")
        }
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    mutating func u8(_ field: String) throws(AttestationError) -> UInt8 { try take(1, field)[0] }

    mutating func u16(_ field: String) throws(AttestationError) -> UInt16 {
        let b = try take(2, field)
        return UInt16(b[0]) << 8 | UInt16(b[1])
    }

    mutating func u32(_ field: String) throws(AttestationError) -> UInt32 {
        let b = try take(4, field)
        return b.reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func u64(_ field: String) throws(AttestationError) -> UInt64 {
        let b = try take(8, field)
        return b.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// A TPM2B: 16-bit size then that many bytes.
    mutating func sized(_ field: String, max: Int = 4096) throws(AttestationError) -> [UInt8] {
        let n = Int(try u16("\(field).size"))
        guard n <= max else { throw AttestationError(.malformed, "\(what).\(field): size \(n) exceeds \(max)") }
        return try take(n, field)
    }

    func expectEnd() throws(AttestationError) {
        guard atEnd else { throw AttestationError(.malformed, "\(what): \(remaining) unexpected trailing bytes") }
    }
}

enum TPMAlgorithm {
    static let rsa: UInt16 = 0x0001
    static let sha1: UInt16 = 0x0004
    static let sha256: UInt16 = 0x000B
    static let sha384: UInt16 = 0x000C
    static let null: UInt16 = 0x0010
    static let rsassa: UInt16 = 0x0014
    static let ecdsa: UInt16 = 0x0018
    static let ecc: UInt16 = 0x0023
    static let eccNistP256: UInt16 = 0x0003
}
