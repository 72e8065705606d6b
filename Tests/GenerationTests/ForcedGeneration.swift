@testable import Generation

/// Drives a `GenerationState` through chosen tokens, as a model would if its logits always put
/// those tokens first (greedy sampling on one-hot logits): streaming and stop strings without a
/// forward pass.
struct ForcedGeneration {
    let tokenizer: Tokenizer
    /// Normal tokens by their piece (bytes), the lowest id for each.
    let idsByPiece: [[UInt8]: Int]

    init(_ tokenizer: Tokenizer) {
        self.tokenizer = tokenizer
        var ids: [[UInt8]: Int] = [:]
        for id in 0 ..< tokenizer.count where tokenizer.attributes[id] == .normal {
            let piece = tokenizer.piece(id)
            if !piece.isEmpty, ids[piece] == nil { ids[piece] = id }
        }
        idsByPiece = ids
    }

    /// Token ids whose pieces spell `text`'s bytes, found by searching the vocabulary's pieces
    /// (the longest piece that fits, up to `longest` bytes: small pieces make tokens that end
    /// inside a character or extend the previous grapheme).
    func ids(spelling text: String, longest: Int = 3) -> [Int] {
        let bytes = Array(text.utf8)
        var ids: [Int] = []
        var i = 0
        while i < bytes.count {
            var length = min(longest, bytes.count - i)
            while length > 1, idsByPiece[Array(bytes[i ..< i + length])] == nil { length -= 1 }
            guard let id = idsByPiece[Array(bytes[i ..< i + length])] else { preconditionFailure("no token for byte \(bytes[i])") }
            ids.append(id)
            i += length
        }
        return ids
    }

    /// The id of the token whose piece is exactly `bytes`, if any.
    func id(ofPiece bytes: [UInt8]) -> Int? { idsByPiece[bytes] }

    struct Run {
        /// What each step returned (one per `accept`).
        var pieces: [String]
        var result: GenerationResult
        var state: GenerationState
        /// `state.stops.scanned` after each step.
        var scanned: [Int]
        var streamed: String { pieces.joined() }
    }

    /// Generates exactly `ids` (then stops: at `maxTokens = ids.count`), or fewer when a stop string cuts.
    func run(_ ids: [Int], stops: [String] = []) throws -> Run {
        var state = try GenerationState(promptIDs: [1], options: GenerationOptions(maxTokens: ids.count, stopStrings: stops),
                                        tokenizer: tokenizer)
        var pieces: [String] = [], scanned: [Int] = []
        var logits = [Float](repeating: 0, count: tokenizer.count)
        for id in ids {
            logits[id] = 1
            let step = state.accept(logits: logits)
            logits[id] = 0
            pieces.append(step.text)
            scanned.append(state.stops.scanned)
            if step.next == nil { break }
        }
        return Run(pieces: pieces, result: state.result, state: state, scanned: scanned)
    }
}
