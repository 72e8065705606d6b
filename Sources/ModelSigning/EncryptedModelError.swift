/// Why an encrypted model (`securenode model encrypt`) was refused, or could not be written.
///
/// Equality is on ``code`` only, as for ``ModelSigningError``: tests branch on what went wrong, the
/// ``reason`` names the file, chunk or field at fault (never key bytes).
public struct EncryptedModelError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        case headerUnreadable   // the header file is missing, too large, or not JSON
        case headerInvalid      // a field of the header is out of range or malformed (named)
        case wrongKey           // the key check value does not match: another key
        case headerTampered     // the header's MAC does not verify: it was edited after encryption
        case missingFile        // a ciphertext file named by the header is absent
        case sizeMismatch       // a ciphertext file is shorter or longer than its chunks (truncated, extended)
        case chunkTampered      // a chunk does not authenticate: changed, reordered, swapped or misplaced
        case invalidKey         // a data key that is not 32 bytes
        case output             // cannot write the encrypted model or the key
        case io
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { reason }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}
