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
        var sampler = try Sampler(options.sampling)
        let session = try model.makeSession(contextLength: max(needed, 1))
        var logits = try session.evaluate(promptIDs)
        var output: [Int] = []
        var decoder = StreamingDecoder()
        var text = ""        // all text so far
        var emitted = 0      // characters of `text` already passed to onText
        var reason = GenerationResult.StopReason.length
        let stops = options.stopStrings.filter { !$0.isEmpty }

        while output.count < options.maxTokens {
            let next = sampler.sample(logits, previous: promptIDs + output)
            if options.stopAtEndOfGeneration && tokenizer.endOfGeneration.contains(next) {
                reason = .endOfGeneration
                break
            }
            output.append(next)
            text += decoder.append(tokenizer.piece(next))
            if let cut = Self.firstStop(in: text, stops) {
                text = String(text[..<cut])
                reason = .stopString
                break
            }
            // Emit everything except a tail that could still become a stop string.
            let safe = text.count - Self.heldBack(text, stops)
            if safe > emitted {
                let start = text.index(text.startIndex, offsetBy: emitted)
                let end = text.index(text.startIndex, offsetBy: safe)
                onText(String(text[start ..< end]))
                emitted = safe
            }
            if output.count == options.maxTokens { break }
            logits = try session.evaluate([next])
        }
        if reason != .stopString {
            text += decoder.finish()
            if let cut = Self.firstStop(in: text, stops) {
                text = String(text[..<cut])
                reason = .stopString
            }
        }
        if text.count > emitted {
            onText(String(text[text.index(text.startIndex, offsetBy: emitted)...]))
        }
        return GenerationResult(promptIDs: promptIDs, outputIDs: output, text: text, stopReason: reason)
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
