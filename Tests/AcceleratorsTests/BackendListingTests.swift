import Accelerators
import Foundation
import Testing

/// What `securenode backends` prints.
struct BackendListingTests {
    @Test func listsTheRealCPUThenTheModeledDevices() throws {
        let listing = BackendListing(threads: 2)
        #expect(listing.entries.map(\.name) == ["cpu", "bluefield-3", "bluefield-4", "vera"])
        #expect(listing.entries.map(\.real) == [true, false, false, false])
        let text = listing.text()
        #expect(text.hasPrefix("cpu (real): this host's CPU\n"))
        #expect(text.contains("bluefield-3 (modeled): NVIDIA BlueField-3 DPU"))
        #expect(text.contains("vera (modeled): NVIDIA Vera CPU"))
        #expect(text.contains("operations: attention, kvStore, matmul, swiglu"))
        // Peaks and memory as the catalog has them.
        #expect(text.contains("peak: fp32 512 GFLOP/s (derived), fp16 1.02 TFLOP/s (derived), int8 2.05 TOP/s (derived)"))
        #expect(text.contains("memory: 89.6 GB/s (derived), 32 GiB DDR5-5600"))
        #expect(text.contains("memory: 1.2 TB/s (reported), 1.5 TiB LPDDR5X"))
        #expect(text.contains("tensors: device, attached over PCIe Gen5 x16: 63.0 GB/s (derived), 1.0 µs per transfer (assumed)"))
        #expect(text.contains("tensors: host (the device is the host CPU: no link)"))
        #expect(text.contains("fp8 52.1 TFLOP/s (derived)"))
    }

    @Test func jsonCarriesEverySource() throws {
        let object = try BackendListing(threads: 1).jsonObject()
        let backends = try #require(object["backends"] as? [[String: Any]])
        #expect(backends.count == 4)
        let cpu = backends[0]
        #expect(cpu["name"] as? String == "cpu" && cpu["real"] as? Bool == true && cpu["device"] == nil)
        let capabilities = try #require(cpu["capabilities"] as? [String: Any])
        #expect(capabilities["tensorLocation"] as? String == "host")
        #expect((capabilities["weightTypes"] as? [String])?.contains("Q4_1") == true)
        for entry in backends.dropFirst() {
            let device = try #require(entry["device"] as? [String: Any])
            let bandwidth = try #require(device["memoryBandwidth"] as? [String: Any])
            let sources = try #require(bandwidth["sources"] as? [[String: Any]])
            #expect(!sources.isEmpty && sources.allSatisfy { ($0["url"] as? String)?.hasPrefix("https://") == true })
            #expect((entry["capabilities"] as? [String: Any])?["tensorLocation"] as? String == (device["placement"] as? String == "host" ? "host" : "device"))
        }
        // And it is valid JSON text.
        #expect(try JSONSerialization.jsonObject(with: Data(try BackendListing(threads: 1).json().utf8)) is [String: Any])
    }
}
