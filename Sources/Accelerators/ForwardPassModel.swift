import Kernels

/// The operations of `LlamaEngine.forward`, enumerated from a ``TransformerShape`` in the order the
/// engine submits them, and their modeled time on a device. ``ModeledBackend`` charges the same
/// ``Work`` from the real calls; the tests check that both agree on a real model.
public struct ForwardPassModel: Sendable {
    /// One token of a pass: which sequence, at which position, and whether its logits are wanted.
    public struct Row: Sendable, Equatable {
        public var sequence: Int
        public var position: Int
        public var wantsLogits: Bool
        public init(sequence: Int = 0, position: Int, wantsLogits: Bool) {
            self.sequence = sequence
            self.position = position
            self.wantsLogits = wantsLogits
        }
    }

    public let shape: TransformerShape
    public let device: DeviceSpec
    public let accounting: OperationAccounting
    public let roofline: Roofline

    public init(shape: TransformerShape, device: DeviceSpec, linkPolicy: LinkPolicy = .everyOperation) {
        self.shape = shape
        self.device = device
        accounting = OperationAccounting(placement: device.placement, policy: linkPolicy)
        roofline = Roofline(device: device)
    }

    /// The work of one forward pass over `rows`, in the engine's order.
    public func works(_ rows: [Row]) -> [Work] {
        let s = shape, n = rows.count, d = s.embedding, qw = s.queryWidth, kvw = s.keyValueWidth, ff = s.feedForward
        let t = s.weightType
        var out: [Work] = []
        func project(columns: Int, outputs: Int, type: BlockType, count: Int) {
            out.append(accounting.projection(columns: columns, outputs: outputs, weightBytes: outputs * s.rowBytes(type, columns),
                                             activationRowBytes: s.rowBytes(type.dotType, columns), weightType: type, count: count))
        }
        if let input = accounting.passInput(rows: n, width: d) { out.append(input) }
        // Each head reads positions 0...position of its sequence; heads of a group, and rows of one
        // sequence, read the same key/value rows.
        let positionSum = s.heads * rows.reduce(0) { $0 + $1.position + 1 }
        var longest: [Int: Int] = [:]
        for r in rows { longest[r.sequence] = max(longest[r.sequence] ?? 0, r.position + 1) }
        let distinct = s.kvHeads * longest.values.reduce(0, +)
        for _ in 0 ..< s.layers {
            project(columns: d, outputs: qw + 2 * kvw, type: t, count: n)
            for _ in 0 ..< 2 * n { out.append(accounting.kvStore(count: kvw)) }
            out.append(accounting.attention(heads: n * s.heads, headDim: s.headDimension, positionSum: positionSum, distinctPositions: distinct))
            project(columns: qw, outputs: d, type: t, count: n)
            project(columns: d, outputs: 2 * ff, type: t, count: n)
            out.append(accounting.swiglu(rows: n, width: ff))
            project(columns: ff, outputs: d, type: t, count: n)
        }
        let wanted = rows.filter(\.wantsLogits).count
        if wanted > 0 {
            project(columns: d, outputs: s.vocabulary, type: s.outputType, count: wanted)
            if let logits = accounting.passOutput(floats: wanted * s.vocabulary) { out.append(logits) }
        }
        return out
    }

    /// Modeled time of forward passes over `passes`.
    public func time(_ passes: [[Row]]) -> ModeledTime {
        var total = ModeledTime()
        for pass in passes {
            for w in works(pass) { total.add(w, roofline.cost(w)) }
        }
        return total
    }

    /// The passes of evaluating a `count`-token prompt from `start` in batches of `batch` rows,
    /// as `LlamaSession.evaluate(_:logits: .last)` runs it: only the last token wants logits.
    public static func promptPasses(count: Int, start: Int = 0, batch: Int) -> [[Row]] {
        stride(from: 0, to: count, by: batch).map { first in
            (first ..< min(count, first + batch)).map { Row(position: start + $0, wantsLogits: $0 == count - 1) }
        }
    }

    /// One decoding step of one sequence at `position`.
    public static func decodePass(position: Int) -> [Row] { [Row(position: position, wantsLogits: true)] }

    /// Time to upload the resident weights (attached devices), apart from the passes: one transfer
    /// per matrix (seven per layer and the output projection), as ``ModeledBackend`` makes them resident.
    public var uploadTime: Double {
        let d = shape.embedding, qw = shape.queryWidth, kvw = shape.keyValueWidth, ff = shape.feedForward, t = shape.weightType
        let layer = [qw * shape.rowBytes(t, d), kvw * shape.rowBytes(t, d), kvw * shape.rowBytes(t, d), d * shape.rowBytes(t, qw),
                     ff * shape.rowBytes(t, d), ff * shape.rowBytes(t, d), d * shape.rowBytes(t, ff)]
        let matrices = Array(repeating: layer, count: shape.layers).flatMap { $0 } + [shape.vocabulary * shape.rowBytes(shape.outputType, d)]
        return matrices.reduce(0) { $0 + roofline.cost(accounting.upload(bytes: $1)).total }
    }
}

/// Modeled prefill and decode speed of a shape on a device.
public struct SpeedEstimate: Sendable {
    public var prefill: ModeledTime
    public var decode: ModeledTime
    public var promptTokens: Int
    public var decodePosition: Int
    public var uploadSeconds: Double
    /// Resident weights plus a KV cache of `fitContext` positions against the device's memory.
    public var fits: Bool
    public var fitContext: Int
    public var residentBytes: Int
    public var kvCacheBytes: Int

    public var prefillTokensPerSecond: Double { Double(promptTokens) / prefill.seconds }
    public var decodeTokensPerSecond: Double { 1 / decode.seconds }

    /// Prefill of `prompt` tokens in batches of `batch` (the engine's default, 64), and one decoding
    /// step at position `prompt` (the token after the prompt).
    public static func estimate(shape: TransformerShape, device: DeviceSpec, linkPolicy: LinkPolicy = .everyOperation,
                                prompt: Int = 512, batch: Int = 64, fitContext: Int = 4096) -> SpeedEstimate {
        let model = ForwardPassModel(shape: shape, device: device, linkPolicy: linkPolicy)
        let kv = shape.kvCacheBytes(context: fitContext)
        return SpeedEstimate(
            prefill: model.time(ForwardPassModel.promptPasses(count: prompt, batch: batch)),
            decode: model.time([ForwardPassModel.decodePass(position: prompt)]),
            promptTokens: prompt, decodePosition: prompt, uploadSeconds: model.uploadTime,
            fits: Double(shape.residentWeightBytes + kv) <= device.memoryCapacity.value,
            fitContext: fitContext, residentBytes: shape.residentWeightBytes, kvCacheBytes: kv)
    }
}
