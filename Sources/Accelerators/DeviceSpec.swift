/// Arithmetic data types a device's peak rates are given for.
public enum DataType: String, Sendable, Codable, CaseIterable {
    case fp32
    /// FP16 and BF16 (the same rate on the devices modeled here).
    case fp16
    /// 8-bit integer dot products: what quantized weights (Q4_x, Q8_0, K-quants) run on, since the
    /// activations are quantized to 8 bits and the products are integer dot products (ggml's Arm path).
    case int8
    case fp8
    case fp4
}

/// A modeled target: the numbers the roofline needs, each with its provenance (``Quantity``).
/// `DeviceCatalog` holds the specs; every profile that selects a device backend carries a copy
/// (`backend.model`) that `securenode profile check` compares with the built-in one.
public struct DeviceSpec: Sendable, Codable, Equatable {
    /// Where the device's memory is, seen from the host that runs the node.
    public enum Placement: String, Sendable, Codable {
        /// A separate device (a DPU on PCIe): weights are uploaded once over the host link;
        /// activations cross it.
        case attached
        /// The device is the host CPU itself (Vera): nothing crosses a link.
        case host
    }

    public struct HostLink: Sendable, Codable, Equatable {
        public var name: String
        /// Bytes per second, one direction.
        public var bandwidth: Quantity
        /// Seconds added once per operation that transfers anything.
        public var latency: Quantity

        public init(name: String, bandwidth: Quantity, latency: Quantity) {
            self.name = name
            self.bandwidth = bandwidth
            self.latency = latency
        }
    }

    /// Backend kind ("bluefield-3", ...), as in a profile's `backend.kind`.
    public var kind: String
    public var name: String
    /// What is public: shipping product, or announced with partial specifications.
    public var status: String
    public var placement: Placement
    public var cores: Quantity
    /// Hardware threads, where they differ from cores.
    public var threads: Quantity?
    public var clock: Quantity
    /// Vector units per core, as the peak rates use them (documentation).
    public var vectorUnits: String
    /// Peak operations per second by ``DataType`` raw value (types the device has no native path
    /// for are absent: the roofline falls back to fp32 for them).
    public var peak: [String: Quantity]
    /// Device memory bandwidth, bytes per second.
    public var memoryBandwidth: Quantity
    /// Device memory capacity, bytes.
    public var memoryCapacity: Quantity
    public var memoryType: String
    /// The link between the host and the device memory (nil for ``Placement/host``).
    public var hostLink: HostLink?
    /// Other links of the part, for the record (not used by the roofline), e.g. NVLink-C2C to a GPU.
    public var otherLinks: [String: Quantity]
    /// Seconds per operation submitted (a fork-join of the device's cores).
    public var launchOverhead: Quantity
    /// The modeled device's firmware identity: the bytes its firmware measurement is the SHA-384 of.
    public var firmware: String

    public init(kind: String, name: String, status: String, placement: Placement, cores: Quantity, threads: Quantity?, clock: Quantity,
                vectorUnits: String, peak: [String: Quantity], memoryBandwidth: Quantity, memoryCapacity: Quantity, memoryType: String,
                hostLink: HostLink?, otherLinks: [String: Quantity], launchOverhead: Quantity, firmware: String) {
        self.kind = kind
        self.name = name
        self.status = status
        self.placement = placement
        self.cores = cores
        self.threads = threads
        self.clock = clock
        self.vectorUnits = vectorUnits
        self.peak = peak
        self.memoryBandwidth = memoryBandwidth
        self.memoryCapacity = memoryCapacity
        self.memoryType = memoryType
        self.hostLink = hostLink
        self.otherLinks = otherLinks
        self.launchOverhead = launchOverhead
        self.firmware = firmware
    }

    /// Peak rate for `type`, or the fp32 rate (and `fp32`) when the device has no native path for it.
    public func peak(for type: DataType) -> (rate: Double, type: DataType) {
        if let q = peak[type.rawValue] { return (q.value, type) }
        return (peak[DataType.fp32.rawValue]?.value ?? 0, .fp32)
    }

    /// Every quantity with a dotted path naming it (for provenance checks and listings).
    public var quantities: [(path: String, quantity: Quantity)] {
        var all: [(String, Quantity)] = [("cores", cores), ("clock", clock)]
        if let threads { all.append(("threads", threads)) }
        all += peak.sorted { $0.key < $1.key }.map { ("peak.\($0.key)", $0.value) }
        all += [("memoryBandwidth", memoryBandwidth), ("memoryCapacity", memoryCapacity)]
        if let hostLink { all += [("hostLink.bandwidth", hostLink.bandwidth), ("hostLink.latency", hostLink.latency)] }
        all += otherLinks.sorted { $0.key < $1.key }.map { ("otherLinks.\($0.key)", $0.value) }
        all.append(("launchOverhead", launchOverhead))
        return all
    }

    /// Problems with the spec itself: unsourced numbers, an fp32 peak missing, a link on a host
    /// device or none on an attached one. Empty when the spec is usable.
    public var problems: [String] {
        var out = quantities.compactMap { path, q in q.provenanceProblem.map { "\(kind).\(path): \($0)" } }
        if peak[DataType.fp32.rawValue] == nil { out.append("\(kind): no fp32 peak") }
        for key in peak.keys where DataType(rawValue: key) == nil { out.append("\(kind).peak.\(key): not a data type") }
        switch (placement, hostLink) {
        case (.attached, nil): out.append("\(kind): an attached device needs a host link")
        case (.host, .some): out.append("\(kind): a host device has no host link")
        default: break
        }
        return out
    }
}
