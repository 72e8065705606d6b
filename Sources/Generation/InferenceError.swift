/// Why a model, a prompt or a request was refused. One line, naming the key, tensor or token at
/// fault; equality is on `code` (the reason is for people).
public struct InferenceError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// `general.architecture` is not one this engine runs.
        case unsupportedArchitecture
        /// A required metadata key is absent.
        case missingMetadata
        /// A metadata value has the wrong type or an impossible value.
        case invalidMetadata
        /// A tensor the architecture needs is absent.
        case missingTensor
        /// A tensor has the wrong shape, an unsupported type, or is not expected at all.
        case invalidTensor
        /// The tokenizer data (tokens, merges, token types, special ids) is missing or inconsistent,
        /// or its size disagrees with the embedding.
        case invalidVocabulary
        /// A prompt or generation does not fit in the context (or asks for more than the model's).
        case contextOverflow
        /// A token id outside the vocabulary.
        case invalidToken
        /// A chat template this engine cannot render, or messages it cannot render.
        case unsupportedTemplate
        /// A caller's argument is out of range (sampling parameters, sizes, stop strings).
        case invalidArgument
        /// A word (pre-token) of a prompt is longer than the caller's limit (`maxWordBytes`); the
        /// reason names its byte offset, its length and the limit.
        case wordTooLong
        /// A grammar (a response format's schema compiled) exceeds a limit, refers to itself without
        /// consuming input, or admits no finite output; the reason names which.
        case grammarRefused
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { reason }

    public static func == (lhs: InferenceError, rhs: InferenceError) -> Bool { lhs.code == rhs.code }
}
