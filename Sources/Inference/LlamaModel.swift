import Foundation
import Generation
import Kernels
import ModelFormat

/// A transformer of one of `Architectures.all` ready to run: validated hyperparameters and weights
/// mapped in place. The forward pass is Llama's, with the architecture's differences as hooks
/// (`ArchitectureTraits`).
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
    /// `prefill` says whether prompt batches may run in F32 through BLAS (`PrefillMode`); the
    /// default here is `.exact` (the CLI and the service pass `PrefillMode.default`).
    public func makeSession(contextLength: Int? = nil, threads: Int? = nil,
                            profile: SIMDProfile = .default, prefill: PrefillMode = .exact) throws(InferenceError) -> LlamaSession {
        let length = contextLength ?? min(config.contextLength, 4096)
        guard length >= 1 else {
            throw InferenceError(.invalidArgument, "a context length must be at least 1, not \(length)")
        }
        guard length <= config.contextLength else {
            throw InferenceError(.contextOverflow, "a context of \(length) tokens is longer than the model's \(config.contextLength)")
        }
        return LlamaSession(model: self, contextLength: length,
                            threads: threads ?? min(2, ProcessInfo.processInfo.activeProcessorCount), profile: profile,
                            prefill: prefill)
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

/// One sequence being evaluated: its KV cache and the position reached. Its forward passes run on
/// an engine (its own, or one shared with other sessions by a scheduler that batches them).
/// Not thread-safe: use one session per conversation.
public final class LlamaSession {
    public let model: LlamaModel
    /// Positions the KV cache holds.
    public let contextLength: Int
    /// Tokens evaluated so far (the next token's position).
    public internal(set) var position = 0
    /// The engine this session's forward passes run on.
    public let engine: LlamaEngine
    let cache: KVCache

    /// Threads for matrix products.
    public var threads: Int { engine.backend.capabilities.parallelism }
    /// Which llama.cpp build's rounding this session reproduces.
    public var profile: SIMDProfile { engine.profile }
    /// Bytes of its KV cache.
    public var cacheBytes: Int { cache.byteCount }
    /// Decoding as prompt rows: every call (and every step item without a `promptLength`) is
    /// computed as the last rows of a prompt holding everything evaluated so far, with the prompt
    /// rows' kernels (the attention's `.tinyBLAS` order; under `PrefillMode.blas`, the backend's
    /// prompt-row products), as a later recomputation of the whole text as one prompt computes
    /// them. A token's rows then depend only on the text before it, not on how it was cut into
    /// calls, and a batch of decoding rows takes the prompt rows' faster products. False (the
    /// default): a one-token call uses llama.cpp's one-token kernels, bit for bit.
    public var decodesAsPromptRows = false

    /// The prompt length that decides the attention kernels of `count` tokens evaluated next, as
    /// a call names it (`partOfPrompt`) or as `decodesAsPromptRows` implies.
    func effectivePromptLength(_ promptLength: Int?, count: Int) -> Int {
        promptLength ?? (decodesAsPromptRows ? position + count : count)
    }

    init(model: LlamaModel, contextLength: Int, threads: Int, profile: SIMDProfile, prefill: PrefillMode) {
        self.model = model
        self.contextLength = contextLength
        // BLAS wants large batches (sgemm is 2-3x faster at 512 rows than at 64): a BLAS session's
        // own engine takes prompts in batches of up to `promptBatchRows`, with logits for 64 rows.
        let batch = prefill.isExact ? 64 : LlamaEngine.promptBatchRows(model.config)
        engine = LlamaEngine(model: model, backend: CPUBackend(threads: threads), contextCapacity: contextLength,
                             batchCapacity: batch, profile: profile, prefill: prefill, logitRows: min(batch, 64))
        let c = model.config
        cache = KVCache(layers: c.layerCount, capacity: contextLength, kvWidth: c.keyValueWidth)
    }

    init(engine: LlamaEngine, contextLength: Int) {
        model = engine.model
        self.contextLength = contextLength
        self.engine = engine
        let c = model.config
        cache = KVCache(layers: c.layerCount, capacity: contextLength, kvWidth: c.keyValueWidth)
    }

    /// Forgets every position (the cache is overwritten as new tokens come).
    public func reset() { position = 0 }

    /// Starts this session from the first `count` positions of `other` (same model; `count` at most
    /// `other.position`): their KV cache rows are copied and this session continues at `count`, as
    /// if it had evaluated the same tokens itself.
    public func copyPrefix(of other: LlamaSession, count: Int) throws(InferenceError) {
        guard other.model === model, count >= 0, count <= other.position, count <= contextLength else {
            throw InferenceError(.invalidArgument, "cannot copy \(count) positions from a session at \(other.position) into one of \(contextLength)")
        }
        cache.copyPositions(from: other.cache, count: count)
        position = count
    }

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
        try evaluate(tokens, logits: logits, partOfPrompt: nil)
    }

    /// `evaluate`, for one chunk of a longer prompt evaluated in several calls (a scheduler that
    /// interleaves prompts with other sequences' decoding): `promptLength` is the whole prompt's
    /// token count, which decides the attention kernels as if the prompt were evaluated at once.
    public func evaluate(_ tokens: [Int], logits: LogitsRequest = .last, partOfPrompt promptLength: Int?) throws(InferenceError) -> [Float] {
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
        // llama.cpp picks its attention kernels by whether the whole call has more than one token.
        let order: Attention.DotOrder = effectivePromptLength(promptLength, count: tokens.count) > 1 ? .tinyBLAS : .vecDotF16
        var start = 0
        // With every row's logits wanted, a batch is at most `logitRows` rows.
        let batch = logits == .all ? engine.logitRows : engine.batchCapacity
        while start < tokens.count {
            let n = min(tokens.count - start, batch)
            let isLast = start + n == tokens.count
            var rows: [LlamaEngine.Row] = []
            rows.reserveCapacity(n)
            for i in 0 ..< n {
                let wants = switch logits {
                case .none: false
                case .all: true
                case .last: isLast && i == n - 1
                }
                rows.append(LlamaEngine.Row(token: tokens[start + i], cache: cache, position: position + i, order: order, wantsLogits: wants))
            }
            result += engine.forward(rows, inFloat: engine.prefill.usesBLAS(rows: n))
            position += n
            start += n
        }
        return result
    }
}

