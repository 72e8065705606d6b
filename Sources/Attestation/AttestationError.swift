/// Why evidence, a profile or an enrollment record could not be used.
public struct AttestationError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Code: String, Sendable {
        case malformed
        case unsupported
        case invalidProfile
        case invalidEnrollment
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
