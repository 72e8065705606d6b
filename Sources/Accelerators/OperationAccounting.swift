import Kernels

/// Which activations cross the host link of an attached device.
public enum LinkPolicy: String, Sendable, Codable, CaseIterable {
    /// Every backend operation's inputs go to the device and its outputs come back. This is the
    /// engine as it is: RMSNorm, RoPE and the residual adds stay on the host between operations
    /// (see `LlamaEngine.forward`), so each operation's activations make a round trip.
    case everyOperation
    /// The whole forward pass runs on the device (a port that also moves the per-token vector steps
    /// there): the rows' hidden states go in when the pass starts and the logits come out at its end.
    case forwardPassEnds
}

/// How each backend operation turns into ``Work``. One place, used by ``ModeledBackend`` (from the
/// real projections and attention batches the engine submits) and by ``ForwardPassModel`` (from
/// hyperparameters alone), so that the two agree by construction and the tests can hold them to it.
///
/// Byte and operation counts:
/// - matmul: 2 x rows x columns operations per input vector; device memory: the weights once per
///   call, the quantized inputs, the float outputs; link: float inputs in, float outputs back.
/// - attention: 4 x positions x headDim per head (q.k and the weighted sum of v; softmax not
///   counted); device memory: each distinct key/value head's F16 rows once per call (heads of a
///   group and rows of one sequence share them), plus queries and outputs; link: queries in,
///   outputs back.
/// - swiglu: 4 operations per element (an estimate for silu's exp and division and the product);
///   memory and link: gate and up in, gate out.
/// - kvStore: the float row in, F16 into the device's cache; no launch and no latency of its own
///   (it rides with the projection that made the keys and values).
/// - not counted: the per-token vector steps (embedding lookup, RMSNorm, RoPE, residual adds).
public struct OperationAccounting: Sendable {
    public let placement: DeviceSpec.Placement
    public let policy: LinkPolicy

    public init(placement: DeviceSpec.Placement, policy: LinkPolicy) {
        self.placement = placement
        self.policy = policy
    }

    /// Whether each operation's activations cross the link.
    var perOperation: Bool { placement == .attached && policy == .everyOperation }
    /// Whether the pass's input and logits cross the link at its ends.
    var atPassEnds: Bool { placement == .attached && policy == .forwardPassEnds }

    /// The arithmetic a weight format computes in: quantized weights are multiplied with 8-bit
    /// quantized activations (integer dot products), F16/BF16 in fp16, F32 in fp32.
    public static func dataType(of weights: BlockType) -> DataType {
        switch weights {
        case .f32: .fp32
        case .f16, .bf16: .fp16
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .q4_K, .q6_K, .q8_K, .q2_K, .q3_K, .q5_K: .int8
        }
    }

    /// `count` input vectors of `columns` floats through matrices with `outputs` rows in all.
    public func projection(columns: Int, outputs: Int, weightBytes: Int, activationRowBytes: Int, weightType: BlockType, count: Int) -> Work {
        let n = Double(count), inBytes = n * Double(columns) * 4, outBytes = n * Double(outputs) * 4
        return Work(.matmul, flops: 2 * Double(outputs) * Double(columns) * n, dataType: Self.dataType(of: weightType),
                    memoryBytes: Double(weightBytes) + n * Double(activationRowBytes) + outBytes,
                    linkBytes: perOperation ? inBytes + outBytes : 0)
    }

    /// `heads` attention heads over `positionSum` cached positions in all, of which `distinctPositions`
    /// are distinct key/value rows (per key/value head and sequence).
    public func attention(heads: Int, headDim: Int, positionSum: Int, distinctPositions: Int) -> Work {
        let d = Double(headDim), vectors = Double(heads) * d * 4 * 2
        return Work(.attention, flops: 4 * Double(positionSum) * d, dataType: .fp32,
                    memoryBytes: Double(distinctPositions) * d * 2 * 2 + vectors,
                    linkBytes: perOperation ? vectors : 0)
    }

    public func swiglu(rows: Int, width: Int) -> Work {
        let elements = Double(rows) * Double(width)
        return Work(.swiglu, flops: 4 * elements, dataType: .fp32, memoryBytes: elements * 4 * 3,
                    linkBytes: perOperation ? elements * 4 * 3 : 0)
    }

    public func kvStore(count: Int) -> Work {
        let c = Double(count)
        return Work(.kvStore, flops: c, dataType: .fp32, memoryBytes: c * 4 + c * 2,
                    linkBytes: perOperation ? c * 4 : 0, linkTransfers: 0, launches: 0)
    }

    /// The rows' hidden states entering the device at the start of a pass (``LinkPolicy/forwardPassEnds``).
    public func passInput(rows: Int, width: Int) -> Work? {
        atPassEnds ? Work(.transfer, linkBytes: Double(rows) * Double(width) * 4, launches: 0) : nil
    }

    /// The logits leaving the device at the end of a pass (``LinkPolicy/forwardPassEnds``).
    public func passOutput(floats: Int) -> Work? {
        atPassEnds ? Work(.transfer, linkBytes: Double(floats) * 4, launches: 0) : nil
    }

    /// Weights made resident: copied over the link once for an attached device; already in place
    /// on the host.
    public func upload(bytes: Int) -> Work {
        Work(.upload, linkBytes: placement == .attached ? Double(bytes) : 0, launches: 0)
    }
}
