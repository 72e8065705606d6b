import Foundation
import ModelFormat
import Testing
import Generation
@testable import Inference

/// Where the tests find the real model and the llama.cpp reference outputs.
///
/// The model is `$SECURENODE_TEST_MODEL` or `models/cache/…` under the package root; the reference
/// outputs are in `../shared/reference/` beside the package root. Tests that need them are
/// skipped, visibly, when they are absent, unless `SECURENODE_REQUIRE_TOOLS=1`: then they run and
/// fail.
enum TestPaths {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent() // InferenceTests
        .deletingLastPathComponent() // Tests
        .deletingLastPathComponent()
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let reference = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/reference")
    static let modelRelativePath = "models/cache/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"

    static var requireTools: Bool { ProcessInfo.processInfo.environment["SECURENODE_REQUIRE_TOOLS"] == "1" }

    static let modelPath: String? = {
        if let path = ProcessInfo.processInfo.environment["SECURENODE_TEST_MODEL"], !path.isEmpty { return path }
        let path = packageRoot.appendingPathComponent(modelRelativePath).path
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()

    static func referenceFile(_ name: String) -> URL { reference.appendingPathComponent(name) }

    static var referenceAvailable: Bool {
        FileManager.default.fileExists(atPath: referenceFile("smollm2-135m-q4_1-greedy.json").path)
            && FileManager.default.fileExists(atPath: referenceFile("smollm2-135m-q4_1-logits-top10.json").path)
    }

    /// Run the real-model tests when the model is here, or when tools are required (to fail loudly).
    static var runModelTests: Bool { modelPath != nil || requireTools }
    static var runReferenceTests: Bool { (modelPath != nil && referenceAvailable) || requireTools }
    static let modelMissing: Comment = "model not found: set SECURENODE_TEST_MODEL or put it at \(modelRelativePath)"
    static let referenceMissing: Comment = "model or ../shared/reference/ fixtures not found (SECURENODE_REQUIRE_TOOLS=1 makes this fail)"
}

/// The real model, parsed and mapped once for all tests.
enum RealModel {
    static let loaded: Result<(GGUFFile, LlamaModel), any Error>? = TestPaths.modelPath.map { path in
        Result {
            let file = try GGUFFile.parse(GGUFBuffer.read(contentsOf: path))
            return (file, try LlamaModel(file: file))
        }
    }

    static func file() throws -> GGUFFile { try #require(loaded, "\(TestPaths.modelMissing)").get().0 }
    static func model() throws -> LlamaModel { try #require(loaded, "\(TestPaths.modelMissing)").get().1 }
    static func tokenizer() throws -> Tokenizer { try Tokenizer(file: file()) }
}

/// Decodes a JSON file into `T`.
func loadJSON<T: Decodable>(_ url: URL, as: T.Type = T.self) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
}

/// `../shared/reference/smollm2-135m-q4_1-greedy.json`.
struct GreedyReference: Decodable {
    struct Result: Decodable {
        let prompt: String
        let prompt_ids: [Int]
        let output_ids: [Int]
        let output_text: String
    }
    let n_gen: Int
    let eos_id: Int
    let eot_id: Int
    let results: [Result]
}

/// `../shared/reference/smollm2-135m-q4_1-logits-top10.json`.
struct LogitsReference: Decodable {
    struct Entry: Decodable {
        let id: Int
        let logit: Float
        let logprob: Float
        let piece: String
    }
    struct Result: Decodable {
        let prompt: String
        let prompt_ids: [Int]
        let top10: [Entry]
    }
    let results: [Result]
}