/// Runs forward passes for any sessions of one model through one compute backend, with scratch
/// buffers sized once (nothing is allocated per layer). A batch is a list of rows, each a token of
/// some session at its position: the tokens of one prompt, or one token from each of several
/// sessions (continuous batching). Every row's result is independent of the others in its batch:
/// the matrix products compute each (row, output) dot product in the same order whatever the
/// batch, and each row attends only to its own cache.
///
/// Not thread-safe: one caller at a time (a session, or the scheduler that owns it).
public final class LlamaEngine {
    /// One token of a forward pass.
    public struct Row {
        public let token: Int
        let cache: KVCache
        public let position: Int
        public let order: Attention.DotOrder
        public let wantsLogits: Bool

        init(token: Int, cache: KVCache, position: Int, order: Attention.DotOrder, wantsLogits: Bool) {
            self.token = token
            self.cache = cache
            self.position = position
            self.order = order
            self.wantsLogits = wantsLogits
        }
    }

    public let model: LlamaModel
    public let backend: any ComputeBackend
    public let profile: SIMDProfile
    /// Whether large passes run in F32 through BLAS (`PrefillMode`).
    public let prefill: PrefillMode
    /// Most rows per forward pass.
    public let batchCapacity: Int
    /// Most rows per forward pass that want logits (the logits buffer holds this many).
    public let logitRows: Int
    /// Longest context any session of this engine may have.
    public let contextCapacity: Int
    /// Whether BLAS passes (`PrefillMode.blas`) also run attention as matrix products
    /// (`ComputeBackend.attentionInFloat`, `GEMMAttention`; default true). False keeps the exact
    /// per-head kernels there: for measuring the difference (`bench-engine --exact-attention`).
    public var attentionInFloat = true
    let state: LlamaRunState
    /// Each layer's projections; Q/K/V and gate/up are one projection each, or one per matrix when
    /// their formats differ (say Q4_K query and key, Q6_K value).
    private let layers: [(qkv: [Projection], output: Projection, gateUp: [Projection], down: Projection)]
    private let outputProjection: Projection
    private let attentionBatch: AttentionBatch
    private let scratchPerMember: Int
    private let attentionScratch: UnsafeMutablePointer<Float>
    /// The CPU backend's pool, which also runs the per-row vector steps of batches of at least
    /// `CPUBackend.parallelRowsMinimum` rows (norms, RoPE, cache stores); nil on one thread or another backend.
    private let rowPool: ThreadPool?

