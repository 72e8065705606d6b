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
    /// Record each generated token's log-probability and this many alternatives (0...`TokenLogprob.maxTop`);
    /// nil: none (no cost).
    public var logprobs: Int?

    public init(maxTokens: Int = 128, sampling: SamplingParameters = SamplingParameters(), stopStrings: [String] = [],
                stopAtEndOfGeneration: Bool = true) {
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
        self.stopAtEndOfGeneration = stopAtEndOfGeneration
    }
}
