import Kernels

/// Scratch buffers for one forward pass over a batch of up to `batchCapacity` tokens (llama2.c's
/// `RunState`). Allocated once per session; nothing is allocated per token.
final class LlamaRunState {
    let batchCapacity: Int
    /// Residual stream, `[batch][dim]`.
    let x: UnsafeMutablePointer<Float>
    /// Normalized input of a sub-layer, `[batch][dim]`.
    let xb: UnsafeMutablePointer<Float>
    /// Sub-layer output before the residual add, `[batch][dim]`.
    let xb2: UnsafeMutablePointer<Float>
    /// Queries, `[batch][heads * headDim]`.
    let q: UnsafeMutablePointer<Float>
    /// Keys, `[batch][kvHeads * headDim]`.
    let k: UnsafeMutablePointer<Float>
    /// Values, `[batch][kvHeads * headDim]`.
    let v: UnsafeMutablePointer<Float>
    /// Attention output (heads concatenated), `[batch][heads * headDim]`.
    let attention: UnsafeMutablePointer<Float>
    /// SwiGLU gate (then the gated activation), `[batch][ff]`.
    let hb: UnsafeMutablePointer<Float>
    /// SwiGLU up projection, `[batch][ff]`.
    let hb2: UnsafeMutablePointer<Float>
    /// Logits of the rows that want them, `[logitRows][vocab]`.
    let logits: UnsafeMutablePointer<Float>
    /// RoPE cos/sin pairs per token of the batch, `[batch][ropeDims]`.
    let ropeTables: UnsafeMutablePointer<Float>
    /// The same for the sliding-window layers of an architecture whose local RoPE base differs
    /// (`ArchitectureTraits.localRopeBase`; Gemma 3).
    let localRopeTables: UnsafeMutablePointer<Float>
    /// Activations converted to a weight's dot-product format, `[batch][bytes per row]`,
    /// sized for the widest input (`max(dim, heads * headDim, ff)`) in the largest format.
    let quantized: UnsafeMutableRawPointer
    private var allocations: [UnsafeMutablePointer<Float>] = []

    init(config c: LlamaConfig, batchCapacity: Int, logitRows: Int, contextCapacity: Int) {
        self.batchCapacity = batchCapacity
        var owned: [UnsafeMutablePointer<Float>] = []
        func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            owned.append(p)
            return p
        }
        let b = batchCapacity
        x = buffer(b * c.embeddingLength)
        xb = buffer(b * c.embeddingLength)
        xb2 = buffer(b * c.embeddingLength)
        q = buffer(b * c.queryWidth)
        k = buffer(b * c.keyValueWidth)
        v = buffer(b * c.keyValueWidth)
        attention = buffer(b * c.queryWidth)
        hb = buffer(b * c.feedForwardLength)
        hb2 = buffer(b * c.feedForwardLength)
        logits = buffer(min(b, logitRows) * c.vocabularySize)
        ropeTables = buffer(b * c.ropeDimensions)
        localRopeTables = buffer(c.traits.localRopeBase == nil ? 1 : b * c.ropeDimensions)
        allocations = owned
        let widest = max(c.embeddingLength, c.queryWidth, c.feedForwardLength)
        // F32 is the largest per element (4 bytes); round up to whole Q8_K blocks.
        let bytes = b * (widest + 256) * 4
        quantized = .allocate(byteCount: bytes, alignment: 64)
        quantized.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    }

    deinit {
        for p in allocations { p.deallocate() }
        quantized.deallocate()
    }
}