    /// An engine for `model` on `backend`, for sessions of up to `contextCapacity` positions and
    /// batches of up to `batchCapacity` rows, of which up to `logitRows` (default: all) want logits.
    /// `prefill` decides which passes run in F32 through BLAS (default: none).
    public init(model: LlamaModel, backend: any ComputeBackend, contextCapacity: Int, batchCapacity: Int = 64,
                profile: SIMDProfile = .default, prefill: PrefillMode = .exact, logitRows: Int? = nil) {
        self.model = model
        self.backend = backend
        self.profile = profile
        self.prefill = prefill
        self.batchCapacity = max(1, batchCapacity)
        self.logitRows = min(self.batchCapacity, max(1, logitRows ?? self.batchCapacity))
        self.contextCapacity = contextCapacity
        let c = model.config, w = model.weights
        let s = LlamaRunState(config: c, batchCapacity: self.batchCapacity, logitRows: self.logitRows,
                              contextCapacity: contextCapacity)
        state = s
        func projection(_ matrices: [WeightMatrix], _ outputs: [UnsafeMutablePointer<Float>]) -> Projection {
            // LlamaWeights checked the shapes: matrices of one group share their input width. Mixed
            // formats (say Q4_K gate, Q6_K up) are split into one projection per matrix.
            Projection(matrices, outputs: outputs)!
        }
        func group(_ matrices: [WeightMatrix], _ outputs: [UnsafeMutablePointer<Float>]) -> [Projection] {
            if let p = Projection(matrices, outputs: outputs) { return [p] }
            return zip(matrices, outputs).map { projection([$0], [$1]) }
        }
        layers = w.layers.map { layer in
            let qkv = group([layer.query, layer.key, layer.value], [s.q, s.k, s.v])
            let gateUp = group([layer.gate, layer.up], [s.hb, s.hb2])
            return (qkv: qkv, output: projection([layer.output], [s.xb2]),
                    gateUp: gateUp, down: projection([layer.down], [s.xb2]))
        }
        outputProjection = projection([w.output], [s.logits])
        attentionBatch = AttentionBatch(capacity: self.batchCapacity * c.headCount)
        scratchPerMember = Attention.scratchCount(positions: contextCapacity, headDim: c.headDimension)
        let members = max(1, backend.capabilities.parallelism)
        attentionScratch = .allocate(capacity: scratchPerMember * members)
        attentionScratch.initialize(repeating: 0, count: scratchPerMember * members)
        rowPool = (backend as? CPUBackend).map(\.pool).flatMap { $0.size > 1 ? $0 : nil }
        for l in layers { for p in l.qkv + [l.output] + l.gateUp + [l.down] { backend.prepare(p) } }
        backend.prepare(outputProjection)
    }

    deinit { attentionScratch.deallocate() }

