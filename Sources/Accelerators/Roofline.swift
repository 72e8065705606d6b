/// What limits an operation's modeled time.
public enum Bound: String, Sendable, Codable, CaseIterable {
    /// Arithmetic at the peak rate of its data type.
    case compute
    /// Device memory bandwidth.
    case memory
    /// The host link: bytes over its bandwidth plus its latency.
    case link
    /// Launch overhead (submitting the operation).
    case overhead
}

/// What an operation asks of a device: arithmetic, device-memory traffic, host-link traffic.
public struct Work: Sendable, Equatable {
    public var category: CostCategory
    /// Arithmetic operations (a multiply-add counts 2).
    public var flops: Double
    public var dataType: DataType
    /// Bytes read or written in device memory.
    public var memoryBytes: Double
    /// Bytes crossing the host link (both directions together).
    public var linkBytes: Double
    /// Link latencies paid: 1 for an operation that transfers anything, 0 when its transfer rides
    /// with another operation's.
    public var linkTransfers: Int
    /// Operations submitted (each pays the launch overhead).
    public var launches: Int

    public init(_ category: CostCategory, flops: Double = 0, dataType: DataType = .fp32, memoryBytes: Double = 0,
                linkBytes: Double = 0, linkTransfers: Int? = nil, launches: Int = 1) {
        self.category = category
        self.flops = flops
        self.dataType = dataType
        self.memoryBytes = memoryBytes
        self.linkBytes = linkBytes
        self.linkTransfers = linkTransfers ?? (linkBytes > 0 ? 1 : 0)
        self.launches = launches
    }
}

/// An operation's modeled time, by term (seconds).
public struct Cost: Sendable, Equatable {
    /// F / peak of the data type.
    public var compute: Double
    /// B / memory bandwidth.
    public var memory: Double
    /// L / link bandwidth + latency per transfer.
    public var link: Double
    /// Launch overhead per operation submitted.
    public var overhead: Double

    /// `max(compute, memory) + link + overhead`: compute and memory traffic overlap; the link
    /// transfer and the launch do not.
    public var total: Double { max(compute, memory) + link + overhead }

    /// The largest term (ties go to the earlier of compute, memory, link, overhead).
    public var bound: Bound {
        let terms: [(Bound, Double)] = [(.compute, compute), (.memory, memory), (.link, link), (.overhead, overhead)]
        return terms.reduce(terms[0]) { $1.1 > $0.1 ? $1 : $0 }.0
    }
}

/// The roofline model of one device:
///
///     time = max(F / peak(T), B / memoryBandwidth) + L / linkBandwidth + latency (if L > 0) + launches x overhead
///
/// for F operations in data type T, B bytes of device memory traffic and L bytes over the host
/// link. A device without a native path for T computes at its fp32 peak. A device on the host
/// (``DeviceSpec/Placement/host``) has no link: L must be 0 there.
public struct Roofline: Sendable {
    public let device: DeviceSpec

    public init(device: DeviceSpec) { self.device = device }

    public func cost(_ work: Work) -> Cost {
        let (rate, _) = device.peak(for: work.dataType)
        let compute = work.flops > 0 ? work.flops / rate : 0
        let memory = work.memoryBytes > 0 ? work.memoryBytes / device.memoryBandwidth.value : 0
        var link = 0.0
        if let l = device.hostLink {
            link = work.linkBytes / l.bandwidth.value + Double(work.linkTransfers) * l.latency.value
        } else {
            precondition(work.linkBytes == 0, "\(device.kind) is the host: no bytes cross a link")
        }
        return Cost(compute: compute, memory: memory, link: link, overhead: Double(work.launches) * device.launchOverhead.value)
    }
}
