/// What a modeled second was spent on.
public enum CostCategory: String, Sendable, Codable, CaseIterable {
    /// Quantized matrix products (``Inference/BackendOperation/matmul``).
    case matmul
    case attention
    case swiglu
    /// Keys and values stored into the device's F16 cache.
    case kvStore
    /// Activations entering and logits leaving the device at the ends of a forward pass
    /// (``LinkPolicy/forwardPassEnds`` only).
    case transfer
    /// Weights made resident in device memory (once, in `prepare`): counted apart from forward passes.
    case upload
}

/// Accumulated modeled time and what it was spent on. Forward-pass work and the one-time upload
/// are kept apart: `seconds` is the forward passes only.
public struct ModeledTime: Sendable, Equatable, Codable {
    /// Modeled seconds of forward-pass work.
    public private(set) var seconds: Double = 0
    /// Modeled seconds of making weights resident (uploads), not included in `seconds`.
    public private(set) var setupSeconds: Double = 0
    /// Forward-pass seconds by ``CostCategory`` raw value.
    public private(set) var byCategory: [String: Double] = [:]
    /// Forward-pass seconds by the ``Bound`` of each operation (each operation's whole time goes to its bound).
    public private(set) var byBound: [String: Double] = [:]
    /// Forward-pass seconds by term, summed over operations (compute and memory overlap within an
    /// operation, so these add up to more than `seconds` when both are non-zero).
    public private(set) var byTerm: [String: Double] = [:]
    public private(set) var operations = 0
    public private(set) var flops: Double = 0
    public private(set) var memoryBytes: Double = 0
    public private(set) var linkBytes: Double = 0

    public init() {}

    public mutating func add(_ work: Work, _ cost: Cost) {
        if work.category == .upload {
            setupSeconds += cost.total
            return
        }
        seconds += cost.total
        byCategory[work.category.rawValue, default: 0] += cost.total
        byBound[cost.bound.rawValue, default: 0] += cost.total
        byTerm[Bound.compute.rawValue, default: 0] += cost.compute
        byTerm[Bound.memory.rawValue, default: 0] += cost.memory
        byTerm[Bound.link.rawValue, default: 0] += cost.link
        byTerm[Bound.overhead.rawValue, default: 0] += cost.overhead
        operations += work.launches
        flops += work.flops
        memoryBytes += work.memoryBytes
        linkBytes += work.linkBytes
    }

    public func seconds(_ category: CostCategory) -> Double { byCategory[category.rawValue] ?? 0 }
    public func seconds(boundBy bound: Bound) -> Double { byBound[bound.rawValue] ?? 0 }

    /// The bound that took the most forward-pass time.
    public var dominantBound: Bound {
        Bound.allCases.reduce(Bound.compute) { seconds(boundBy: $1) > seconds(boundBy: $0) ? $1 : $0 }
    }
}
