/// Why a GGUF file, or one of its values, was refused.
///
/// Every error names the field it is about with a path such as `header.version`,
/// `metadata[3].key`, `metadata[24].value[17]` or `tensor[12].dims[1]`, the key or tensor
/// name when it is already known (`subject`), and the absolute byte offset in the file.
public struct GGUFError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The field needs `need` bytes but only `have` remain in the buffer.
        case truncated(need: Int, have: Int)
        /// The field is present but its value breaks a rule of the format or of this reader.
        case invalid(String)
        /// The field is well-formed but names something this reader does not support
        /// (GGUF v1, big-endian files, nested arrays, unknown ggml types).
        case unsupported(String)
        /// A typed accessor asked for a different value type than the one stored.
        case typeMismatch(expected: GGUFValueType, found: GGUFValueType)
        /// Reading the file from disk failed.
        case io(String)
        /// The buffer for the file could not be allocated.
        case allocationFailed(count: Int)
    }

    public let kind: Kind
    /// Path of the offending field, e.g. `tensor[12].dims[1]`.
    public let field: String
    /// The metadata key (`key "general.alignment"`) or tensor (`tensor "output.weight"`), when known.
    public let subject: String?
    /// Absolute byte offset of the field in the file, when it applies.
    public let offset: Int?

    public init(_ kind: Kind, field: String, subject: String? = nil, offset: Int? = nil) {
        self.kind = kind
        self.field = field
        self.subject = subject
        self.offset = offset
    }

    /// The rule that was broken, without the location.
    public var reason: String {
        switch kind {
        case let .truncated(need, have):
            "truncated: needs \(need) bytes but only \(have) remain"
        case let .invalid(reason), let .unsupported(reason), let .io(reason):
            reason
        case let .typeMismatch(expected, found):
            "expected a value of type \(expected) but found \(found)"
        case let .allocationFailed(count):
            "could not allocate \(count) bytes"
        }
    }

    /// One line: `GGUF tensor[12].dims[1] (tensor "blk.0.attn_q.weight") at byte 1234: dimension must be >= 1, found 0`.
    public var description: String {
        var text = "GGUF \(field)"
        if let subject { text += " (\(subject))" }
        if let offset { text += " at byte \(offset)" }
        return text + ": " + reason
    }
}
