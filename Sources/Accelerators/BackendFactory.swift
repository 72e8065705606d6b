import Attestation
import Inference

/// The compute backend a profile selects: the real CPU backend for `cpu`, or a ``ModeledBackend``
/// of the profile's device on this host's CPU. The composition root (serve, generate) builds its
/// `LlamaEngine` on it; ``ModeledDeviceStore/attesters(for:stateDirectory:)`` gives the matching
/// device evidence.
public enum BackendFactory {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func backend(for selection: BackendSelection, threads: Int,
                               linkPolicy: LinkPolicy = .everyOperation) throws(Failure) -> any ComputeBackend {
        guard selection.selectsDevice else { return CPUBackend(threads: threads) }
        guard let spec = DeviceCatalog.spec(kind: selection.kind) else {
            throw Failure(description: "backend \(selection.kind) has no device model (known: \(DeviceCatalog.all.map(\.kind).joined(separator: ", ")))")
        }
        return ModeledBackend(device: spec, threads: threads, linkPolicy: linkPolicy)
    }
}
