import Accelerators
import Attestation
import Inference
import Kernels
import Testing

/// A modeled backend computes on the CPU backend (outputs bit for bit equal) and charges exactly
/// what the forward-pass model predicts from the hyperparameters alone.
struct ModeledBackendTests {
    /// Logits of `prompt` (every token's) then of `decode` tokens one at a time, on `backend`.
    static func run(_ model: LlamaModel, _ backend: any ComputeBackend, prompt: [Int], decode: [Int], logits: LogitsRequest) throws -> [Float] {
        let engine = LlamaEngine(model: model, backend: backend, contextCapacity: prompt.count + decode.count + 1)
        let session = try engine.makeSession(contextLength: prompt.count + decode.count + 1)
        var out = try session.evaluate(prompt, logits: logits)
        for t in decode { out += try session.evaluate([t]) }
        return out
    }

    static func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

    @Test(arguments: DeviceCatalog.all.map(\.kind))
    func syntheticModelOutputsEqualCPUBitForBit(kind: String) throws {
        let model = try SyntheticModel.model()
        let prompt = (0 ..< 20).map { ($0 * 7 + 3) % SyntheticModel.tokens.count }
        let cpu = try Self.run(model, CPUBackend(threads: 2), prompt: prompt, decode: [4, 5, 3], logits: .all)
        let modeled = ModeledBackend(device: try #require(DeviceCatalog.spec(kind: kind)), threads: 2)
        let out = try Self.run(model, modeled, prompt: prompt, decode: [4, 5, 3], logits: .all)
        #expect(out.count == (20 + 3) * SyntheticModel.tokens.count)
        #expect(out.contains { $0 != 0 && $0.isFinite }, "the synthetic model computes something")
        #expect(Self.bits(out) == Self.bits(cpu))
        #expect(modeled.time.seconds > 0)
    }

    @Test(.enabled(if: TestPaths.runModelTests, TestPaths.modelMissing))
    func realModelOutputsEqualCPUBitForBit() throws {
        let model = try RealModel.model()
        // 70 tokens: one full batch of 64 and a second pass, then three decoding steps.
        let prompt = (0 ..< 70).map { (1 + $0 * 7919) % model.config.vocabularySize }
        let cpu = try Self.run(model, CPUBackend(threads: 2), prompt: prompt, decode: [42, 1000, 7], logits: .last)
        let modeled = ModeledBackend(device: DeviceCatalog.blueField3, threads: 2)
        let out = try Self.run(model, modeled, prompt: prompt, decode: [42, 1000, 7], logits: .last)
        #expect(out.count == 4 * model.config.vocabularySize)
        #expect(Self.bits(out) == Self.bits(cpu))
    }

    /// The backend's charges from the real calls against the forward-pass model from the shape.
    func expectModelAgrees(_ model: LlamaModel, shape: TransformerShape, prompt: Int, decode: Int, batch: Int) throws {
        for device in DeviceCatalog.all {
            for policy in LinkPolicy.allCases {
                let backend = ModeledBackend(device: device, threads: 2, linkPolicy: policy)
                let engine = LlamaEngine(model: model, backend: backend, contextCapacity: prompt + decode, batchCapacity: batch)
                let session = try engine.makeSession(contextLength: prompt + decode)
                let tokens = (0 ..< prompt + decode).map { ($0 * 5 + 1) % model.config.vocabularySize }
                _ = try session.evaluate(Array(tokens[..<prompt]))
                for t in tokens[prompt...] { _ = try session.evaluate([t]) }

                let m = ForwardPassModel(shape: shape, device: device, linkPolicy: policy)
                let passes = ForwardPassModel.promptPasses(count: prompt, batch: batch)
                    + (prompt ..< prompt + decode).map { ForwardPassModel.decodePass(position: $0) }
                let expected = m.time(passes)
                let got = backend.time
                let label = "\(device.kind) \(policy)"
                #expect(abs(got.seconds - expected.seconds) <= 1e-9 * expected.seconds, "\(label): \(got.seconds) vs \(expected.seconds)")
                #expect(got.operations == expected.operations, "\(label)")
                #expect(got.flops == expected.flops, "\(label)")
                #expect(got.memoryBytes == expected.memoryBytes, "\(label)")
                #expect(got.linkBytes == expected.linkBytes, "\(label)")
                for c in CostCategory.allCases {
                    #expect(abs(got.seconds(c) - expected.seconds(c)) <= 1e-9 * expected.seconds, "\(label) \(c)")
                }
                #expect(backend.residentBytes == shape.residentWeightBytes, "\(label)")
                #expect(abs(got.setupSeconds - m.uploadTime) <= 1e-12, "\(label)")
                if device.placement == .host {
                    #expect(got.linkBytes == 0 && got.setupSeconds == 0, "\(label): nothing crosses a link on the host")
                } else {
                    #expect(got.linkBytes > 0 && got.setupSeconds > 0, "\(label)")
                }
            }
        }
    }

    @Test func modeledTimeEqualsTheForwardPassModelOnTheSyntheticModel() throws {
        // 20 prompt tokens in passes of 8 rows (8 + 8 + 4), then 3 decoding steps.
        try expectModelAgrees(try SyntheticModel.model(), shape: SyntheticModel.shape, prompt: 20, decode: 3, batch: 8)
    }

    @Test(.enabled(if: TestPaths.runModelTests, TestPaths.modelMissing))
    func modeledTimeEqualsTheForwardPassModelOnTheRealModel() throws {
        let model = try RealModel.model()
        let shape = try TransformerShapeFixture.shape(of: model)
        #expect(shape.layers == TransformerShape.smolLM2_135M.layers && shape.embedding == TransformerShape.smolLM2_135M.embedding
                && shape.feedForward == TransformerShape.smolLM2_135M.feedForward && shape.heads == TransformerShape.smolLM2_135M.heads
                && shape.kvHeads == TransformerShape.smolLM2_135M.kvHeads && shape.vocabulary == TransformerShape.smolLM2_135M.vocabulary
                && shape.weightType == TransformerShape.smolLM2_135M.weightType && shape.outputType == TransformerShape.smolLM2_135M.outputType,
                "the benchmark's SmolLM2 shape is the default model's")
        try expectModelAgrees(model, shape: shape, prompt: 70, decode: 2, batch: 64)
    }