    /// Rows per prompt batch for a BLAS engine: 512 (llama.cpp's default batch), fewer for models
    /// whose per-row scratch would pass 48 MiB at 512 rows (320 for Llama-3.2-1B shapes, 128 for
    /// 8B), a multiple of 64 and at least 64. At 64 MiB (448 rows) a 1B model's peak RSS passed
    /// model + KV cache + 150 MiB by 5 MiB (`bench/scale.sh`).
    public static func promptBatchRows(_ c: LlamaConfig) -> Int {
        let floats = 3 * c.embeddingLength + 2 * c.queryWidth + 2 * c.keyValueWidth + 2 * c.feedForwardLength + c.ropeDimensions
        let bytesPerRow = 4 * floats + 4 * (max(c.embeddingLength, c.queryWidth, c.feedForwardLength) + 256)
        let rows = (48 << 20) / max(1, bytesPerRow)
        return max(64, min(512, rows / 64 * 64))
    }

    /// A new session on this engine (its forward passes share this engine's backend and buffers).
    public func makeSession(contextLength: Int) throws(InferenceError) -> LlamaSession {
        guard contextLength >= 1, contextLength <= contextCapacity else {
            throw InferenceError(.contextOverflow, "a context of \(contextLength) tokens does not fit this engine (at most \(contextCapacity))")
        }
        return LlamaSession(engine: self, contextLength: contextLength)
    }

    /// One decoding step for several sessions at once: `tokens[i]` at the next position of
    /// `sessions[i]`, each session advanced by one. Returns each session's logits (`vocab` floats
    /// each, in order), equal to what `sessions[i].evaluate([tokens[i]])` alone would return.
    public func decode(_ sessions: [LlamaSession], tokens: [Int]) throws(InferenceError) -> [[Float]] {
        guard sessions.count == tokens.count else {
            throw InferenceError(.invalidArgument, "a decoding step takes one token per session")
        }
        return try step(zip(sessions, tokens).map { StepItem(session: $0, tokens: [$1]) }).map { $0 ?? [] }
    }

    /// One part of a continuous-batching step: tokens of one session at its next positions.
    public struct StepItem {
        public let session: LlamaSession
        public let tokens: [Int]
        /// When `tokens` are a chunk of a longer prompt: the whole prompt's length (it decides the
        /// attention kernels, as `LlamaSession.evaluate(_:logits:partOfPrompt:)`).
        public let promptLength: Int?
        /// Whether to return the logits after the last token.
        public let wantsLogits: Bool
        /// Evaluate the tokens as one pass in F32 through BLAS (`promptChunkRunsInFloat` decides
        /// when); such an item is alone in its step. False: the exact kernels, whose rows are the
        /// same bits whatever they are batched with.
        public let inFloat: Bool

        public init(session: LlamaSession, tokens: [Int], promptLength: Int? = nil, wantsLogits: Bool = true, inFloat: Bool = false) {
            self.session = session
            self.tokens = tokens
            self.promptLength = promptLength
            self.wantsLogits = wantsLogits
            self.inFloat = inFloat
        }
    }

    /// Whether a prompt chunk of `rows` rows ending at position `lastPosition`, evaluated as one
    /// pass, runs anything in F32: the prefill mode sends passes of its size to BLAS and some
    /// layer's products or attention do not stay on the exact kernels there
    /// (`ComputeBackend.keepsExact`, `PrefillMode.gemmAttentionMinimumPositions`). Such a chunk's
    /// rows depend on the whole chunk: a caller that wants the same bits whatever the batching
    /// evaluates it whole, alone (`StepItem.inFloat`); any other chunk may be split and batched
    /// freely, since exact rows do not depend on their batch. For a given `rows`, false up to some
    /// position and true from there on.
    public func promptChunkRunsInFloat(rows: Int, lastPosition: Int) -> Bool {
        guard prefill.usesBLAS(rows: rows) else { return false }
        return model.weights.layers.contains { layerRunsInFloat($0, rows: rows, lastPosition: lastPosition) }
    }

