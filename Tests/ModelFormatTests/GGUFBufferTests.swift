import GGUFTestSupport
import Foundation
import Testing
import ModelFormat

@Suite("GGUF buffer")
struct GGUFBufferTests {
    @Test func allocatesAlignedZeroedMemory() throws {
        for count in [0, 1, 4095, 4096, 100_000] {
            let buffer = try GGUFBuffer(count: count)
            #expect(buffer.count == count)
            buffer.withUnsafeBytes { bytes in
                #expect(Int(bitPattern: bytes.baseAddress) % GGUFBuffer.alignment == 0)
                #expect(bytes.allSatisfy { $0 == 0 })
            }
        }
    }

    @Test func refusesNegativeCount() {
        let error = #expect(throws: GGUFError.self) { try GGUFBuffer(count: -1) }
        #expect(error?.kind == .allocationFailed(count: -1))
    }

    @Test func readsFile() throws {
        let bytes = GGUFBuilder.sample().build()
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-\(UUID().uuidString).gguf")
        try Data(bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }

        let buffer = try GGUFBuffer.read(contentsOf: url.path)
        #expect(buffer.withUnsafeBytes { Array($0) } == bytes)
        #expect(try GGUFFile.parse(buffer).tensors.count == 3)
    }

    @Test func reportsMissingFileAndDirectory() {
        let missing = #expect(throws: GGUFError.self) { try GGUFBuffer.read(contentsOf: "/nonexistent/model.gguf") }
        #expect(missing?.field == "file")
        #expect(missing?.description.contains("/nonexistent/model.gguf") == true)
        let directory = #expect(throws: GGUFError.self) { try GGUFBuffer.read(contentsOf: NSTemporaryDirectory()) }
        #expect(directory?.kind == .io("not a regular file"))
    }
}