    @Test func uploadIsChargedOnceAndApartFromForwardPasses() throws {
        let model = try SyntheticModel.model()
        let backend = ModeledBackend(device: DeviceCatalog.blueField3, threads: 1)
        let engine = LlamaEngine(model: model, backend: backend, contextCapacity: 8)
        let setup = backend.time.setupSeconds
        // Weights over PCIe Gen5 x16: bytes / 63.0 GB/s + 1 µs per matrix (7 per layer + the output projection).
        let link = try #require(DeviceCatalog.blueField3.hostLink)
        let matrices = Double(7 * SyntheticModel.layers + 1)
        #expect(abs(setup - (Double(backend.residentBytes) / link.bandwidth.value + matrices * link.latency.value)) < 1e-15)
        #expect(backend.time.seconds == 0)
        _ = try engine.makeSession(contextLength: 8).evaluate([1, 2, 3])
        #expect(backend.time.setupSeconds == setup, "a forward pass uploads nothing more")
        #expect(backend.time.seconds > 0)
        #expect(backend.fitsInMemory)
    }

    @Test func breakdownAddsUp() throws {
        let model = try SyntheticModel.model()
        let backend = ModeledBackend(device: DeviceCatalog.blueField3, threads: 1)
        _ = try LlamaEngine(model: model, backend: backend, contextCapacity: 16).makeSession(contextLength: 16).evaluate(Array(repeating: 3, count: 10))
        let t = backend.time
        let byBound = Bound.allCases.reduce(0) { $0 + t.seconds(boundBy: $1) }
        let byCategory = CostCategory.allCases.reduce(0) { $0 + t.seconds($1) }
        #expect(abs(byBound - t.seconds) < 1e-15)
        #expect(abs(byCategory - t.seconds) < 1e-15)
        // A tiny model on a DPU: submitting operations (2 µs each) costs more than moving its weights.
        #expect(t.dominantBound == .overhead)
        #expect(t.seconds(.upload) == 0, "uploads are not forward time")
    }

    @Test func capabilitiesSayWhereTensorsLive() {
        let cpu = CPUBackend(threads: 2)
        let dpu = ModeledBackend(device: DeviceCatalog.blueField3, host: cpu)
        let vera = ModeledBackend(device: DeviceCatalog.vera, host: cpu)
        #expect(dpu.capabilities.tensorLocation == .device)
        #expect(vera.capabilities.tensorLocation == .host)
        #expect(dpu.capabilities.parallelism == cpu.capabilities.parallelism)
        #expect(dpu.capabilities.operations == cpu.capabilities.operations)
        #expect(dpu.name == "bluefield-3" && vera.name == "vera")
    }

    @Test func seventyBillionFitsOnlyWhereThereIsMemoryForIt() {
        let b70 = TransformerShape.llama2_70B(.q4_1), b7 = TransformerShape.llama2_7B(.q4_1)
        // 70B at Q4_1 (5 bits per weight): about 43 GB of weights; BlueField-3 has 32 GiB, BlueField-4 128 GiB.
        #expect(b70.residentWeightBytes > 40_000_000_000 && b70.residentWeightBytes < 46_000_000_000)
        #expect(!SpeedEstimate.estimate(shape: b70, device: DeviceCatalog.blueField3).fits)
        #expect(SpeedEstimate.estimate(shape: b70, device: DeviceCatalog.blueField4).fits)
        #expect(SpeedEstimate.estimate(shape: b70, device: DeviceCatalog.vera).fits)
        #expect(SpeedEstimate.estimate(shape: b7, device: DeviceCatalog.blueField3).fits)
        // 70B at F16: about 138 GB, more than BlueField-4's 128 GiB.
        #expect(!SpeedEstimate.estimate(shape: .llama2_70B(.f16), device: DeviceCatalog.blueField4).fits)
    }

    @Test func decodeOfA7BModelIsBoundByMemoryEverywhere() {
        for device in DeviceCatalog.all {
            let e = SpeedEstimate.estimate(shape: .llama2_7B(.q4_1), device: device)
            #expect(e.decode.dominantBound == .memory, "\(device.kind)")
            // Decode reads every resident weight once: the time is at least their bytes over the bandwidth.
            #expect(e.decode.seconds >= Double(e.residentBytes) / device.memoryBandwidth.value)
            #expect(e.prefillTokensPerSecond > e.decodeTokensPerSecond, "\(device.kind): batching amortizes the weights")
        }
    }
}

struct BackendFactoryTests {
    @Test func theProfileChoosesTheBackend() throws {
        #expect(try BackendFactory.backend(for: "cpu", threads: 1) is CPUBackend)
        for spec in DeviceCatalog.all {
            let backend = try BackendFactory.backend(for: BackendSelection(kind: spec.kind), threads: 1)
            #expect((backend as? ModeledBackend)?.device == spec)
        }
        #expect(throws: BackendFactory.Failure.self) { try BackendFactory.backend(for: "tpu", threads: 1) }
    }
}