    /// One forward pass over several sessions' tokens (decoding steps and prompt chunks mixed, at
    /// most `batchCapacity` tokens in all); each session advances by its tokens. Returns, per item,
    /// the logits after its last token (nil where not wanted), equal to what the session alone would
    /// compute (`LlamaSession.evaluate`: decoding rows and, in an exact engine, prompt rows on the
    /// exact kernels; otherwise prompt rows on the backend's prompt-row products, each row the same
    /// whatever its batch). An item with `inFloat` runs in F32 and must be alone.
    /// Nothing is evaluated if any item is refused.
    public func step(_ items: [StepItem]) throws(InferenceError) -> [[Float]?] {
        let c = model.config
        let total = items.reduce(0) { $0 + $1.tokens.count }
        guard total >= 1, total <= batchCapacity else {
            throw InferenceError(.invalidArgument, "a step takes 1...\(batchCapacity) tokens, not \(total)")
        }
        guard items.count == 1 || !items.contains(where: \.inFloat) else {
            throw InferenceError(.invalidArgument, "an item evaluated in F32 must be alone in its step")
        }
        guard Set(items.map { ObjectIdentifier($0.session) }).count == items.count else {
            throw InferenceError(.invalidArgument, "a session may appear only once in a step")
        }
        for item in items {
            guard item.session.engine === self else { throw InferenceError(.invalidArgument, "a session of another engine") }
            guard !item.tokens.isEmpty else { throw InferenceError(.invalidArgument, "a step item without tokens") }
            if let bad = item.tokens.first(where: { $0 < 0 || $0 >= c.vocabularySize }) {
                throw InferenceError(.invalidToken, "token id \(bad) is outside the vocabulary (0..<\(c.vocabularySize))")
            }
            guard item.tokens.count <= item.session.contextLength - item.session.position else {
                throw InferenceError(.contextOverflow,
                                     "\(item.tokens.count) more tokens do not fit: \(item.session.position) of \(item.session.contextLength) positions are used")
            }
        }
        let wanted = items.filter(\.wantsLogits).count
        guard wanted <= logitRows else {
            throw InferenceError(.invalidArgument, "a step may want logits for at most \(logitRows) sessions, not \(wanted)")
        }
        // Decoding items first, prompt items last (`forward` computes a pass's prompt rows apart).
        let isPrompt = items.map { $0.session.effectivePromptLength($0.promptLength, count: $0.tokens.count) > 1 }
        let evaluation = items.indices.filter { !isPrompt[$0] } + items.indices.filter { isPrompt[$0] }
        var rows: [Row] = []
        rows.reserveCapacity(total)
        for item in evaluation.map({ items[$0] }) {
            let order: Attention.DotOrder = item.session.effectivePromptLength(item.promptLength, count: item.tokens.count) > 1
                ? .tinyBLAS : .vecDotF16
            for (i, token) in item.tokens.enumerated() {
                rows.append(Row(token: token, cache: item.session.cache, position: item.session.position + i, order: order,
                                wantsLogits: item.wantsLogits && i == item.tokens.count - 1))
            }
        }
        // F32 only when asked for an item alone: a decoding row is never computed differently
        // because of what it was batched with.
        let inFloat = items.count == 1 && items[0].inFloat
        let logits = forward(rows, inFloat: inFloat)  // valid until the next forward pass: copied once, below
        let v = c.vocabularySize
        var next = 0
        var result: [[Float]?] = Array(repeating: nil, count: items.count)
        for index in evaluation {
            let item = items[index]
            item.session.position += item.tokens.count
            if item.wantsLogits {
                result[index] = Array(UnsafeBufferPointer(rebasing: logits[next * v ..< (next + 1) * v]))
                next += 1
            }
        }
        return result
    }

