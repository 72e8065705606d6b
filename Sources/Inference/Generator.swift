import Foundation

/// What a generation is asked to do.
public struct GenerationOptions: Sendable {
    /// Most tokens to generate (>= 0).
    public var maxTokens: Int = 128
    public var sampling = SamplingParameters()
    /// Generation stops before the first occurrence of any of these strings in the output text
    /// (which is cut there).
    public var stopStrings: [String] = []
    /// Stop at an end-of-generation token (EOS, EOT, `<|im_end|>`, ...), which is not output.
    public var stopAtEndOfGeneration = true

    public init(maxTokens: Int = 128, sampling: SamplingParameters = SamplingParameters(), stopStrings: [String] = [],
                stopAtEndOfGeneration: Bool = true) {
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
        self.stopAtEndOfGeneration = stopAtEndOfGeneration
    }
}

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

/// The generation loop: evaluate the prompt, then sample, stream and evaluate one token at a time
/// until a stop condition. Text is streamed through `onText` in UTF-8-safe pieces, holding back any
/// tail that could be the start of a stop string.
public struct Generator {
    public let model: LlamaModel
    public let tokenizer: Tokenizer

    /// Checks that the tokenizer fits the model (same vocabulary size).
    public init(model: LlamaModel, tokenizer: Tokenizer) throws(InferenceError) {
        guard tokenizer.count == model.config.vocabularySize else {
            throw InferenceError(.invalidVocabulary,
                                 "vocabulary size mismatch: the tokenizer has \(tokenizer.count) tokens, the model \(model.config.vocabularySize)")
        }
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Generates from `promptIDs` in a fresh session sized `promptIDs.count + maxTokens` (refused if
    /// that exceeds the model's context length).
    public func generate(promptIDs: [Int], options: GenerationOptions,
                         onText: (String) -> Void = { _ in }) throws(InferenceError) -> GenerationResult {
        guard options.maxTokens >= 0 else {
            throw InferenceError(.invalidArgument, "max tokens must be >= 0, not \(options.maxTokens)")
        }
        guard !promptIDs.isEmpty else {
            throw InferenceError(.invalidArgument, "the prompt is empty (no tokens)")
        }
        let needed = promptIDs.count + options.maxTokens
        guard needed <= model.config.contextLength else {
            throw InferenceError(.contextOverflow,
                                 "the prompt (\(promptIDs.count) tokens) plus \(options.maxTokens) new tokens is longer than the model's context of \(model.config.contextLength)")
        }
        let session = try model.makeSession(contextLength: max(needed, 1))
        var state = try GenerationState(promptIDs: promptIDs, options: options, tokenizer: tokenizer)
        var logits = try session.evaluate(promptIDs)
        while true {
            let step = state.accept(logits: logits)
            if !step.text.isEmpty { onText(step.text) }
            guard let next = step.next else { break }
            logits = try session.evaluate([next])
        }
        return state.result
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
        let next = sampler.sample(logits, previous: promptIDs + outputIDs)
        if options.stopAtEndOfGeneration && tokenizer.endOfGeneration.contains(next) {
            stopReason = .endOfGeneration
            return Step(text: flush(), next: nil)
        }
        outputIDs.append(next)
        text += decoder.append(tokenizer.piece(next))
        if let cut = Generator.firstStop(in: text, stops) {
            text = String(text[..<cut])
            stopReason = .stopString
            return Step(text: flush(), next: nil)
        }
        if outputIDs.count >= options.maxTokens {
            stopReason = .length
            return Step(text: flush(), next: nil)
        }
        // Emit everything except a tail that could still become a stop string.
        let safe = text.count - Generator.heldBack(text, stops)
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
            if let cut = Generator.firstStop(in: text, stops) {
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
}
