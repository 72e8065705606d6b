import Generation
import Kernels
import ModelFormat

/// The weights of a Llama model, in place in the (verified) GGUF buffer: matrices stay quantized;
/// only the small 1-D vectors (norms, RoPE factors) are copied to F32. Matrices with a fast (C)
/// matrix product are rearranged in place, once per buffer, into the kernels' layout
/// (`FastKernels.pack`: a fixed permutation of each matrix's bytes, its size unchanged), so that
/// the weights are held once; `WeightMatrix.isPacked` says which.
///
/// Every tensor is looked up by its llama.cpp name and checked before use: present, of a supported
/// type, with exactly the shape the config implies (ggml order, `ne0` = input width first).
/// Tensors the graph does not use are refused (a bias or an expert router would otherwise be
/// silently ignored). `output.weight` may be absent: the output projection is then tied to
/// `token_embd.weight`, as llama.cpp does.
public struct LlamaWeights: @unchecked Sendable {
    /// One transformer block's weights.
    public struct Layer: Sendable {
        /// `blk.N.attn_norm.weight`, shape `[dim]`.
        public let attentionNorm: [Float]
        /// `blk.N.attn_q.weight`: `[dim] -> [heads * headDim]`.
        public let query: WeightMatrix
        /// `blk.N.attn_k.weight`: `[dim] -> [kvHeads * headDim]`.
        public let key: WeightMatrix
        /// `blk.N.attn_v.weight`: `[dim] -> [kvHeads * headDim]`.
        public let value: WeightMatrix
        /// `blk.N.attn_output.weight`: `[heads * headDim] -> [dim]`.
        public let output: WeightMatrix
        /// `blk.N.ffn_norm.weight`, shape `[dim]`.
        public let feedForwardNorm: [Float]
        /// `blk.N.ffn_gate.weight`: `[dim] -> [ff]`.
        public let gate: WeightMatrix
        /// `blk.N.ffn_up.weight`: `[dim] -> [ff]`.
        public let up: WeightMatrix
        /// `blk.N.ffn_down.weight`: `[ff] -> [dim]`.
        public let down: WeightMatrix
        /// `blk.N.attn_q.bias`, `attn_k.bias`, `attn_v.bias` (or the thirds of `attn_qkv.bias`), if present.
        public var queryBias: [Float]?
        public var keyBias: [Float]?
        public var valueBias: [Float]?
        /// `blk.N.attn_q_norm.weight` and `attn_k_norm.weight` (`[headDim]`), when the
        /// architecture normalizes each head (`ArchitectureTraits.queryKeyNorm`).
        public var queryNorm: [Float]?
        public var keyNorm: [Float]?
        /// `blk.N.post_attention_norm.weight` and `post_ffw_norm.weight` (`[dim]`), when the
        /// architecture has them (`ArchitectureTraits.postNorms`).
        public var attentionPostNorm: [Float]?
        public var feedForwardPostNorm: [Float]?
    }

    /// `token_embd.weight`: `vocab` rows of `dim` (read one row per token).
    public let tokenEmbedding: WeightMatrix
    public let layers: [Layer]
    /// `output_norm.weight`, shape `[dim]`.
    public let outputNorm: [Float]
    /// `output.weight` (`[dim] -> [vocab]`), or `tokenEmbedding` when the model ties them.
    public let output: WeightMatrix
    /// True when `output.weight` is absent and the embedding is reused.
    public let isOutputTied: Bool
    /// `rope_freqs.weight` (`[ropeDims / 2]`), divisors of the RoPE angles (Llama 3.1 style), if present.
    public let ropeFactors: [Float]?

    /// Keeps the bytes that the matrices point into alive.
    private let file: GGUFFile

    /// The `GGUFBuffer.rearrangeOnce` key of the packing.
    static let packingKey = "securenode.llama-weights.pack-rows-4"