    /// The transformer over `rows` (at most `batchCapacity`, at most `logitRows` wanting logits);
    /// returns the logits of the rows that want them, row-major, in the engine's own buffer (valid
    /// until the next forward pass). `inFloat`: the matrix products in F32 through the backend's
    /// BLAS path (`projectInFloat`), where it has one; the output projection too when at least
    /// the prefill mode's minimum rows want logits.
    func forward(_ rows: [Row], inFloat: Bool = false) -> UnsafeBufferPointer<Float> {
        let c = model.config, w = model.weights, s = state, b = backend
        let n = rows.count, dim = c.embeddingLength, qw = c.queryWidth, kvw = c.keyValueWidth, ff = c.feedForwardLength
        let hd = c.headDimension, group = c.headCount / c.headCountKV
        precondition(n >= 1 && n <= batchCapacity)
        // Prompt rows (of a call with several tokens: `Row.order`) may take the backend's prompt-row
        // products (`ComputeBackend.projectPromptRows`) unless the engine is exact; they come last in
        // a pass (`step` orders its items so), after any decoding rows.
        let promptFrom = prefill.isExact ? n : (rows.firstIndex(where: { $0.order == .tinyBLAS }) ?? n)
        precondition(rows[promptFrom...].allSatisfy { $0.order == .tinyBLAS }, "a pass's prompt rows come after its decoding rows")

        // 1. Embedding: x[t] = token_embd[token t] (times the architecture's scale); RoPE angles for
        // each row's position (and the sliding-window layers' own, where their base differs).
        let traits = c.traits
        for (t, row) in rows.enumerated() {
            w.tokenEmbedding.dequantizeRow(row.token, into: s.x + t * dim)
            if let factor = traits.embeddingScale { VectorOps.scale(s.x + t * dim, by: factor, count: dim) }
        }
        w.ropeFactors.withUnsafeBufferPointerOrNil { factors in
            for (t, row) in rows.enumerated() {
                VectorOps.ropeTable(position: row.position, dims: c.ropeDimensions, base: c.ropeFreqBase,
                                    freqScale: c.ropeFreqScale, factors: factors, into: s.ropeTables + t * c.ropeDimensions)
                if let base = traits.localRopeBase {
                    VectorOps.ropeTable(position: row.position, dims: c.ropeDimensions, base: base, freqScale: traits.localRopeScale,
                                        factors: factors, into: s.localRopeTables + t * c.ropeDimensions)
                }
            }
        }
        // Architectures that scale the queries themselves attend with scale 1 (as llama.cpp's graphs).
        let scale = traits.queryScale == nil ? 1 / Float(hd).squareRoot() : 1
        attentionBatch.softCap = traits.attentionSoftCap ?? 0

        for (l, layer) in w.layers.enumerated() {
            let plans = layers[l]
            let window = traits.isSlidingWindow(l) ? traits.slidingWindow : nil
            let tables = window != nil && traits.localRopeBase != nil ? s.localRopeTables : s.ropeTables
            // 2. Attention block. xb = rmsnorm(x) * attn_norm; q, k, v = Wq xb, Wk xb, Wv xb.
            eachRow(n) { t in
                VectorOps.rmsNorm(s.x + t * dim, weight: layer.attentionNorm, count: dim, epsilon: c.rmsNormEpsilon, into: s.xb + t * dim)
            }
            for p in plans.qkv { project(p, input: s.xb, count: n, inFloat: inFloat, promptFrom: promptFrom) }
            // Biases and per-head norms (where the architecture has them), RoPE on q and k, the
            // queries' own scale; then k and v go into each row's cache at its position.
            eachRow(n) { t in
                let row = rows[t]
                let q = s.q + t * qw, k = s.k + t * kvw, v = s.v + t * kvw
                if let bias = layer.queryBias { VectorOps.add(q, bias, count: qw) }
                if let bias = layer.keyBias { VectorOps.add(k, bias, count: kvw) }
                if let bias = layer.valueBias { VectorOps.add(v, bias, count: kvw) }
                if let qn = layer.queryNorm, let kn = layer.keyNorm {
                    for h in 0 ..< c.headCount { VectorOps.rmsNorm(q + h * hd, weight: qn, count: hd, epsilon: c.rmsNormEpsilon, into: q + h * hd) }
                    for h in 0 ..< c.headCountKV { VectorOps.rmsNorm(k + h * hd, weight: kn, count: hd, epsilon: c.rmsNormEpsilon, into: k + h * hd) }
                }
                let table = UnsafePointer(tables + t * c.ropeDimensions)
                if traits.ropeStyle == .normal {
                    VectorOps.rope(q, heads: c.headCount, headDim: hd, dims: c.ropeDimensions, table: table)
                    VectorOps.rope(k, heads: c.headCountKV, headDim: hd, dims: c.ropeDimensions, table: table)
                } else {
                    VectorOps.ropeNeox(q, heads: c.headCount, headDim: hd, dims: c.ropeDimensions, table: table)
                    VectorOps.ropeNeox(k, heads: c.headCountKV, headDim: hd, dims: c.ropeDimensions, table: table)
                }
                if let factor = traits.queryScale { VectorOps.scale(q, by: factor, count: qw) }
                b.storeHalf(k, row.cache.key(l, row.position), count: kvw)
                b.storeHalf(v, row.cache.value(l, row.position), count: kvw)
            }
            // Causal attention of each row over its own positions 0...its own (the last `window`
            // of them in a sliding-window layer), per head; query head h reads key/value head h / group.
            // A BLAS pass runs it as matrix products per sequence (`GEMMAttention`) where the backend can.
            let shape = GEMMAttention.Shape(heads: c.headCount, kvHeads: c.headCountKV, headDim: hd, scale: scale,
                                            softCap: attentionBatch.softCap, window: window)
            let inMatrices = inFloat && attentionInFloat && attentionPaysInFloat(rows, layer: layer)
                && attendInFloat(rows, layer: l, shape: shape)
            for (t, row) in rows.enumerated() where !inMatrices {
                let keys = UnsafePointer(row.cache.key(l, 0)), values = UnsafePointer(row.cache.value(l, 0))
                let first = window.map { max(0, row.position + 1 - $0) } ?? 0
                for h in 0 ..< c.headCount {
                    let kvOffset = (h / group) * hd
                    attentionBatch.append(query: s.q + t * qw + h * hd, keys: keys + kvOffset, values: values + kvOffset,
                                          positions: row.position + 1, first: first, order: row.order, out: s.attention + t * qw + h * hd)
                }
            }
            if !inMatrices {
                b.attention(attentionBatch, stride: kvw, headDim: hd, scale: scale, profile: profile,
                            scratch: attentionScratch, scratchPerMember: scratchPerMember)
            }
            // x += Wo attention (normalized first where the architecture has post-norms).
            project(plans.output, input: s.attention, count: n, inFloat: inFloat, promptFrom: promptFrom)
            if let norm = layer.attentionPostNorm {
                for t in 0 ..< n {
                    VectorOps.rmsNorm(s.xb2 + t * dim, weight: norm, count: dim, epsilon: c.rmsNormEpsilon, into: s.xb2 + t * dim)
                }
            }
            VectorOps.add(s.x, s.xb2, count: n * dim)

            // 3. Feed-forward block: x += W_down (act(W_gate xb) * (W_up xb)), xb = rmsnorm(x) * ffn_norm.
            eachRow(n) { t in
                VectorOps.rmsNorm(s.x + t * dim, weight: layer.feedForwardNorm, count: dim, epsilon: c.rmsNormEpsilon, into: s.xb + t * dim)
            }
            for p in plans.gateUp { project(p, input: s.xb, count: n, inFloat: inFloat, promptFrom: promptFrom) }
            switch traits.activation {
            case .silu: b.swiglu(s.hb, s.hb2, rows: n, width: ff, profile: profile)
            case .geluTanh: VectorOps.geglu(s.hb, s.hb2, count: n * ff)
            }
            project(plans.down, input: s.hb, count: n, inFloat: inFloat, promptFrom: promptFrom)
            if let norm = layer.feedForwardPostNorm {
                for t in 0 ..< n {
                    VectorOps.rmsNorm(s.xb2 + t * dim, weight: norm, count: dim, epsilon: c.rmsNormEpsilon, into: s.xb2 + t * dim)
                }
            }
            VectorOps.add(s.x, s.xb2, count: n * dim)
        }

        // 4. Final norm and output projection, only for the rows that want logits.
        let wanted = rows.indices.filter { rows[$0].wantsLogits }
        guard !wanted.isEmpty else { return UnsafeBufferPointer(start: s.logits, count: 0) }
        precondition(wanted.count <= logitRows, "more rows want logits than the engine holds")
        for (i, t) in wanted.enumerated() {
            VectorOps.rmsNorm(s.x + t * dim, weight: w.outputNorm, count: dim, epsilon: c.rmsNormEpsilon, into: s.xb + i * dim)
        }
        project(outputProjection, input: s.xb, count: wanted.count,
                inFloat: inFloat && prefill.usesBLAS(rows: wanted.count), promptFrom: wanted.count)
        b.synchronize()
        if let cap = traits.finalSoftCap { VectorOps.softCap(s.logits, cap: cap, count: wanted.count * c.vocabularySize) }
        return UnsafeBufferPointer(start: s.logits, count: wanted.count * c.vocabularySize)
    }

