import Generation
import ModelFormat

/// The hyperparameters of a Llama-family model, read from GGUF metadata under the architecture's
/// own key names (`llama.block_count`, `llama.attention.head_count_kv`, ...), validated, with
/// llama.cpp's defaults where a key is optional. Nothing here is specific to one model.
public struct LlamaConfig: Sendable, Equatable {
    /// Architectures this engine runs (`Architectures.all`: one file each, the forward pass shared).
    public static let supportedArchitectures: Set<String> = Set(Architectures.all.map { $0.name })

    /// `general.architecture`, the prefix of the other keys.
    public let architecture: String
    /// `{arch}.block_count`: transformer layers.
    public let layerCount: Int
    /// `{arch}.embedding_length`: the residual width (`dim`).
    public let embeddingLength: Int
    /// `{arch}.feed_forward_length`: the SwiGLU hidden width.
    public let feedForwardLength: Int
    /// `{arch}.attention.head_count`.
    public let headCount: Int
    /// `{arch}.attention.head_count_kv` (default: `headCount`); divides `headCount` (grouped-query attention).
    public let headCountKV: Int
    /// `{arch}.attention.key_length` (default `embeddingLength / headCount`); value heads have the same size.
    public let headDimension: Int
    /// `{arch}.rope.dimension_count` (default `headDimension`): leading dimensions of each head that RoPE rotates.
    public let ropeDimensions: Int
    /// `{arch}.rope.freq_base` (default 10,000).
    public let ropeFreqBase: Float
    /// `1 / {arch}.rope.scaling.factor` when `{arch}.rope.scaling.type` is `linear`, else 1.
    public let ropeFreqScale: Float
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    public let rmsNormEpsilon: Float
    /// `{arch}.context_length`: the longest context the model was trained for; sessions may not exceed it.
    public let contextLength: Int
    /// Number of tokens: `tokenizer.ggml.tokens` count, which must equal `{arch}.vocab_size`
    /// when present and the embedding's rows.
    public let vocabularySize: Int
    /// How the architecture's forward pass differs from Llama's (Llama's by default).
    public internal(set) var traits = ArchitectureTraits()

    /// Width of all query heads together: `headCount * headDimension`.
    public var queryWidth: Int { headCount * headDimension }
    /// Width of all key (or value) heads together: `headCountKV * headDimension`.
    public var keyValueWidth: Int { headCountKV * headDimension }

    /// Memberwise, for tests and tools; validates as `init(file:)` does.
    public init(architecture: String = "llama", layerCount: Int, embeddingLength: Int, feedForwardLength: Int,
                headCount: Int, headCountKV: Int, headDimension: Int? = nil, ropeDimensions: Int? = nil,
                ropeFreqBase: Float = 10000, ropeFreqScale: Float = 1, rmsNormEpsilon: Float = 1e-5,
                contextLength: Int, vocabularySize: Int) throws(InferenceError) {
        self.architecture = architecture
        self.layerCount = layerCount
        self.embeddingLength = embeddingLength
        self.feedForwardLength = feedForwardLength
        self.headCount = headCount
        self.headCountKV = headCountKV
        let headDimension = headDimension ?? (headCount > 0 ? embeddingLength / headCount : 0)
        self.headDimension = headDimension
        self.ropeDimensions = ropeDimensions ?? headDimension
        self.ropeFreqBase = ropeFreqBase
        self.ropeFreqScale = ropeFreqScale
        self.rmsNormEpsilon = rmsNormEpsilon
        self.contextLength = contextLength
        self.vocabularySize = vocabularySize
        try validate()
    }

