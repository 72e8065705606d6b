import Foundation
import Kernels
import ModelFormat

/// A Llama-family model ready to run: validated hyperparameters and weights mapped in place.
/// Immutable and shareable; each conversation runs in its own `LlamaSession`.
public final class LlamaModel: Sendable {
    public let config: LlamaConfig
    public let weights: LlamaWeights

    /// Reads the config and maps the weights of `file` (which should come from a verified model:
    /// see `securenode generate`). Throws `InferenceError` naming the key or tensor at fault.
    public init(file: GGUFFile) throws(InferenceError) {
        config = try LlamaConfig(file: file)
        weights = try LlamaWeights(file: file, config: config)
    }

    /// A new session with an empty KV cache for up to `contextLength` positions (default: the
    /// model's own context length, capped at 4,096 to bound memory). Asking for more than the
    /// model's context length is refused.
    ///
    /// `profile` picks which build of llama.cpp the arithmetic reproduces bit for bit (see
    /// `SIMDProfile`); the default is the AVX-512 one the committed references were made with.
    public func makeSession(contextLength: Int? = nil, threads: Int? = nil,
                            profile: SIMDProfile = .default) throws(InferenceError) -> LlamaSession {
        let length = contextLength ?? min(config.contextLength, 4096)
        guard length >= 1 else {
            throw InferenceError(.invalidArgument, "a context length must be at least 1, not \(length)")
        }
        guard length <= config.contextLength else {
            throw InferenceError(.contextOverflow, "a context of \(length) tokens is longer than the model's \(config.contextLength)")
        }
        return LlamaSession(model: self, contextLength: length,
                            threads: threads ?? min(2, ProcessInfo.processInfo.activeProcessorCount), profile: profile)
    }
}

/// The rounding profiles (`Kernels.SIMDProfile`), so that users of `Inference` can name them.
public typealias SIMDProfile = Kernels.SIMDProfile

/// Which logits `LlamaSession.evaluate` returns.
public enum LogitsRequest: Sendable {
    /// Only the last token's (`vocab` floats): for generation.
    case last
    /// Every token's (`count * vocab` floats, token-major): for perplexity.
    case all
    /// None (the tokens only fill the KV cache).
    case none
}

/// One sequence being evaluated: the model, its KV cache, scratch buffers and the position reached.
/// Not thread-safe: use one session per conversation.
public final class LlamaSession {
    public let model: LlamaModel
    /// Positions the KV cache holds.
    public let contextLength: Int
    /// Tokens evaluated so far (the next token's position).
    public private(set) var position = 0
    /// Threads for matrix products.
    public let threads: Int
    /// Which llama.cpp build's rounding this session reproduces.
    public let profile: SIMDProfile
    let cache: KVCache
    let state: LlamaRunState
    /// Tokens per forward pass when a prompt is evaluated.
    static let batchSize = 32

    init(model: LlamaModel, contextLength: Int, threads: Int, profile: SIMDProfile) {
        self.model = model
        self.profile = profile
        self.contextLength = contextLength
        self.threads = max(1, threads)
        let c = model.config
        cache = KVCache(layers: c.layerCount, capacity: contextLength, kvWidth: c.keyValueWidth)
        state = LlamaRunState(config: c, batchCapacity: Self.batchSize, contextCapacity: contextLength)
    }

    /// Forgets every position (the cache is overwritten as new tokens come).
    public func reset() { position = 0 }

    /// Rewinds to `position` (at most the current one), keeping the cache before it.
    public func rewind(to position: Int) throws(InferenceError) {
        guard position >= 0, position <= self.position else {
            throw InferenceError(.invalidArgument, "cannot rewind to position \(position) (at \(self.position))")
        }
        self.position = position
    }

    /// Runs `tokens` at the next positions, in batches, filling the KV cache, and returns the
    /// requested logits (raw, before any sampling). Refuses a token outside the vocabulary and
    /// a sequence that would not fit in the context; on refusal nothing is evaluated.
    public func evaluate(_ tokens: [Int], logits: LogitsRequest = .last) throws(InferenceError) -> [Float] {
        let c = model.config
        if let bad = tokens.first(where: { $0 < 0 || $0 >= c.vocabularySize }) {
            throw InferenceError(.invalidToken, "token id \(bad) is outside the vocabulary (0..<\(c.vocabularySize))")
        }
        guard tokens.count <= contextLength - position else {
            throw InferenceError(.contextOverflow,
                                 "\(tokens.count) more tokens do not fit: \(position) of \(contextLength) positions are used")
        }
        var result: [Float] = []
        if logits == .all { result.reserveCapacity(tokens.count * c.vocabularySize) }
        var start = 0
        while start < tokens.count {
            let batch = Array(tokens[start ..< min(tokens.count, start + Self.batchSize)])
            let isLast = start + batch.count == tokens.count
            let wanted: Range<Int>? = switch logits {
            case .none: nil
            case .all: 0 ..< batch.count
            case .last: isLast ? batch.count - 1 ..< batch.count : nil
            }
            result += forward(batch, logitsFor: wanted, severalTokens: tokens.count > 1)
            start += batch.count
        }
        return result
    }

    /// Quantizes `count` activation vectors for `w` into the shared scratch and multiplies.
    private func project(_ w: WeightMatrix, _ input: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>,
                         reuse: Bool = false) {
        if !reuse { MatMul.quantize(input, count: count, for: w, into: state.quantized) }
        MatMul.multiply(w, quantized: state.quantized, count: count, into: out, threads: threads)
    }