    /// `body(t)` for every row `t < n`: spread over the CPU pool's members for `parallelRowsMinimum`
    /// rows or more (each row's work is the same whichever thread does it), else on this thread.
    private func eachRow(_ n: Int, _ body: (Int) -> Void) {
        if let pool = rowPool, n >= CPUBackend.parallelRowsMinimum {
            pool.forEach(n) { t, _ in body(t) }
        } else {
            for t in 0 ..< n { body(t) }
        }
    }

    /// Whether a BLAS pass over `rows` runs `layer`'s attention as matrix products: always when its
    /// products run in F32; when they all stay exact (`ComputeBackend.keepsExact`), only from
    /// `PrefillMode.gemmAttentionMinimumPositions` attended positions, so that shorter passes stay
    /// exact from end to end.
    private func attentionPaysInFloat(_ rows: [Row], layer: LlamaWeights.Layer) -> Bool {
        layerRunsInFloat(layer, rows: rows.count, lastPosition: rows.reduce(0) { max($0, $1.position) })
    }

    /// Whether a BLAS pass of `rows` rows, the last at `lastPosition`, runs any of `layer` in F32.
    private func layerRunsInFloat(_ layer: LlamaWeights.Layer, rows: Int, lastPosition: Int) -> Bool {
        let matrices = [layer.query, layer.key, layer.value, layer.output, layer.gate, layer.up, layer.down]
        guard matrices.allSatisfy({ backend.keepsExact($0, rows: rows) }) else { return true }
        return lastPosition + 1 >= PrefillMode.gemmAttentionMinimumPositions
    }

