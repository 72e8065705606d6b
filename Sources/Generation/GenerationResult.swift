/// What a generation produced.
public struct GenerationResult: Sendable, Equatable {
    public enum StopReason: String, Sendable {
        /// `maxTokens` were generated.
        case length
        /// An end-of-generation token came (not included in `outputIDs`).
        case endOfGeneration
        /// A stop string appeared (the text is cut before it; `outputIDs` include the token that completed it).
        case stopString
    }

    public let promptIDs: [Int]
    public let outputIDs: [Int]
    public let text: String
    public let stopReason: StopReason
}