    /// Reads and validates the hyperparameters of `file`. Refuses an architecture other than
    /// `supportedArchitectures`, a missing required key, a value of the wrong type or out of
    /// range, and inconsistent values (heads that do not divide, odd RoPE dimensions, ...).
    public init(file: GGUFFile) throws(InferenceError) {
        guard let arch = try file.optionalString("general.architecture") else {
            throw InferenceError(.missingMetadata, "the model has no general.architecture")
        }
        guard let kind = Architectures.named(arch) else {
            throw InferenceError(.unsupportedArchitecture,
                                 "unsupported architecture \"\(arch)\" (this engine runs: \(Self.supportedArchitectures.sorted().joined(separator: ", ")))")
        }
        let limit = 1 << 20
        let layers = try file.requiredInt("\(arch).block_count", in: 1 ... 4096)
        let embedding = try file.requiredInt("\(arch).embedding_length", in: 1 ... 1 << 16)
        let feedForward = try file.requiredInt("\(arch).feed_forward_length", in: 1 ... 1 << 18)
        let heads = try file.requiredInt("\(arch).attention.head_count", in: 1 ... 4096)
        let headsKV = try file.optionalInt("\(arch).attention.head_count_kv", in: 1 ... 4096) ?? heads
        let keyLength = try file.optionalInt("\(arch).attention.key_length", in: 1 ... 4096)
        let valueLength = try file.optionalInt("\(arch).attention.value_length", in: 1 ... 4096)
        if let keyLength, let valueLength, keyLength != valueLength {
            throw InferenceError(.invalidMetadata,
                                 "\(arch).attention.key_length (\(keyLength)) differs from value_length (\(valueLength)); unsupported")
        }
        let ropeDims = try file.optionalInt("\(arch).rope.dimension_count", in: 1 ... 4096)
        let base = try file.optionalFloat("\(arch).rope.freq_base", in: 1 ... 1e12) ?? 10000
        var freqScale: Float = 1
        if let type = try file.optionalString("\(arch).rope.scaling.type"), type != "none" {
            switch type {
            case "linear":
                let factor = try file.optionalFloat("\(arch).rope.scaling.factor", in: 1e-3 ... 1e6) ?? 1
                freqScale = 1 / factor
            case "llama3":
                // Llama 3.1's scaling is in the frequency factors (`rope_freqs.weight`), which the
                // converter writes; the angles are not scaled otherwise.
                guard file.tensor(named: "rope_freqs.weight") != nil else {
                    throw InferenceError(.missingTensor, "\(arch).rope.scaling.type is llama3 but the model has no tensor \"rope_freqs.weight\"")
                }
            default:
                throw InferenceError(.invalidMetadata, "\(arch).rope.scaling.type \"\(type)\" is not supported (only none, linear and llama3 with rope_freqs.weight)")
            }
        }
        guard let epsilon = try file.optionalFloat("\(arch).attention.layer_norm_rms_epsilon", in: 0 ... 1) else {
            throw InferenceError(.missingMetadata, "the model has no \(arch).attention.layer_norm_rms_epsilon")
        }
        let context = try file.requiredInt("\(arch).context_length", in: 1 ... limit * 16)
        guard let tokens = file.array("tokenizer.ggml.tokens") else {
            throw InferenceError(.invalidVocabulary, "the model has no tokenizer.ggml.tokens")
        }
        if let declared = try file.optionalInt("\(arch).vocab_size", in: 0 ... Int(Int32.max)), declared != tokens.count {
            throw InferenceError(.invalidVocabulary,
                                 "vocabulary size mismatch: \(arch).vocab_size is \(declared) but tokenizer.ggml.tokens has \(tokens.count)")
        }
        try self.init(architecture: arch, layerCount: layers, embeddingLength: embedding, feedForwardLength: feedForward,
                      headCount: heads, headCountKV: headsKV, headDimension: keyLength ?? valueLength,
                      ropeDimensions: ropeDims, ropeFreqBase: base, ropeFreqScale: freqScale, rmsNormEpsilon: epsilon,
                      contextLength: context, vocabularySize: tokens.count)
        traits = try kind.traits(file, self)
    }

    private func validate() throws(InferenceError) {
        func fail(_ reason: String) -> InferenceError { InferenceError(.invalidMetadata, reason) }
        let a = architecture
        guard layerCount > 0, embeddingLength > 0, feedForwardLength > 0, contextLength > 0 else {
            throw fail("\(a): layer count, embedding, feed-forward and context lengths must be positive")
        }
        guard headCount > 0, headCountKV > 0, headCount % headCountKV == 0 else {
            throw fail("\(a).attention.head_count (\(headCount)) must be a positive multiple of head_count_kv (\(headCountKV))")
        }
        guard headDimension > 0, headDimension % 2 == 0 else {
            throw fail("\(a): head dimension \(headDimension) must be positive and even (embedding_length \(embeddingLength) / head_count \(headCount))")
        }
        guard ropeDimensions > 0, ropeDimensions % 2 == 0, ropeDimensions <= headDimension else {
            throw fail("\(a).rope.dimension_count (\(ropeDimensions)) must be even and at most the head dimension (\(headDimension))")
        }
        guard vocabularySize > 0, vocabularySize <= Int(Int32.max) else {
            throw InferenceError(.invalidVocabulary, "the vocabulary is empty")
        }
        guard ropeFreqBase.isFinite, ropeFreqBase > 0, ropeFreqScale.isFinite, ropeFreqScale > 0,
              rmsNormEpsilon.isFinite, rmsNormEpsilon >= 0 else {
            throw fail("\(a): RoPE base, RoPE scale and RMS epsilon must be finite and positive")
        }
    }
}