    /// Attention of `rows` in layer `l` through the backend's `attentionInFloat`, one call per run of
    /// consecutive rows of one sequence. False, having done nothing, when the backend has no such path.
    private func attendInFloat(_ rows: [Row], layer l: Int, shape: GEMMAttention.Shape) -> Bool {
        let s = state, qw = model.config.queryWidth
        var start = 0
        while start < rows.count {
            var end = start + 1
            while end < rows.count && rows[end].cache === rows[start].cache && rows[end].position == rows[end - 1].position + 1 {
                end += 1
            }
            let row = rows[start]
            let done = backend.attentionInFloat(queries: s.q + start * qw, count: end - start, position: row.position,
                                                keys: row.cache.key(l, 0), values: row.cache.value(l, 0), shape: shape,
                                                out: s.attention + start * qw)
            if !done {
                precondition(start == 0, "a backend's attentionInFloat may not refuse part of a pass")
                return false
            }
            start = end
        }
        return true
    }

    /// One projection: in F32 through BLAS when `inFloat` and the backend can; else rows from
    /// `promptFrom` on (prompt rows) through the backend's prompt-row products where it has them, and
    /// the rest exactly.
    private func project(_ p: Projection, input: UnsafePointer<Float>, count: Int, inFloat: Bool, promptFrom: Int) {
        if inFloat && backend.projectInFloat(p, input: input, count: count) { return }
        if promptFrom < count
            && backend.projectPromptRows(p, input: input + promptFrom * p.columns, first: promptFrom, count: count - promptFrom) {
            if promptFrom > 0 { backend.project(p, input: input, count: promptFrom, scratch: state.quantized) }
            return
        }
        backend.project(p, input: input, count: count, scratch: state.quantized)
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
