import Dispatch

/// A read-only weight matrix in a block format: `rows` rows of `columns` elements, row `r` at
/// `base + r * rowBytes`. It does not own the memory: whoever makes one keeps the bytes alive
/// (the model keeps the GGUF buffer).
public struct WeightMatrix: @unchecked Sendable {
    public let type: BlockType
    /// Output features (ggml `ne1`).
    public let rows: Int
    /// Input features (ggml `ne0`), a multiple of `type.blockSize`.
    public let columns: Int
    /// Bytes per row: `columns / blockSize * blockBytes`.
    public let rowBytes: Int
    public let base: UnsafeRawPointer
    /// True when the bytes at `base` are in the C kernels' layout (`FastKernels.pack`) rather than
    /// ggml rows: only the fast matrix products and `dequantizeRow` may then read them.
    public var isPacked = false

    /// Nil when `columns` is not a multiple of the block size or the type is an activation format.
    public init?(type: BlockType, rows: Int, columns: Int, base: UnsafeRawPointer) {
        guard type.isWeightType, rows >= 0, let rowBytes = type.rowBytes(columns) else { return nil }
        self.type = type
        self.rows = rows
        self.columns = columns
        self.rowBytes = rowBytes
        self.base = base
    }

    /// Row `r`, dequantized into `out` (`columns` floats).
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        guard isPacked else {
            if FastKernels.dequantize(type, base + r * rowBytes, count: columns, into: out) { return }
            RowKernels.dequantize(type, base + r * rowBytes, count: columns, into: out)
            return
        }
        withUnsafeTemporaryAllocation(byteCount: rowBytes, alignment: 16) { row in
            FastKernels.unpackRow(self, r, into: row.baseAddress!)
            if FastKernels.dequantize(type, UnsafeRawPointer(row.baseAddress!), count: columns, into: out) { return }
            RowKernels.dequantize(type, UnsafeRawPointer(row.baseAddress!), count: columns, into: out)
        }
    }
}

/// Matrix products of a quantized weight matrix with a batch of activation vectors, computed as
/// ggml does: the activations are converted once to the weights' dot-product format (Q8_1 for
/// Q4_1, Q8_0 for Q8_0, ...), then every output is one row dot product.
public enum MatMul {
    /// Bytes `quantize` needs for a batch of `count` vectors of `columns` floats.
    public static func activationBytes(for type: BlockType, columns: Int, count: Int) -> Int {
        (type.dotType.rowBytes(columns) ?? 0) * count
    }

    /// Converts `count` vectors of `w.columns` floats at `x` (stride `w.columns`) into `w`'s
    /// dot-product format in `scratch` (at least `activationBytes` bytes).
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, for w: WeightMatrix,
                                into scratch: UnsafeMutableRawPointer) {
        let format = w.type.dotType
        let stride = format.rowBytes(w.columns) ?? 0
        for t in 0 ..< count {
            RowKernels.quantize(x + t * w.columns, count: w.columns, to: format, into: scratch + t * stride)
        }
    }

    /// `out[t * w.rows + r] = dot(row r of w, activation t)` for `count` activations already
    /// converted by `quantize`. Rows are split among `threads` threads when the matrix is large.
    public static func multiply(_ w: WeightMatrix, quantized: UnsafeRawPointer, count: Int,
                                into out: UnsafeMutablePointer<Float>, threads: Int = 1) {
        precondition(!w.isPacked, "a packed matrix has only the fast (C) products")
        let stride = w.type.dotType.rowBytes(w.columns) ?? 0
        let work = w.rows * w.columns * count
        let parts = work >= 1 << 18 ? max(1, min(threads, w.rows)) : 1
        let rowsPerPart = (w.rows + parts - 1) / parts
        nonisolated(unsafe) let outAddress = UnsafeMutableRawPointer(out)
        nonisolated(unsafe) let quantized = quantized
        let body: @Sendable (Int) -> Void = { part in
            let out = outAddress.assumingMemoryBound(to: Float.self)
            let first = part * rowsPerPart
            let last = min(w.rows, first + rowsPerPart)
            guard first < last else { return }
            for r in first ..< last {
                let row = w.base + r * w.rowBytes
                for t in 0 ..< count {
                    out[t * w.rows + r] = RowKernels.dot(w.type, row, quantized + t * stride, count: w.columns)
                }
            }
        }
        if parts == 1 {
            body(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: parts, execute: body)
        }
    }
}
