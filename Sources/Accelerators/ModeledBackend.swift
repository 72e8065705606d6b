import Inference
import Kernels

/// A modeled accelerator: every operation is computed by a real ``CPUBackend`` on this host (so
/// the results are the CPU backend's, bit for bit), and is charged the time the target device
/// would take by the roofline model of its ``DeviceSpec``.
///
/// Placement: after `prepare`, a projection's weights are resident in device memory; for an
/// attached device (a DPU on PCIe) that costs a one-time upload over the host link (``setup``
/// time, not forward time). Activations cross the link as ``LinkPolicy`` says. For a host device
/// (Vera) nothing crosses a link. What each operation costs is in ``OperationAccounting``.
///
/// Not thread-safe, like every backend: one caller at a time (the engine that owns it).
public final class ModeledBackend: ComputeBackend {
    public let device: DeviceSpec
    /// The backend that computes (this host's CPU).
    public let host: CPUBackend
    public let linkPolicy: LinkPolicy
    public let roofline: Roofline
    let accounting: OperationAccounting

    /// Modeled time so far: forward passes, and the uploads apart.
    public private(set) var time = ModeledTime()
    /// Bytes of weights resident in device memory.
    public private(set) var residentBytes = 0
    private var resident: Set<UnsafeRawPointer> = []
    /// The first matrix of the first projection prepared (layer 0's query): a pass starts with it.
    private var passStart: UnsafeRawPointer?
    /// The first matrix of the last projection prepared (the output projection): its products are the logits.
    private var logitsMatrix: UnsafeRawPointer?

    public init(device: DeviceSpec, host: CPUBackend, linkPolicy: LinkPolicy = .everyOperation) {
        self.device = device
        self.host = host
        self.linkPolicy = linkPolicy
        roofline = Roofline(device: device)
        accounting = OperationAccounting(placement: device.placement, policy: linkPolicy)
    }

    public convenience init(device: DeviceSpec, threads: Int, linkPolicy: LinkPolicy = .everyOperation) {
        self.init(device: device, host: CPUBackend(threads: threads), linkPolicy: linkPolicy)
    }

    public var name: String { device.kind }

    /// The host backend's operations and weight formats (it computes them); tensors are on the
    /// device for an attached device; parallelism is the host's (its threads run the work, and the
    /// engine sizes its attention scratch by it).
    public var capabilities: BackendCapabilities {
        var c = host.capabilities
        c.tensorLocation = device.placement == .attached ? .device : .host
        return c
    }

    /// Whether the resident weights fit in the device's memory.
    public var fitsInMemory: Bool { Double(residentBytes) <= device.memoryCapacity.value }

    /// Forgets the modeled time (forward passes and uploads); weights stay resident.
    public func resetTime() { time = ModeledTime() }

    private func charge(_ work: Work?) {
        guard let work else { return }
        time.add(work, roofline.cost(work))
    }

    private func makeResident(_ matrix: WeightMatrix) {
        guard !resident.contains(matrix.base) else { return }
        resident.insert(matrix.base)
        let bytes = matrix.rows * matrix.rowBytes
        residentBytes += bytes
        charge(accounting.upload(bytes: bytes))
    }

    public func prepare(_ projection: Projection) {
        for m in projection.matrices { makeResident(m) }
        if passStart == nil { passStart = projection.matrices[0].base }
        logitsMatrix = projection.matrices[0].base
        host.prepare(projection)
    }

    public func project(_ p: Projection, input: UnsafePointer<Float>, count: Int, scratch: UnsafeMutableRawPointer) {
        host.project(p, input: input, count: count, scratch: scratch)
        charge(p, count: count)
    }

    /// The host's prompt-row products where it has them (so that outputs stay the CPU's), charged
    /// as `project`'s.
    public func projectPromptRows(_ p: Projection, input: UnsafePointer<Float>, first: Int, count: Int) -> Bool {
        guard host.projectPromptRows(p, input: input, first: first, count: count) else { return false }
        charge(p, count: count)
        return true
    }

    /// The modeled time of `count` rows through `p`.
    private func charge(_ p: Projection, count: Int) {
        let first = p.matrices[0]
        if first.base == passStart { charge(accounting.passInput(rows: count, width: p.columns)) }
        for m in p.matrices { makeResident(m) }
        let outputs = p.matrices.reduce(0) { $0 + $1.rows }
        charge(accounting.projection(columns: p.columns, outputs: outputs, weightBytes: p.weightBytes,
                                     activationRowBytes: p.activationFormat.rowBytes(p.columns) ?? 0,
                                     weightType: first.type, count: count))
        if first.base == logitsMatrix { charge(accounting.passOutput(floats: count * outputs)) }
    }

    public func attention(_ batch: AttentionBatch, stride: Int, headDim: Int, scale: Float, profile: SIMDProfile,
                          scratch: UnsafeMutablePointer<Float>, scratchPerMember: Int) {
        // Read the heads before the host runs (and empties) the batch.
        var positionSum = 0
        var longest: [UnsafePointer<UInt16>: Int] = [:]
        for i in 0 ..< batch.count {
            let (keys, positions) = batch.member(i)
            positionSum += positions
            longest[keys] = max(longest[keys] ?? 0, positions)
        }
        if batch.count > 0 {
            charge(accounting.attention(heads: batch.count, headDim: headDim, positionSum: positionSum,
                                        distinctPositions: longest.values.reduce(0, +)))
        }
        host.attention(batch, stride: stride, headDim: headDim, scale: scale, profile: profile,
                       scratch: scratch, scratchPerMember: scratchPerMember)
    }

    public func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, rows: Int, width: Int, profile: SIMDProfile) {
        charge(accounting.swiglu(rows: rows, width: width))
        host.swiglu(gate, up, rows: rows, width: width, profile: profile)
    }

    public func storeHalf(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<UInt16>, count: Int) {
        charge(accounting.kvStore(count: count))
        host.storeHalf(source, destination, count: count)
    }

    public func synchronize() { host.synchronize() }
}
