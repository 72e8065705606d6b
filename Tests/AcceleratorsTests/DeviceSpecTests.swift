import Accelerators
import Attestation
import Foundation
import Testing

/// Every number of the device models has a source, and the derived ones are the arithmetic they say.
struct DeviceSpecTests {
    @Test func everyNumberIsSourced() {
        for spec in DeviceCatalog.all {
            #expect(spec.problems.isEmpty, "\(spec.problems)")
            #expect(spec.quantities.count >= 10)
        }
    }

    @Test func anUnsourcedNumberIsReported() {
        var spec = DeviceCatalog.blueField3
        spec.memoryBandwidth.sources = []
        #expect(spec.problems == ["bluefield-3.memoryBandwidth: a derived value needs its arithmetic and the sources it starts from"])
        spec = DeviceCatalog.vera
        spec.cores.sources = [Source("http://example.com", says: "88")]
        #expect(spec.problems == ["vera.cores: a reported value needs an https source and what it says"])
        spec = DeviceCatalog.blueField4
        spec.clock.reasoning = nil
        #expect(spec.problems.contains("bluefield-4.clock: a derived value needs its arithmetic and the sources it starts from"))
        spec = DeviceCatalog.blueField3
        spec.hostLink = nil
        #expect(spec.problems == ["bluefield-3: an attached device needs a host link"])
    }

    @Test func derivedNumbersAreTheirArithmetic() {
        let bf3 = DeviceCatalog.blueField3, bf4 = DeviceCatalog.blueField4, vera = DeviceCatalog.vera
        // BlueField-3: DDR5-5600 x 128 bits; PCIe Gen5 x16 after 128b/130b; 16 A78 cores at 2.0 GHz.
        #expect(bf3.memoryBandwidth.value == 89.6e9)
        #expect(abs(bf3.hostLink!.bandwidth.value - 63.015_384_615e9) < 1)
        #expect(bf3.peak(for: .fp32).rate == 512e9)
        #expect(bf3.peak(for: .fp16).rate == 1.024e12)
        #expect(bf3.peak(for: .int8).rate == 2.048e12)
        #expect(bf3.peak(for: .fp8).type == .fp32, "the A78 has no fp8 path")
        #expect(bf3.memoryCapacity.value == 34_359_738_368)
        // Grace's clock from its FP64 peak: 7.1e12 / (144 x 16) = 3.0816 GHz.
        #expect(abs(bf4.clock.value - 3.081_597_2e9) < 1e3)
        #expect(abs(bf4.peak(for: .int8).rate - 64 * 3.081_597_2e9 * 128) < 1e6)
        #expect(abs(bf4.hostLink!.bandwidth.value - 118e9) < 1)
        #expect(abs(vera.peak(for: .fp8).rate - 88 * 3.081_597_2e9 * 192) < 1e6)
        #expect(vera.peak(for: .fp4).type == .fp32)
        #expect(vera.memoryBandwidth.value == 1.2e12)
    }

    @Test func placements() {
        #expect(DeviceCatalog.blueField3.placement == .attached && DeviceCatalog.blueField3.hostLink?.name == "PCIe Gen5 x16")
        #expect(DeviceCatalog.blueField4.placement == .attached)
        #expect(DeviceCatalog.vera.placement == .host && DeviceCatalog.vera.hostLink == nil)
        #expect(DeviceCatalog.vera.otherLinks["nvlinkC2C"]?.value == 1.8e12)
    }

    @Test func whatIsNotPublicSaysSo() {
        // Numbers we could not source are assumptions, and say why.
        #expect(DeviceCatalog.blueField3.clock.basis == .assumed)
        #expect(DeviceCatalog.vera.clock.basis == .assumed)
        #expect(DeviceCatalog.blueField4.memoryBandwidth.basis == .assumed)
        for spec in DeviceCatalog.all {
            #expect(spec.launchOverhead.basis == .assumed)
            #expect(spec.hostLink.map { $0.latency.basis == .assumed } ?? true)
        }
        #expect(DeviceCatalog.blueField4.status.hasPrefix("announced"))
    }

    @Test func theCatalogIsWhatProfilesMayName() {
        #expect(DeviceCatalog.all.map(\.kind) == BackendSelection.deviceKinds)
        #expect(Set(DeviceCatalog.all.map(\.firmware)).count == DeviceCatalog.all.count)
    }

    @Test func specsRoundTripThroughJSON() throws {
        for spec in DeviceCatalog.all {
            let decoded = try JSONDecoder().decode(DeviceSpec.self, from: try JSONEncoder().encode(spec))
            #expect(decoded == spec)
        }
    }
}