    /// Finds, checks and maps every tensor of `file` for `config`.
    public init(file: GGUFFile, config c: LlamaConfig) throws(InferenceError) {
        self.file = file
        var used: Set<String> = []
        var toPack: [WeightMatrix] = []
        func matrix(_ name: String, input: Int, output: Int) throws(InferenceError) -> WeightMatrix {
            used.insert(name)
            var m = try Self.matrix(file, name, input: input, output: output)
            if FastKernels.supports(m) && FastKernels.packs(m.type) {
                toPack.append(m)
                m.isPacked = true  // below, once every tensor has been checked
            }
            return m
        }
        func vector(_ name: String, _ count: Int) throws(InferenceError) -> [Float] {
            used.insert(name)
            return try Self.vector(file, name, count)
        }
        func optionalVector(_ name: String, _ count: Int) throws(InferenceError) -> [Float]? {
            file.tensor(named: name) == nil ? nil : try vector(name, count)
        }
        /// The rows of a fused matrix split into consecutive matrices of `widths` rows (views of
        /// the same bytes: each output row's dot product is the one the fused product computes).
        func split(_ name: String, input: Int, widths: [Int]) throws(InferenceError) -> [WeightMatrix] {
            used.insert(name)
            let fused = try Self.matrix(file, name, input: input, output: widths.reduce(0, +))
            var parts: [WeightMatrix] = []
            var row = 0
            for w in widths {
                guard var m = WeightMatrix(type: fused.type, rows: w, columns: input, base: fused.base + row * fused.rowBytes) else {
                    throw InferenceError(.invalidTensor, "tensor \"\(name)\" could not be mapped")
                }
                if FastKernels.supports(m) && FastKernels.packs(m.type) {
                    toPack.append(m)
                    m.isPacked = true
                }
                parts.append(m)
                row += w
            }
            return parts
        }
        let t = c.traits, dim = c.embeddingLength, qw = c.queryWidth, kvw = c.keyValueWidth, ff = c.feedForwardLength
        tokenEmbedding = try matrix("token_embd.weight", input: dim, output: c.vocabularySize)
        var layers: [Layer] = []
        layers.reserveCapacity(c.layerCount)
        for i in 0 ..< c.layerCount {
            let p = "blk.\(i)."
            let attentionNorm = try vector(p + "attn_norm.weight", dim)
            let q, k, v: WeightMatrix
            var biases: [Float]?? = nil
            if t.fusedProjections, file.tensor(named: p + "attn_qkv.weight") != nil {
                let parts = try split(p + "attn_qkv.weight", input: dim, widths: [qw, kvw, kvw])
                (q, k, v) = (parts[0], parts[1], parts[2])
                biases = .some(try optionalVector(p + "attn_qkv.bias", qw + 2 * kvw))
            } else {
                q = try matrix(p + "attn_q.weight", input: dim, output: qw)
                k = try matrix(p + "attn_k.weight", input: dim, output: kvw)
                v = try matrix(p + "attn_v.weight", input: dim, output: kvw)
            }
            let output = try matrix(p + "attn_output.weight", input: qw, output: dim)
            let feedForwardNorm = try vector(p + "ffn_norm.weight", dim)
            let gate, up: WeightMatrix
            if t.fusedProjections, file.tensor(named: p + "ffn_gate.weight") == nil {
                // Phi-3: ffn_up is [dim] -> [2 ff], the gate's rows first (ggml_swiglu of one tensor).
                let parts = try split(p + "ffn_up.weight", input: dim, widths: [ff, ff])
                (gate, up) = (parts[0], parts[1])
            } else {
                gate = try matrix(p + "ffn_gate.weight", input: dim, output: ff)
                up = try matrix(p + "ffn_up.weight", input: dim, output: ff)
            }
            let down = try matrix(p + "ffn_down.weight", input: ff, output: dim)
            var layer = Layer(attentionNorm: attentionNorm, query: q, key: k, value: v, output: output,
                              feedForwardNorm: feedForwardNorm, gate: gate, up: up, down: down)
            if case let .some(.some(fused)) = biases {
                layer.queryBias = Array(fused[0 ..< qw])
                layer.keyBias = Array(fused[qw ..< qw + kvw])
                layer.valueBias = Array(fused[(qw + kvw)...])
            } else {
                layer.queryBias = try optionalVector(p + "attn_q.bias", qw)
                layer.keyBias = try optionalVector(p + "attn_k.bias", kvw)
                layer.valueBias = try optionalVector(p + "attn_v.bias", kvw)
            }
            if t.queryKeyNorm {
                layer.queryNorm = try vector(p + "attn_q_norm.weight", c.headDimension)
                layer.keyNorm = try vector(p + "attn_k_norm.weight", c.headDimension)
            }
            if t.postNorms {
                layer.attentionPostNorm = try vector(p + "post_attention_norm.weight", dim)
                layer.feedForwardPostNorm = try vector(p + "post_ffw_norm.weight", dim)
            }
            layers.append(layer)
        }
        self.layers = layers
        outputNorm = try vector("output_norm.weight", dim)
        if !t.outputAlwaysTied, file.tensor(named: "output.weight") != nil {
            output = try matrix("output.weight", input: dim, output: c.vocabularySize)
            isOutputTied = false
        } else {
            output = tokenEmbedding
            isOutputTied = true
        }
        ropeFactors = file.tensor(named: "rope_freqs.weight") != nil
            ? try vector("rope_freqs.weight", c.ropeDimensions / 2) : nil
        if let extra = file.tensors.first(where: { !used.contains($0.name) }) {
            throw InferenceError(.invalidTensor,
                                 "tensor \"\(extra.name)\" is not part of the \(c.architecture) graph this engine runs (\(file.tensors.count) tensors, \(used.count) expected)")
        }
        // Which matrices are packed depends only on the file (types and shapes) and the CPU, so a
        // second model made from the same buffer finds them packed already.
        file.buffer.rearrangeOnce(Self.packingKey) { bytes in
            for m in toPack {
                let offset = m.base - UnsafeRawPointer(bytes.baseAddress!)
                precondition(offset >= 0 && offset + m.rowBytes * m.rows <= bytes.count, "a matrix outside its buffer")
                FastKernels.pack(m, in: bytes.baseAddress! + offset)
            }
        }
    }

