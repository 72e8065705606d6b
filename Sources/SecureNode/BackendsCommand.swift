import Accelerators
import ArgumentParser
import Foundation
import Inference
import Kernels

/// `securenode backends`: the compute backends, real and modeled.
struct BackendsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backends",
        abstract: "List the compute backends: the CPU (real) and the modeled accelerators.",
        subcommands: [BackendsListCommand.self, BackendsEstimateCommand.self, BackendsProfileCommand.self],
        defaultSubcommand: BackendsListCommand.self
    )
}

struct BackendsListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the backends, their capabilities and modeled peaks (the default).",
        discussion: """
            cpu is real: this host's cores run the C kernels (or the Swift reference kernels). The others are \
            modeled: they compute on this host, bit for bit as cpu, and report the time their target would take \
            from a roofline model; every number has a source (see --json, or docs in firmware-profiles/README.md).
            """
    )

    @Flag(help: "Print JSON (every device number with its basis and sources).")
    var json = false
    @Option(help: "Threads of the CPU backend.")
    var threads = min(2, ProcessInfo.processInfo.activeProcessorCount)

    func run() async throws {
        try await reportingFailures {
            guard threads >= 1 else { throw CLIFailure("--threads must be at least 1") }
            let listing = BackendListing(threads: threads)
            if json {
                print(try listing.json())
            } else {
                print(listing.text(), terminator: "")
            }
        }
    }
}

struct BackendsEstimateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "estimate",
        abstract: "Modeled prefill and decode tokens/s of model shapes on the modeled backends (used by bench/accelerators.sh).",
        discussion: """
            From hyperparameters alone (no weights): prefill of --prompt tokens in batches of --batch rows as the engine \
            runs them, and one decoding step at position --prompt. Shapes: smollm2-135m (the default model: Q4_1 layers, \
            tied Q8_0 embedding), llama-2-7b and llama-2-70b (every matrix in --format). Link policies for attached \
            devices: every-operation (this engine: activations cross the link around each operation) and \
            forward-pass-ends (the whole pass on the device).
            """
    )

    @Option(name: .customLong("shape"), help: "smollm2-135m, llama-2-7b or llama-2-70b (repeatable; default all).")
    var shapes: [String] = []
    @Option(name: .customLong("format"), help: "Weight format of the Llama-2 shapes: q4_1, q4_0, q8_0 or f16 (repeatable; default q4_1 and f16).")
    var formats: [String] = []
    @Option(name: .customLong("backend"), help: "Modeled backend kind (repeatable; default all).")
    var backends: [String] = []
    @Option(help: "Prompt tokens (prefill), and the position of the decoding step.")
    var prompt = 512
    @Option(help: "Rows per forward pass (the engine's batch capacity).")
    var batch = 64
    @Option(name: .customLong("fit-context"), help: "KV cache positions counted when checking that a model fits in device memory.")
    var fitContext = 4096
    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        try await reportingFailures {
            guard prompt >= 1, batch >= 1, fitContext >= 1 else { throw CLIFailure("--prompt, --batch and --fit-context must be at least 1") }
            let formatTypes: [String: BlockType] = ["q4_1": .q4_1, "q4_0": .q4_0, "q8_0": .q8_0, "f16": .f16]
            let chosenFormats = formats.isEmpty ? ["q4_1", "f16"] : formats
            for f in chosenFormats where formatTypes[f] == nil { throw CLIFailure("--format \(f) is not one of q4_1, q4_0, q8_0, f16") }
            var shapeList: [TransformerShape] = []
            for name in shapes.isEmpty ? ["smollm2-135m", "llama-2-7b", "llama-2-70b"] : shapes {
                switch name {
                case "smollm2-135m": shapeList.append(.smolLM2_135M)
                case "llama-2-7b": shapeList += chosenFormats.map { .llama2_7B(formatTypes[$0]!) }
                case "llama-2-70b": shapeList += chosenFormats.map { .llama2_70B(formatTypes[$0]!) }
                default: throw CLIFailure("--shape \(name) is not one of smollm2-135m, llama-2-7b, llama-2-70b")
                }
            }
            var devices: [DeviceSpec] = []
            for kind in backends.isEmpty ? DeviceCatalog.all.map(\.kind) : backends {
                guard let spec = DeviceCatalog.spec(kind: kind) else {
                    throw CLIFailure("--backend \(kind) is not a modeled backend (\(DeviceCatalog.all.map(\.kind).joined(separator: ", ")))")
                }
                devices.append(spec)
            }
            var rows: [[String: Any]] = []
            for device in devices {
                let policies: [LinkPolicy] = device.placement == .attached ? LinkPolicy.allCases : [.everyOperation]
                for shape in shapeList {
                    for policy in policies {
                        let e = SpeedEstimate.estimate(shape: shape, device: device, linkPolicy: policy, prompt: prompt, batch: batch, fitContext: fitContext)
                        rows.append(BackendListing.estimateJSON(e, shape: shape, device: device, policy: policy))
                    }
                }
            }
            if json {
                let object: [String: Any] = ["prompt": prompt, "batch": batch, "decodePosition": prompt, "fitContext": fitContext,
                                             "model": "roofline: time = max(F/peak, B/memoryBandwidth) + L/linkBandwidth + latency + launches x overhead",
                                             "estimates": rows]
                print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]),
                             as: UTF8.self))
                return
            }
            print("modeled (roofline upper bounds): prefill \(prompt) tokens in batches of \(batch), decode at position \(prompt)")
            for r in rows {
                let fits = (r["fits"] as? Bool ?? false) ? "" : "  (does not fit: \(BackendListing.bytes(r["residentBytes"] as? Int ?? 0)) + KV)"
                print("\(r["backend"]!)\t\(r["shape"]!) \(r["format"]!)\t\(r["linkPolicy"]!)\tprefill \(BackendListing.rate(r["prefillTokensPerSecond"] as! Double)) tok/s (\(r["prefillBound"]!))"
                      + "\tdecode \(BackendListing.rate(r["decodeTokensPerSecond"] as! Double)) tok/s (\(r["decodeBound"]!))\(fits)")
            }
        }
    }
}

struct BackendsProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile-backend",
        abstract: "Print a profile's backend object for a modeled device: its model (with sources) and reference values.",
        discussion: "Paste it as the `backend` of a profile (firmware-profiles/*-modeled.json); `securenode profile check` compares the two."
    )

    @Argument(help: "Modeled backend kind.")
    var kind: String

    func run() async throws {
        try await reportingFailures {
            let object = try ProfileBackendCheck.backendObject(kind: kind)
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]),
                         as: UTF8.self))
        }
    }
}
