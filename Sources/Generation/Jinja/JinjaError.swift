/// Why a template could not be parsed or rendered. Each bound has its own kind, so a hostile
/// template is refused with a name, never a hang or a crash.
public struct JinjaError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The template text is not valid (in the subset this interpreter reads).
        case syntax
        /// A construct outside the subset, or one refused on purpose (`include`, `import`,
        /// `extends`, attribute access beyond data keys and the listed methods).
        case unsupported
        /// An operation on values of the wrong type, an undefined value used, a bad argument.
        case type
        /// The template called `raise_exception(message)`.
        case raised
        /// More evaluation steps than `JinjaLimits.steps` (a loop too long).
        case stepLimit
        /// More output (or a string/list value larger) than `JinjaLimits.outputBytes`.
        case outputLimit
        /// Nesting deeper than `JinjaLimits.depth` (parse nesting or macro recursion).
        case depthLimit
    }

    public let kind: Kind
    public let message: String
    /// 1-based line of the template where it happened, when known.
    public let line: Int?

    public init(_ kind: Kind, _ message: String, line: Int? = nil) {
        self.kind = kind
        self.message = message
        self.line = line
    }

    public var description: String {
        if let line { return "chat template line \(line): \(message)" }
        return "chat template: \(message)"
    }

    public static func == (a: JinjaError, b: JinjaError) -> Bool { a.kind == b.kind }
}

/// Bounds on one rendering.
public struct JinjaLimits: Sendable, Equatable {
    /// Expressions evaluated and statements executed.
    public var steps: Int
    /// UTF-8 bytes of output, and of any one string or list (in elements) the template builds.
    public var outputBytes: Int
    /// Nesting of parenthesised expressions and blocks when parsing, and of macro calls.
    public var depth: Int

    public init(steps: Int = 4_000_000, outputBytes: Int = 8 << 20, depth: Int = 64) {
        self.steps = steps
        self.outputBytes = outputBytes
        self.depth = depth
    }
}
