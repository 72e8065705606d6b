import Foundation
import Inference
import Kernels

/// What `securenode backends` prints: the real CPU backend of this host and the modeled ones.
public struct BackendListing {
    public struct Entry {
        public var name: String
        public var real: Bool
        public var capabilities: BackendCapabilities
        public var kernels: String
        public var device: DeviceSpec?
    }

    public let entries: [Entry]

    /// The CPU backend with `threads` threads, then every ``DeviceCatalog`` device modeled on it.
    public init(threads: Int) {
        let cpu = CPUBackend(threads: threads)
        let kernels = FastKernels.available ? "C kernels (AVX2/FMA/F16C) on a thread pool" : "Swift reference kernels"
        entries = [Entry(name: cpu.name, real: true, capabilities: cpu.capabilities, kernels: kernels, device: nil)]
            + DeviceCatalog.all.map { spec in
                let modeled = ModeledBackend(device: spec, host: cpu)
                return Entry(name: modeled.name, real: false, capabilities: modeled.capabilities,
                             kernels: "computed by cpu on this host (\(kernels)); time modeled by the roofline", device: spec)
            }
    }

    static func list<T>(_ items: some Sequence<T>, _ text: (T) -> String) -> String { items.map(text).sorted().joined(separator: ", ") }

    public func text() -> String {
        var out = ""
        for e in entries {
            out += "\(e.name) (\(e.real ? "real" : "modeled"))\(e.device.map { ": \($0.name)" } ?? ": this host's CPU")\n"
            if let d = e.device { out += "  status: \(d.status)\n" }
            out += "  compute: \(e.kernels), parallelism \(e.capabilities.parallelism)\n"
            out += "  operations: \(Self.list(e.capabilities.operations, \.rawValue)); weight types: \(Self.list(e.capabilities.weightTypes, \.description))\n"
            guard let d = e.device else {
                out += "  tensors: host\n"
                continue
            }
            if let link = d.hostLink {
                out += "  tensors: device, attached over \(link.name): \(Self.bytes(link.bandwidth.value))/s (\(link.bandwidth.basis.rawValue)), "
                    + "\(Self.seconds(link.latency.value)) per transfer (\(link.latency.basis.rawValue))\n"
            } else {
                out += "  tensors: host (the device is the host CPU: no link)\n"
            }
            out += "  cores: \(Int(d.cores.value)) (\(d.cores.basis.rawValue)) at \(String(format: "%.2f", d.clock.value / 1e9)) GHz (\(d.clock.basis.rawValue)); \(d.vectorUnits)\n"
            out += "  peak: " + DataType.allCases.compactMap { t in
                d.peak[t.rawValue].map { q in
                    let (value, prefix) = q.value >= 1e12 ? (q.value / 1e12, "T") : (q.value / 1e9, "G")
                    return "\(t.rawValue) \(Self.rate(value)) \(prefix)\(t == .int8 ? "OP" : "FLOP")/s (\(q.basis.rawValue))"
                }
            }.joined(separator: ", ") + "\n"
            out += "  memory: \(Self.bytes(d.memoryBandwidth.value))/s (\(d.memoryBandwidth.basis.rawValue)), "
                + "\(Self.binaryBytes(d.memoryCapacity.value)) \(d.memoryType) (\(d.memoryCapacity.basis.rawValue))\n"
            out += "  launch: \(Self.seconds(d.launchOverhead.value)) per operation (\(d.launchOverhead.basis.rawValue)); "
                + "\(Set(d.quantities.flatMap { $0.quantity.sources.map(\.url) }).count) sources (--json lists them)\n"
        }
        return out
    }

    public func jsonObject() throws -> [String: Any] {
        let encoder = JSONEncoder()
        return ["backends": try entries.map { e -> [String: Any] in
            var o: [String: Any] = [
                "name": e.name, "real": e.real, "compute": e.kernels,
                "capabilities": ["operations": e.capabilities.operations.map(\.rawValue).sorted(),
                                 "weightTypes": e.capabilities.weightTypes.map(\.description).sorted(),
                                 "tensorLocation": e.capabilities.tensorLocation.rawValue,
                                 "parallelism": e.capabilities.parallelism],
            ]
            if let d = e.device { o["device"] = try JSONSerialization.jsonObject(with: try encoder.encode(d)) }
            return o
        }]
    }

    public func json() throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: try jsonObject(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]),
               as: UTF8.self)
    }

    /// One row of `securenode backends estimate --json`.
    public static func estimateJSON(_ e: SpeedEstimate, shape: TransformerShape, device: DeviceSpec, policy: LinkPolicy) -> [String: Any] {
        func breakdown(_ t: ModeledTime) -> [String: Any] {
            ["seconds": t.seconds, "byBound": t.byBound, "byCategory": t.byCategory, "byTerm": t.byTerm,
             "operations": t.operations, "flops": t.flops, "memoryBytes": t.memoryBytes, "linkBytes": t.linkBytes]
        }
        return [
            "backend": device.kind, "placement": device.placement.rawValue,
            "shape": shape.name, "format": shape.weightType.description.lowercased(), "outputFormat": shape.outputType.description.lowercased(),
            "layers": shape.layers, "embedding": shape.embedding, "feedForward": shape.feedForward, "heads": shape.heads,
            "kvHeads": shape.kvHeads, "vocabulary": shape.vocabulary, "parameters": shape.parameters,
            "linkPolicy": policy == .everyOperation ? "every-operation" : "forward-pass-ends",
            "residentBytes": e.residentBytes, "totalWeightBytes": shape.totalWeightBytes, "kvCacheBytes": e.kvCacheBytes,
            "fitContext": e.fitContext, "memoryCapacityBytes": device.memoryCapacity.value, "fits": e.fits,
            "uploadSeconds": e.uploadSeconds,
            "prefillTokens": e.promptTokens, "prefillTokensPerSecond": e.prefillTokensPerSecond,
            "prefillBound": e.prefill.dominantBound.rawValue, "prefill": breakdown(e.prefill),
            "decodePosition": e.decodePosition, "decodeTokensPerSecond": e.decodeTokensPerSecond,
            "decodeBound": e.decode.dominantBound.rawValue, "decode": breakdown(e.decode),
        ]
    }

    /// "89.6 GB" style (decimal units).
    public static func bytes(_ value: Double) -> String {
        let units = ["B", "KB", "MB", "GB", "TB", "PB"]
        var v = value, i = 0
        while v >= 1000 && i < units.count - 1 { v /= 1000; i += 1 }
        return i == 0 ? "\(Int(v)) B" : String(format: v >= 100 ? "%.0f" : "%.1f", v) + " " + units[i]
    }
    public static func bytes(_ value: Int) -> String { bytes(Double(value)) }

    /// "32 GiB" style (binary units), for memory capacities.
    public static func binaryBytes(_ value: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = value, i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return (v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v)) + " " + units[i]
    }

    public static func seconds(_ value: Double) -> String {
        value >= 1 ? String(format: "%.2f s", value) : value >= 1e-3 ? String(format: "%.2f ms", value * 1e3) : String(format: "%.1f µs", value * 1e6)
    }

    /// Three significant figures or so.
    public static func rate(_ value: Double) -> String {
        value >= 100 ? String(format: "%.0f", value) : value >= 10 ? String(format: "%.1f", value) : String(format: "%.2f", value)
    }
}
