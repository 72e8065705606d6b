import Accelerators
import Kernels
import Testing

/// The roofline on cases whose answers are worked out by hand (in the comments), on a device with
/// round numbers and on the BlueField-3 model.
struct RooflineTests {
    /// peak int8 1 TOP/s, fp32 100 GFLOP/s; memory 100 GB/s; link 10 GB/s, 1 µs; launch 10 µs.
    static let round: DeviceSpec = {
        func q(_ v: Double, _ unit: String) -> Quantity { Quantity(v, unit, .assumed, reasoning: "test device") }
        return DeviceSpec(kind: "test", name: "test device", status: "test", placement: .attached,
                          cores: q(1, "cores"), threads: nil, clock: q(1e9, "Hz"), vectorUnits: "test",
                          peak: ["fp32": q(1e11, "op/s"), "int8": q(1e12, "op/s")],
                          memoryBandwidth: q(1e11, "B/s"), memoryCapacity: q(1e9, "B"), memoryType: "test",
                          hostLink: .init(name: "test link", bandwidth: q(1e10, "B/s"), latency: q(1e-6, "s")),
                          otherLinks: [:], launchOverhead: q(1e-5, "s"), firmware: "test")
    }()

    /// A 4096 x 4096 Q4_1 matrix times one vector, its activations crossing the link.
    static func matvec() -> Work {
        OperationAccounting(placement: .attached, policy: .everyOperation).projection(
            columns: 4096, outputs: 4096, weightBytes: 4096 * 2560, activationRowBytes: 4096 / 32 * 36, weightType: .q4_1, count: 1)
    }

    @Test func matvecIsBoundByMemory() {
        let w = Self.matvec()
        // F = 2 x 4096 x 4096 = 33,554,432 (int8); B = 10,485,760 weights + 4,608 Q8_1 input + 16,384 output
        // = 10,506,752; L = 16,384 in + 16,384 out = 32,768.
        #expect(w.flops == 33_554_432)
        #expect(w.memoryBytes == 10_506_752)
        #expect(w.linkBytes == 32_768)
        #expect(w.dataType == .int8)
        let c = Roofline(device: Self.round).cost(w)
        // compute 33.554432 µs; memory 105.06752 µs; link 3.2768 µs + 1 µs; launch 10 µs.
        #expect(abs(c.compute - 33.554432e-6) < 1e-15)
        #expect(abs(c.memory - 105.06752e-6) < 1e-15)
        #expect(abs(c.link - 4.2768e-6) < 1e-15)
        #expect(abs(c.total - 119.34432e-6) < 1e-14)
        #expect(c.bound == .memory)
    }

    @Test func gemmIsBoundByCompute() {
        // 1024^3 fp32 GEMM: F = 2 x 1024^3 = 2,147,483,648; B = 3 x 1024^2 x 4 = 12,582,912; no link.
        let w = Work(.matmul, flops: 2_147_483_648, dataType: .fp32, memoryBytes: 12_582_912)
        let c = Roofline(device: Self.round).cost(w)
        // compute 21.47483648 ms at 100 GFLOP/s; memory 125.82912 µs; + launch 10 µs.
        #expect(abs(c.compute - 21.47483648e-3) < 1e-12)
        #expect(abs(c.memory - 125.82912e-6) < 1e-15)
        #expect(c.link == 0)
        #expect(abs(c.total - 21.48483648e-3) < 1e-12)
        #expect(c.bound == .compute)
    }

    @Test func transferIsBoundByTheLink() {
        // 1 GB over 10 GB/s = 0.1 s, plus one 1 µs latency; no launch.
        let c = Roofline(device: Self.round).cost(Work(.transfer, linkBytes: 1e9, launches: 0))
        #expect(abs(c.total - 0.100001) < 1e-12)
        #expect(c.bound == .link)
    }

    @Test func latencyOnlyWhenSomethingCrossesTheLink() {
        let c = Roofline(device: Self.round).cost(Work(.swiglu, flops: 1e6, dataType: .fp32, memoryBytes: 1e3))
        #expect(c.link == 0)
        // 1e6 / 1e11 = 10 µs compute, 10 ns memory, 10 µs launch.
        #expect(abs(c.total - 20e-6) < 1e-15)
        #expect(Roofline(device: Self.round).cost(Work(.kvStore, linkBytes: 1e4, linkTransfers: 0, launches: 0)).link == 1e-6)
    }

    @Test func aTypeWithoutNativePathRunsAtTheFP32Peak() {
        let fp8 = Roofline(device: Self.round).cost(Work(.matmul, flops: 1e9, dataType: .fp8, launches: 0))
        #expect(fp8.compute == 1e9 / 1e11)
        #expect(Self.round.peak(for: .fp8).type == .fp32)
        #expect(Self.round.peak(for: .int8).rate == 1e12)
        #expect(Self.round.peak(for: .int8).type == .int8)
    }

    @Test func blueField3MatvecByHand() {
        // BlueField-3: int8 16 x 2.0 GHz x 64 = 2.048 TOP/s; DDR5 5600 MT/s x 16 B = 89.6 GB/s;
        // PCIe Gen5 x16 32 GT/s x 16 x 128/130 / 8 = 63.0154 GB/s, 1 µs; launch 2 µs.
        // compute 33,554,432 / 2.048e12 = 16.384 µs; memory 10,506,752 / 89.6e9 = 117.262857 µs;
        // link 32,768 / 63.0154e9 = 0.52 µs + 1 µs; total 117.262857 + 1.52 + 2 = 120.782857 µs.
        let c = Roofline(device: DeviceCatalog.blueField3).cost(Self.matvec())
        #expect(abs(c.compute - 16.384e-6) < 1e-12)
        #expect(abs(c.memory - 117.262857e-6) < 1e-12)
        #expect(abs(c.link - 1.52e-6) < 1e-12)
        #expect(abs(c.total - 120.782857e-6) < 1e-11)
        #expect(c.bound == .memory)
    }

    @Test func onTheHostNothingCrossesALink() {
        let w = OperationAccounting(placement: .host, policy: .everyOperation).projection(
            columns: 4096, outputs: 4096, weightBytes: 4096 * 2560, activationRowBytes: 4608, weightType: .q4_1, count: 1)
        #expect(w.linkBytes == 0)
        let c = Roofline(device: DeviceCatalog.vera).cost(w)
        // Vera: memory 10,506,752 / 1.2e12 = 8.75563 µs; int8 88 x 3.0816 GHz x 192 = 52.07 TOP/s.
        #expect(c.link == 0)
        #expect(abs(c.memory - 10_506_752 / 1.2e12) < 1e-15)
        #expect(c.bound == .memory)
    }

    @Test func forwardPassEndsChargesOnlyTheEnds() {
        let a = OperationAccounting(placement: .attached, policy: .forwardPassEnds)
        #expect(Self.matvec().linkBytes > 0)
        #expect(a.projection(columns: 64, outputs: 64, weightBytes: 2560, activationRowBytes: 72, weightType: .q4_1, count: 3).linkBytes == 0)
        #expect(a.passInput(rows: 3, width: 64)?.linkBytes == Double(3 * 64 * 4))
        #expect(a.passOutput(floats: 100)?.linkBytes == 400)
        #expect(OperationAccounting(placement: .attached, policy: .everyOperation).passInput(rows: 3, width: 64) == nil)
        #expect(OperationAccounting(placement: .host, policy: .forwardPassEnds).passOutput(floats: 1) == nil)
    }
}
