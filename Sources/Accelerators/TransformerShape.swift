import Kernels

/// A Llama-family model described by its hyperparameters alone (no weights): enough to model
/// its forward passes on a device.
public struct TransformerShape: Sendable, Equatable {
    public var name: String
    public var layers: Int
    public var embedding: Int
    public var feedForward: Int
    public var heads: Int
    public var kvHeads: Int
    public var vocabulary: Int
    /// Format of the layers' matrices (Q, K, V, output, gate, up, down).
    public var weightType: BlockType
    /// Format of the output projection (the token embedding when tied).
    public var outputType: BlockType
    /// Whether the output projection is the token embedding (then the embedding adds no bytes).
    public var tiedEmbedding: Bool

    public init(name: String, layers: Int, embedding: Int, feedForward: Int, heads: Int, kvHeads: Int, vocabulary: Int,
                weightType: BlockType, outputType: BlockType, tiedEmbedding: Bool) {
        self.name = name
        self.layers = layers
        self.embedding = embedding
        self.feedForward = feedForward
        self.heads = heads
        self.kvHeads = kvHeads
        self.vocabulary = vocabulary
        self.weightType = weightType
        self.outputType = outputType
        self.tiedEmbedding = tiedEmbedding
    }

    public var headDimension: Int { embedding / heads }
    public var queryWidth: Int { heads * headDimension }
    public var keyValueWidth: Int { kvHeads * headDimension }

    func rowBytes(_ type: BlockType, _ columns: Int) -> Int {
        guard let bytes = type.rowBytes(columns) else { preconditionFailure("\(name): \(columns) columns do not fill \(type) blocks") }
        return bytes
    }

    /// Bytes of one layer's seven matrices.
    public var layerWeightBytes: Int {
        let d = embedding, qw = queryWidth, kvw = keyValueWidth, ff = feedForward, t = weightType
        return (qw + 2 * kvw) * rowBytes(t, d) + d * rowBytes(t, qw) + 2 * ff * rowBytes(t, d) + d * rowBytes(t, ff)
    }

    /// Bytes the device holds: every layer's matrices and the output projection (what the engine
    /// prepares; the embedding table, read one row per token on the host, is not counted unless
    /// it is the tied output projection).
    public var residentWeightBytes: Int { layers * layerWeightBytes + vocabulary * rowBytes(outputType, embedding) }

    /// Bytes of every weight, the embedding table included (a whole-model footprint).
    public var totalWeightBytes: Int {
        residentWeightBytes + (tiedEmbedding ? 0 : vocabulary * rowBytes(outputType, embedding))
    }

    /// Bytes of an F16 key/value cache for `context` positions.
    public func kvCacheBytes(context: Int) -> Int { layers * context * keyValueWidth * 2 * 2 }

    /// Parameters (elements of every matrix, the embedding included).
    public var parameters: Int {
        let d = embedding
        return layers * ((queryWidth + 2 * keyValueWidth) * d + d * queryWidth + 3 * feedForward * d)
            + vocabulary * d * (tiedEmbedding ? 1 : 2)
    }

    // MARK: the shapes the benchmark models

    /// SmolLM2-135M-Instruct as in the default model's GGUF (Q4_1 layers; tied Q8_0 embedding):
    /// llama.block_count 30, embedding_length 576, feed_forward_length 1536, head_count 9,
    /// head_count_kv 3, vocab_size 49152.
    public static let smolLM2_135M = TransformerShape(
        name: "SmolLM2-135M", layers: 30, embedding: 576, feedForward: 1536, heads: 9, kvHeads: 3, vocabulary: 49152,
        weightType: .q4_1, outputType: .q8_0, tiedEmbedding: true)

    /// Llama-2-7B: 32 layers, dim 4096, feed-forward 11008, 32 heads, 32 KV heads, vocabulary 32000;
    /// every matrix in `type`.
    public static func llama2_7B(_ type: BlockType) -> TransformerShape {
        TransformerShape(name: "Llama-2-7B", layers: 32, embedding: 4096, feedForward: 11008, heads: 32, kvHeads: 32,
                         vocabulary: 32000, weightType: type, outputType: type, tiedEmbedding: false)
    }

    /// Llama-2-70B: 80 layers, dim 8192, feed-forward 28672, 64 heads, 8 KV heads, vocabulary 32000;
    /// every matrix in `type`.
    public static func llama2_70B(_ type: BlockType) -> TransformerShape {
        TransformerShape(name: "Llama-2-70B", layers: 80, embedding: 8192, feedForward: 28672, heads: 64, kvHeads: 8,
                         vocabulary: 32000, weightType: type, outputType: type, tiedEmbedding: false)
    }
}