    /// The transformer over one batch at positions `position ..< position + tokens.count`; returns
    /// the logits of the batch rows in `logitsFor` (token-major). `severalTokens` says whether the
    /// caller's whole call (which llama.cpp would run as one batch) has more than one token: that
    /// decides llama.cpp's attention kernels (`Attention.DotOrder`).
    private func forward(_ tokens: [Int], logitsFor wanted: Range<Int>?, severalTokens: Bool) -> [Float] {
        let c = model.config, w = model.weights, s = state
        let n = tokens.count, dim = c.embeddingLength, qw = c.queryWidth, kvw = c.keyValueWidth, ff = c.feedForwardLength
        let hd = c.headDimension, group = c.headCount / c.headCountKV
        let start = position

        // 1. Embedding: x[t] = token_embd[token t].
        for (t, token) in tokens.enumerated() {
            w.tokenEmbedding.dequantizeRow(token, into: s.x + t * dim)
        }
        // RoPE angles for each position of the batch.
        w.ropeFactors.withUnsafeBufferPointerOrNil { factors in
            for t in 0 ..< n {
                VectorOps.ropeTable(position: start + t, dims: c.ropeDimensions, base: c.ropeFreqBase,
                                    freqScale: c.ropeFreqScale, factors: factors, into: s.ropeTables + t * c.ropeDimensions)
            }
        }
        let scale = 1 / Float(hd).squareRoot()

        for (l, layer) in w.layers.enumerated() {
            // 2. Attention block. xb = rmsnorm(x) * attn_norm.
            for t in 0 ..< n {
                VectorOps.rmsNorm(s.x + t * dim, weight: layer.attentionNorm, count: dim, epsilon: c.rmsNormEpsilon, into: s.xb + t * dim)
            }
            // q, k, v = Wq xb, Wk xb, Wv xb (one activation quantization when the formats agree).
            project(layer.query, s.xb, count: n, into: s.q)
            project(layer.key, s.xb, count: n, into: s.k, reuse: layer.key.type.dotType == layer.query.type.dotType)
            project(layer.value, s.xb, count: n, into: s.v, reuse: layer.value.type.dotType == layer.key.type.dotType)
            // RoPE on q and k, then k and v go into the cache at their positions.
            for t in 0 ..< n {
                let table = UnsafePointer(s.ropeTables + t * c.ropeDimensions)
                VectorOps.rope(s.q + t * qw, heads: c.headCount, headDim: hd, dims: c.ropeDimensions, table: table)
                VectorOps.rope(s.k + t * kvw, heads: c.headCountKV, headDim: hd, dims: c.ropeDimensions, table: table)
                cache.store(layer: l, position: start + t, key: s.k + t * kvw, value: s.v + t * kvw)
            }
            // Causal attention of each token over positions 0...its own, per head; query head h
            // reads key/value head h / group. As in llama.cpp's F16 cache path, the query and the
            // attention weights are rounded to F16 before their dot products with the cache.
            for t in 0 ..< n {
                for h in 0 ..< c.headCount {
                    let kvOffset = (h / group) * hd
                    Attention.head(query: s.q + t * qw + h * hd, keys: cache.key(l, 0) + kvOffset,
                                   values: cache.value(l, 0) + kvOffset, stride: kvw, positions: start + t + 1,
                                   headDim: hd, scale: scale, order: severalTokens ? .tinyBLAS : .vecDotF16,
                                   profile: profile, scratch: s.scores, out: s.attention + t * qw + h * hd)
                }
            }
            // x += Wo attention.
            project(layer.output, s.attention, count: n, into: s.xb2)
            VectorOps.add(s.x, s.xb2, count: n * dim)

            // 3. Feed-forward block: x += W_down (silu(W_gate xb) * (W_up xb)), xb = rmsnorm(x) * ffn_norm.
            for t in 0 ..< n {
                VectorOps.rmsNorm(s.x + t * dim, weight: layer.feedForwardNorm, count: dim, epsilon: c.rmsNormEpsilon, into: s.xb + t * dim)
            }
            project(layer.gate, s.xb, count: n, into: s.hb)
            project(layer.up, s.xb, count: n, into: s.hb2, reuse: layer.up.type.dotType == layer.gate.type.dotType)
            for t in 0 ..< n { VectorOps.swiglu(s.hb + t * ff, s.hb2 + t * ff, count: ff, profile: profile) }
            project(layer.down, s.hb, count: n, into: s.xb2)
            VectorOps.add(s.x, s.xb2, count: n * dim)
        }
        position += n

        // 4. Final norm and output projection, only for the rows asked for.
        guard let wanted, !wanted.isEmpty else { return [] }
        let rows = wanted.count
        for (i, t) in wanted.enumerated() {
            VectorOps.rmsNorm(s.x + t * dim, weight: w.outputNorm, count: dim, epsilon: c.rmsNormEpsilon, into: s.xb + i * dim)
        }
        var logits = [Float](repeating: 0, count: rows * c.vocabularySize)
        logits.withUnsafeMutableBufferPointer { out in
            project(w.output, s.xb, count: rows, into: out.baseAddress!)
        }
        return logits
    }
}

extension Optional where Wrapped == [Float] {
    /// Calls `body` with a pointer to the array's elements, or nil.
    func withUnsafeBufferPointerOrNil<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: body(nil)
        case let .some(array): array.withUnsafeBufferPointer { body($0.baseAddress) }
        }
    }
}
