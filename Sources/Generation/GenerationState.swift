/// One sequence's generation, step by step: sampling, stop conditions and UTF-8-safe text
/// streaming, without the forward passes (which the caller runs: `Generator`, or a scheduler that
/// batches many sequences).
///
/// The output is kept as UTF-8 bytes and streamed by byte offset, always at character (scalar)
/// boundaries: everything before the tail that could still begin a stop string is emitted at once,
/// the rest when the generation finishes, so the pieces concatenated are `result.text` byte for
/// byte, even when a token only extends the previous grapheme (a combining mark, the second half of
/// a flag, a ZWJ sequence). Each step costs O(piece + stop strings' length), not O(output so far).
public struct GenerationState {
    public let promptIDs: [Int]
    public let options: GenerationOptions
    let tokenizer: Tokenizer
    var sampler: Sampler
    public private(set) var outputIDs: [Int] = []
    var decoder = StreamingDecoder()
    var stops: StopStringMatcher
    /// The output text's UTF-8 bytes so far (cut before a stop string once one appeared), and how
    /// many of them were returned.
    var bytes: [UInt8] = []
    var emitted = 0
    public private(set) var stopReason: GenerationResult.StopReason?
    /// With `options.logprobs`: one entry per token of `outputIDs`.
    public private(set) var logprobs: [TokenLogprob] = []
    /// With `options.grammar`: where the output stands in the grammar.
    public private(set) var constraint: TokenConstraint?

    /// Refuses negative `maxTokens`, invalid sampling parameters, more than
    /// `GenerationOptions.maxStopStrings` stop strings and a stop string longer than
    /// `GenerationOptions.maxStopStringBytes` UTF-8 bytes (all `.invalidArgument`).
    public init(promptIDs: [Int], options: GenerationOptions, tokenizer: Tokenizer) throws(InferenceError) {
        guard options.maxTokens >= 0 else {
            throw InferenceError(.invalidArgument, "max tokens must be >= 0, not \(options.maxTokens)")
        }
        guard options.stopStrings.count <= GenerationOptions.maxStopStrings else {
            throw InferenceError(.invalidArgument,
                                 "at most \(GenerationOptions.maxStopStrings) stop strings are allowed, not \(options.stopStrings.count)")
        }
        for (i, stop) in options.stopStrings.enumerated() where stop.utf8.count > GenerationOptions.maxStopStringBytes {
            throw InferenceError(.invalidArgument,
                                 "stop string \(i) is \(stop.utf8.count) UTF-8 bytes long, longer than the limit of \(GenerationOptions.maxStopStringBytes)")
        }
        self.promptIDs = promptIDs
        self.options = options
        self.tokenizer = tokenizer
        sampler = try Sampler(options.sampling)
        stops = StopStringMatcher(options.stopStrings)
        constraint = options.grammar.map(TokenConstraint.init)
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
        var next = sampler.sample(logits, previous: recentIDs, generated: outputIDs)
        if constraint != nil, !constraint!.allows(next) {
            // The model's choice breaks the grammar: choose again among the tokens it allows
            // (the fast path above costs one token's bytes; this one a walk of the vocabulary).
            let mask = constraint!.mask()
            guard mask.contains(where: { $0 != 0 }) else {
                stopReason = .length
                return Step(text: flush(), next: nil)
            }
            next = sampler.sample(logits, previous: recentIDs, generated: outputIDs, allowed: mask)
        }
        if options.stopAtEndOfGeneration && tokenizer.endOfGeneration.contains(next) {
            stopReason = .endOfGeneration
            return Step(text: flush(), next: nil)
        }
        if constraint != nil, !constraint!.accept(next) {
            // Cannot happen (`next` was allowed); if it did, the output ends rather than breaks the grammar.
            stopReason = .length
            return Step(text: flush(), next: nil)
        }
        outputIDs.append(next)
        if let k = options.logprobs { logprobs.append(TokenLogprob(logits: logits, chosen: next, top: k)) }
        if append(decoder.append(tokenizer.piece(next))) {
            return Step(text: flush(), next: nil)
        }
        if constraint?.isFinished == true {
            // The output is complete and nothing may follow: end as at an end-of-generation token.
            stopReason = .endOfGeneration
            return Step(text: flush(), next: nil)
        }
        if outputIDs.count >= options.maxTokens {
            stopReason = .length
            return Step(text: flush(), next: nil)
        }
        // Everything except a tail that could still become a stop string.
        return Step(text: emit(upTo: bytes.count - stops.heldBack), next: next)
    }

    /// Ends the generation early (the caller stops evaluating): for a cancelled request.
    public mutating func cancel() {
        if stopReason == nil { stopReason = .length }
    }

    /// The tokens the repetition penalty looks at: the last `repeatWindow` of prompt and output
    /// (none when the penalty is off), so a step does not copy the whole sequence.
    var recentIDs: [Int] {
        let p = sampler.parameters
        guard p.repetitionPenalty != 1, p.repeatWindow > 0 else { return [] }
        let fromOutput = outputIDs.suffix(p.repeatWindow)
        return Array(promptIDs.suffix(p.repeatWindow - fromOutput.count)) + fromOutput
    }

    /// Adds decoded text to the output; true when a stop string appeared (the output is then cut
    /// before it and `stopReason` is `.stopString`).
    mutating func append(_ text: String) -> Bool {
        guard !text.isEmpty else { return false }
        bytes += text.utf8
        guard let cut = stops.append(text.utf8) else { return false }
        bytes.removeSubrange(cut...)
        stopReason = .stopString
        return true
    }

    /// At the end: the rest of the text (the decoder's held-back bytes, checked for stop strings).
    mutating func flush() -> String {
        if stopReason != .stopString { _ = append(decoder.finish()) }
        return emit(upTo: bytes.count)
    }

    /// The output bytes from `emitted` to `end` (a character boundary) as text, marked emitted.
    mutating func emit(upTo end: Int) -> String {
        guard end > emitted else { return "" }
        defer { emitted = end }
        return String(decoding: bytes[emitted ..< end], as: UTF8.self)
    }

    /// The whole generation (meaningful once finished).
    public var result: GenerationResult {
        GenerationResult(promptIDs: promptIDs, outputIDs: outputIDs, text: String(decoding: bytes, as: UTF8.self),
                         stopReason: stopReason ?? .length)
    }
}
