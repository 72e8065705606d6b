import Generation

/// The generation loop: evaluate the prompt, then sample, stream and evaluate one token at a time
/// until a stop condition. Text is streamed through `onText` in UTF-8-safe pieces, holding back any
/// tail that could be the start of a stop string.
public struct Generator {
    public let model: LlamaModel
    public let tokenizer: Tokenizer
    /// Whether the prompt may run in F32 through BLAS or the backend's prompt-row products (`PrefillMode`).
    public let prefill: PrefillMode
    /// How decoding rows are computed (`LlamaSession.decodesAsPromptRows`).
    public let decoding: Decoding

    /// Checks that the tokenizer fits the model (same vocabulary size).
    public init(model: LlamaModel, tokenizer: Tokenizer, prefill: PrefillMode = .exact, decoding: Decoding = .oneToken) throws(InferenceError) {
        guard tokenizer.count == model.config.vocabularySize else {
            throw InferenceError(.invalidVocabulary,
                                 "vocabulary size mismatch: the tokenizer has \(tokenizer.count) tokens, the model \(model.config.vocabularySize)")
        }
        self.model = model
        self.tokenizer = tokenizer
        self.prefill = prefill
        self.decoding = decoding
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
        let session = try model.makeSession(contextLength: max(needed, 1), prefill: prefill)
        session.decodesAsPromptRows = decoding == .promptRows
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
}
