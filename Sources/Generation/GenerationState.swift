import Foundation

/// One sequence's generation, step by step: sampling, stop conditions and UTF-8-safe text
/// streaming, without the forward passes (which the caller runs: `Generator`, or a scheduler that
/// batches many sequences).
public struct GenerationState {
    public let promptIDs: [Int]
    public let options: GenerationOptions
    let tokenizer: Tokenizer
    var sampler: Sampler
    public private(set) var outputIDs: [Int] = []
    var decoder = StreamingDecoder()
    /// All text so far, and how many characters of it were returned.
    var text = ""
    var emitted = 0
    public private(set) var stopReason: GenerationResult.StopReason?
    /// With `options.logprobs`: one entry per token of `outputIDs`.
    public private(set) var logprobs: [TokenLogprob] = []
    let stops: [String]

    public init(promptIDs: [Int], options: GenerationOptions, tokenizer: Tokenizer) throws(InferenceError) {
        guard options.maxTokens >= 0 else {
            throw InferenceError(.invalidArgument, "max tokens must be >= 0, not \(options.maxTokens)")
        }
        self.promptIDs = promptIDs
        self.options = options
        self.tokenizer = tokenizer
        sampler = try Sampler(options.sampling)
        stops = options.stopStrings.filter { !$0.isEmpty }
        if options.maxTokens == 0 { stopReason = .length }
    }

    /// What one step produced: text to emit now, and the token to evaluate next (nil: finished).
    public struct Step {
        public let text: String
        public let next: Int?
    }

    public var isFinished: Bool { stopReason != nil }

    /// Takes the logits after the last evaluated token: samples, checks the stop conditions, and
    /// returns the text that is now safe to emit and the next token to evaluate (nil when the
    /// generation has finished; `result` then holds everything).
    public mutating func accept(logits: [Float]) -> Step {
        guard stopReason == nil else { return Step(text: flush(), next: nil) }
        let next = sampler.sample(logits, previous: promptIDs + outputIDs, generated: outputIDs)
        if options.stopAtEndOfGeneration && tokenizer.endOfGeneration.contains(next) {
            stopReason = .endOfGeneration
            return Step(text: flush(), next: nil)
        }
        outputIDs.append(next)
        if let k = options.logprobs { logprobs.append(TokenLogprob(logits: logits, chosen: next, top: k)) }
        text += decoder.append(tokenizer.piece(next))
        if let cut = Self.firstStop(in: text, stops) {
            text = String(text[..<cut])
            stopReason = .stopString
            return Step(text: flush(), next: nil)
        }
        if outputIDs.count >= options.maxTokens {
            stopReason = .length
            return Step(text: flush(), next: nil)
        }
        // Emit everything except a tail that could still become a stop string.
        let safe = text.count - Self.heldBack(text, stops)
        var piece = ""
        if safe > emitted {
            piece = String(text[text.index(text.startIndex, offsetBy: emitted) ..< text.index(text.startIndex, offsetBy: safe)])
            emitted = safe
        }
        return Step(text: piece, next: next)
    }

    /// Ends the generation early (the caller stops evaluating): for a cancelled request.
    public mutating func cancel() {
        if stopReason == nil { stopReason = .length }
    }

    /// At the end: the rest of the text (the decoder's held-back bytes, checked for stop strings).
    mutating func flush() -> String {
        if stopReason != .stopString {
            text += decoder.finish()
            if let cut = Self.firstStop(in: text, stops) {
                text = String(text[..<cut])
                stopReason = .stopString
            }
        }
        guard text.count > emitted else { return "" }
        let rest = String(text[text.index(text.startIndex, offsetBy: emitted)...])
        emitted = text.count
        return rest
    }

    /// The whole generation (meaningful once finished).
    public var result: GenerationResult {
        GenerationResult(promptIDs: promptIDs, outputIDs: outputIDs, text: text, stopReason: stopReason ?? .length)
    }

    /// Where the earliest stop string starts in `text`.
    static func firstStop(in text: String, _ stops: [String]) -> String.Index? {
        stops.compactMap { text.range(of: $0)?.lowerBound }.min()
    }

    /// Characters at the end of `text` that are a proper prefix of some stop string.
    static func heldBack(_ text: String, _ stops: [String]) -> Int {
        var longest = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, text.count), to: longest, by: -1)
            where text.hasSuffix(String(stop.prefix(length))) {
                longest = length
                break
            }
        }
        return longest
    }
}
