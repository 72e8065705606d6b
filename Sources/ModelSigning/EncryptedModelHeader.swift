import Crypto
import Foundation

/// The header of an encrypted model (`<dir>/encrypted-model.json`, schema
/// `securenode.encrypted-model.v1`): which files the model has, their plaintext sizes, the chunk
/// size, the salt the chunk and header keys are derived with, a key check value, and a MAC over all
/// of it. It holds nothing secret: names and sizes are public in the signed manifest anyway.
///
/// Parsing checks, before anything is allocated by size: the file is at most 4 MiB of JSON; the
/// schema and cipher are the ones written here; the chunk size is a power of two from 4 KiB to
/// 16 MiB; salt, key check and MAC are hex of 16, 16 and 32 bytes; 1 to 100,000 files, each named by
/// a canonical relative path (or "." for a single-file model), no name twice, each at most 1 TiB,
/// each stored in the ciphertext file its index names (`file-<index>.bin`).
public struct EncryptedModelHeader: Sendable, Codable, Equatable {
    public static let schemaName = "securenode.encrypted-model.v1"
    public static let cipherName = "AES-256-GCM"
    public static let fileName = "encrypted-model.json"
    /// Where `model encrypt` puts the copied signature bundle.
    public static let signatureFileName = "model.sig"
    public static let maximumHeaderBytes = 4 << 20
    public static let maximumFiles = 100_000
    public static let maximumFileBytes = 1 << 40
    public static let chunkBytesRange = 4096...(16 << 20)
    public static let defaultChunkBytes = 1 << 20
    public static let tagBytes = 16

    public struct File: Sendable, Codable, Equatable {
        /// The manifest name: a relative POSIX path, or "." for a single-file model.
        public var name: String
        /// Plaintext size.
        public var bytes: Int
        /// The ciphertext file in the encrypted model's directory (`file-<index>.bin`).
        public var ciphertext: String
    }

    public var schema: String
    public var cipher: String
    public var chunkBytes: Int
    /// 16 random bytes (hex): the HKDF salt, so each encryption has its own chunk key.
    public var salt: String
    /// 16 bytes (hex) derived from the data key: tells a wrong key apart from tampering.
    public var keyCheck: String
    /// HMAC-SHA256 (hex) over ``binding`` with a key derived from the data key.
    public var mac: String
    public var files: [File]
    /// The signature bundle copied beside the ciphertext (informative; not authenticated, it is verified on its own).
    public var signature: String?

    public static func ciphertextName(index: Int) -> String { "file-\(index).bin" }

    /// Chunks of a file of `bytes` plaintext bytes: at least one, so an empty file still has an authenticated last chunk.
    public func chunkCount(bytes: Int) -> Int { max(1, (bytes + chunkBytes - 1) / chunkBytes) }

    /// Ciphertext size of a file: its plaintext and one tag per chunk.
    public func ciphertextBytes(_ file: File) -> Int { file.bytes + chunkCount(bytes: file.bytes) * Self.tagBytes }

    /// The canonical bytes the MAC covers and every chunk's additional data names (by their digest):
    /// schema, cipher, chunk size, salt, and each file's name, size and ciphertext name, length-prefixed.
    var binding: [UInt8] {
        var out: [UInt8] = []
        func string(_ s: String) { integer(UInt64(s.utf8.count), bytes: 4); out += Array(s.utf8) }
        func integer(_ v: UInt64, bytes: Int) { for i in (0..<bytes).reversed() { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        string(schema)
        string(cipher)
        integer(UInt64(chunkBytes), bytes: 8)
        out += ModelSigning.bytes(fromHex: salt) ?? []
        integer(UInt64(files.count), bytes: 4)
        for f in files {
            string(f.name)
            integer(UInt64(f.bytes), bytes: 8)
            string(f.ciphertext)
        }
        return out
    }

    /// Parses and checks header bytes (see the type's documentation for the checks, in order).
    public init(json data: [UInt8]) throws(EncryptedModelError) {
        guard data.count <= Self.maximumHeaderBytes else {
            throw EncryptedModelError(.headerUnreadable, "the header is \(data.count) bytes, more than \(Self.maximumHeaderBytes)")
        }
        let decoded: EncryptedModelHeader
        do {
            decoded = try JSONDecoder().decode(EncryptedModelHeader.self, from: Data(data))
        } catch {
            throw EncryptedModelError(.headerUnreadable, "the header is not a \(Self.schemaName) JSON object: \(Self.describe(error))")
        }
        try decoded.validate()
        self = decoded
    }

    init(chunkBytes: Int, salt: [UInt8], files: [File], signature: String?) {
        schema = Self.schemaName
        cipher = Self.cipherName
        self.chunkBytes = chunkBytes
        self.salt = hexString(salt)
        keyCheck = ""
        mac = ""
        self.files = files
        self.signature = signature
    }

    func validate() throws(EncryptedModelError) {
        func invalid(_ text: String) -> EncryptedModelError { EncryptedModelError(.headerInvalid, "header: \(text)") }
        guard schema == Self.schemaName else { throw invalid("schema is \"\(schema.prefix(80))\"; expected \"\(Self.schemaName)\"") }
        guard cipher == Self.cipherName else { throw invalid("cipher is \"\(cipher.prefix(80))\"; expected \"\(Self.cipherName)\"") }
        guard Self.chunkBytesRange.contains(chunkBytes), chunkBytes & (chunkBytes - 1) == 0 else {
            throw invalid("chunkBytes \(chunkBytes) is not a power of two from \(Self.chunkBytesRange.lowerBound) to \(Self.chunkBytesRange.upperBound)")
        }
        for (field, text, count) in [("salt", salt, 16), ("keyCheck", keyCheck, 16), ("mac", mac, 32)] {
            guard text.utf8.count == 2 * count, ModelSigning.bytes(fromHex: text) != nil else {
                throw invalid("\(field) must be \(2 * count) hex digits")
            }
        }
        guard (1...Self.maximumFiles).contains(files.count) else {
            throw invalid("files has \(files.count) entries; expected 1 to \(Self.maximumFiles)")
        }
        var seen = Set<String>()
        for (i, f) in files.enumerated() {
            do {
                try ModelPath.checkResourceName(f.name, field: "files[\(i)].name", singleFile: files.count == 1)
            } catch {
                throw invalid(error.reason)
            }
            guard seen.insert(f.name).inserted else { throw invalid("files[\(i)].name \"\(f.name)\" is listed twice") }
            guard (0...Self.maximumFileBytes).contains(f.bytes) else {
                throw invalid("files[\(i)].bytes \(f.bytes) is out of range (0 to \(Self.maximumFileBytes))")
            }
            guard f.ciphertext == Self.ciphertextName(index: i) else {
                throw invalid("files[\(i)].ciphertext is \"\(f.ciphertext.prefix(80))\"; expected \"\(Self.ciphertextName(index: i))\"")
            }
        }
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "\((context.codingPath + [key]).map(\.stringValue).joined(separator: ".")) is missing"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type"
        case DecodingError.dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not valid JSON" : "\(context.codingPath.map(\.stringValue).joined(separator: ".")) is malformed"
        default:
            return "unreadable"
        }
    }
}