    /// Maps ggml types to kernel formats; nil for the types no kernel handles.
    static func blockType(_ type: GGMLType) -> BlockType? {
        switch type {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        case .q4_0: .q4_0
        case .q4_1: .q4_1
        case .q5_0: .q5_0
        case .q5_1: .q5_1
        case .q8_0: .q8_0
        case .q4_k: .q4_K
        case .q6_k: .q6_K
        case .q2_k: .q2_K
        case .q3_k: .q3_K
        case .q5_k: .q5_K
        default: nil
        }
    }

    static func find(_ file: GGUFFile, _ name: String) throws(InferenceError) -> GGUFTensorInfo {
        guard let info = file.tensor(named: name) else {
            throw InferenceError(.missingTensor, "the model has no tensor \"\(name)\"")
        }
        return info
    }

    /// A matrix `[input, output]` (ggml order) of a supported type.
    static func matrix(_ file: GGUFFile, _ name: String, input: Int, output: Int) throws(InferenceError) -> WeightMatrix {
        let info = try find(file, name)
        guard info.dims == [input, output] else {
            throw InferenceError(.invalidTensor, "tensor \"\(name)\" has shape \(info.dims), expected [\(input), \(output)]")
        }
        guard let type = blockType(info.type) else {
            throw InferenceError(.invalidTensor, "tensor \"\(name)\" has type \(info.type), which this engine does not compute with (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)")
        }
        guard let rowBytes = type.rowBytes(input), rowBytes * output == info.byteCount,
              let view = file.view(of: info), view.count == info.byteCount else {
            throw InferenceError(.invalidTensor, "tensor \"\(name)\" of type \(info.type) and shape \(info.dims) is malformed: \(info.byteCount) bytes in the file, \(type.rowBytes(input).map { String($0 * output) } ?? "no whole blocks") expected")
        }
        // The buffer is a fixed allocation owned by `file`, which `LlamaWeights` keeps: the
        // address stays valid (and the bytes unchanged) for the life of the weights.
        let base = view.withUnsafeBytes { $0.baseAddress }
        guard let base, let matrix = WeightMatrix(type: type, rows: output, columns: input, base: base) else {
            throw InferenceError(.invalidTensor, "tensor \"\(name)\" could not be mapped")
        }
        return matrix
    }

    /// A 1-D vector of `count` elements, converted to F32.
    static func vector(_ file: GGUFFile, _ name: String, _ count: Int) throws(InferenceError) -> [Float] {
        let info = try find(file, name)
        guard info.dims == [count] else {
            throw InferenceError(.invalidTensor, "tensor \"\(name)\" has shape \(info.dims), expected [\(count)]")
        }
        guard let type = blockType(info.type), type == .f32 || type == .f16 || type == .bf16,
              let view = file.view(of: info) else {
            throw InferenceError(.invalidTensor, "tensor \"\(name)\" has type \(info.type); a norm vector must be F32, F16 or BF16")
        }
        var values = [Float](repeating: 0, count: count)
        view.withUnsafeBytes { bytes in
            values.withUnsafeMutableBufferPointer { out in
                if let base = bytes.baseAddress, let out = out.baseAddress {
                    RowKernels.dequantize(type, base, count: count, into: out)
                }
            }
        }
        return values
    }
}
