import Kernels
import SystemMemory

/// The attention keys and values of every position seen so far, for every layer, stored as F16
/// (llama.cpp's default cache type, so attention reads the same rounded values it does).
///
/// Shapes: `keys` and `values` are `[layers][capacity][kvWidth]` F16 bit patterns, position-major
/// within a layer; keys are stored after RoPE.
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    /// Positions it can hold.
    public let capacity: Int
    /// `kvHeads * headDim` values per position per layer.
    public let kvWidth: Int
    /// `[layers][capacity][kvWidth]` F16 bits.
    let keys: UnsafeMutablePointer<UInt16>
    /// `[layers][capacity][kvWidth]` F16 bits.
    let values: UnsafeMutablePointer<UInt16>
    /// Where `keys` and `values` live: zeroed anonymous memory, on huge pages where the kernel allows
    /// (every decoded token reads the keys and values of every position so far).
    private let keyMemory: AnonymousMemory
    private let valueMemory: AnonymousMemory

    public init(layers: Int, capacity: Int, kvWidth: Int) {
        self.layers = layers
        self.capacity = capacity
        self.kvWidth = kvWidth
        let count = layers * capacity * kvWidth
        // Out of memory traps, as an allocation does (the context length is the operator's, bounded).
        guard let keyMemory = AnonymousMemory(byteCount: count * MemoryLayout<UInt16>.stride),
              let valueMemory = AnonymousMemory(byteCount: count * MemoryLayout<UInt16>.stride) else {
            fatalError("out of memory for a KV cache of \(layers) layers x \(capacity) positions")
        }
        self.keyMemory = keyMemory
        self.valueMemory = valueMemory
        keys = keyMemory.base.bindMemory(to: UInt16.self, capacity: count)
        values = valueMemory.base.bindMemory(to: UInt16.self, capacity: count)
        // Touched now, not as positions are first written: a node whose caches do not fit its memory
        // limit fails when it starts, not under load.
        keys.initialize(repeating: 0, count: count)
        values.initialize(repeating: 0, count: count)
    }

    /// Bytes held.
    public var byteCount: Int { 2 * 2 * layers * capacity * kvWidth }

    /// The keys of `layer` at `position` (`kvWidth` F16 values).
    @inline(__always)
    func key(_ layer: Int, _ position: Int) -> UnsafeMutablePointer<UInt16> {
        keys + (layer * capacity + position) * kvWidth
    }

    /// The values of `layer` at `position` (`kvWidth` F16 values).
    @inline(__always)
    func value(_ layer: Int, _ position: Int) -> UnsafeMutablePointer<UInt16> {
        values + (layer * capacity + position) * kvWidth
    }

    /// Stores `kvWidth` floats as F16 keys and values of `layer` at `position`.
    func store(layer: Int, position: Int, key k: UnsafePointer<Float>, value v: UnsafePointer<Float>) {
        let kd = key(layer, position), vd = value(layer, position)
        for i in 0 ..< kvWidth {
            kd[i] = Half.bits(k[i])
            vd[i] = Half.bits(v[i])
        }
    }

    /// Copies positions `0 ..< count` of every layer from `other` (same shape): a prompt evaluated
    /// once, shared by sequences that continue it differently. Bit for bit what evaluating the same
    /// tokens would have stored.
    func copyPositions(from other: KVCache, count: Int) {
        precondition(other.layers == layers && other.kvWidth == kvWidth && count <= capacity && count <= other.capacity)
        for layer in 0 ..< layers {
            key(layer, 0).update(from: other.key(layer, 0), count: count * kvWidth)
            value(layer, 0).update(from: other.value(layer, 0), count: count * kvWidth)
        }
    }
}
