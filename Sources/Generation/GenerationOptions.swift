/// What a generation is asked to do.
public struct GenerationOptions: Sendable {
    /// Most tokens to generate (>= 0).
    public var maxTokens: Int = 128
    public var sampling = SamplingParameters()
    /// Generation stops before the first occurrence of any of these strings in the output text
    /// (which is cut there), matched on UTF-8 bytes. At most `maxStopStrings`, each at most
    /// `maxStopStringBytes` UTF-8 bytes (`GenerationState` refuses more); empty ones are ignored.
    public var stopStrings: [String] = []
    /// Stop at an end-of-generation token (EOS, EOT, `<|im_end|>`, ...), which is not output.
    public var stopAtEndOfGeneration = true
    /// Record each generated token's log-probability and this many alternatives (0...`TokenLogprob.maxTop`);
    /// nil: none (no cost).
    public var logprobs: Int?
    /// Hold the output to a grammar (a response format's JSON schema): only tokens the grammar
    /// allows are sampled, end of generation only once the output is complete, and the generation
    /// ends as soon as nothing more can follow. nil: free text (no cost).
    public var grammar: GrammarConstraint?

    /// The most stop strings a generation takes (OpenAI's limit too).
    public static let maxStopStrings = 4
    /// The longest stop string, in UTF-8 bytes: bounds the bytes each token's stop check looks at
    /// and the text a stream holds back.
    public static let maxStopStringBytes = 64

    public init(maxTokens: Int = 128, sampling: SamplingParameters = SamplingParameters(), stopStrings: [String] = [],
                stopAtEndOfGeneration: Bool = true) {
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
        self.stopAtEndOfGeneration = stopAtEndOfGeneration
    }
}
