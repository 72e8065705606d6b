import Foundation
import ModelFormat
import Testing
@testable import Generation

/// Where the tests find the real model's vocabulary and llama.cpp's tokenizer fixture.
///
/// The model is `$SECURENODE_TEST_MODEL` or `models/cache/…` under the package root (only its
/// tokenizer metadata is used here); the fixture is `Tests/InferenceTests/Fixtures/tokenizer.json`
/// (made by `make_fixtures.py` there). Tests that need the model are skipped, visibly, when it is
/// absent, unless `SECURENODE_REQUIRE_TOOLS=1`: then they run and fail.
enum TestPaths {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent() // GenerationTests
        .deletingLastPathComponent() // Tests
        .deletingLastPathComponent()
    static let fixtures = packageRoot.appendingPathComponent("Tests/InferenceTests/Fixtures")
    static let modelRelativePath = "models/cache/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"

    static var requireTools: Bool { ProcessInfo.processInfo.environment["SECURENODE_REQUIRE_TOOLS"] == "1" }

    static let modelPath: String? = {
        if let path = ProcessInfo.processInfo.environment["SECURENODE_TEST_MODEL"], !path.isEmpty { return path }
        let path = packageRoot.appendingPathComponent(modelRelativePath).path
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()

    /// Run the real-vocabulary tests when the model is here, or when tools are required (to fail loudly).
    static var runModelTests: Bool { modelPath != nil || requireTools }
    static let modelMissing: Comment = "model not found: set SECURENODE_TEST_MODEL or put it at \(modelRelativePath)"
}

/// The real model's tokenizer (SmolLM2-135M: `smollm` pre-tokenizer, 49152 tokens), built once.
enum RealVocabulary {
    static let loaded: Result<Tokenizer, any Error>? = TestPaths.modelPath.map { path in
        Result { try Tokenizer(file: GGUFFile.parse(GGUFBuffer.read(contentsOf: path))) }
    }

    static func tokenizer() throws -> Tokenizer { try #require(loaded, "\(TestPaths.modelMissing)").get() }
}

/// Decodes a JSON file into `T`.
func loadJSON<T: Decodable>(_ url: URL, as: T.Type = T.self) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
}
