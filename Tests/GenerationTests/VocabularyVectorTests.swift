import Foundation
import ModelFormat
import Testing
@testable import Generation

/// llama.cpp's own tokenizer test vectors (`models/ggml-vocab-*.gguf` with `.gguf.inp` / `.gguf.out`,
/// as its `tests/test-tokenizer-0.cpp` uses them: add_special false, parse_special false), from the
/// pinned llama-cpp-python sdist that `scripts/setup.sh --test-tools` unpacks into
/// `models/cache/llama-vocab/` (or `$SECURENODE_VOCAB_DIR`). Skipped, visibly, without them
/// unless `SECURENODE_REQUIRE_TOOLS=1`.
enum VocabularyVectors {
    static let directory: String? = {
        if let path = ProcessInfo.processInfo.environment["SECURENODE_VOCAB_DIR"], !path.isEmpty { return path }
        let cache = ProcessInfo.processInfo.environment["SECURENODE_CACHE"].flatMap { $0.isEmpty ? nil : $0 }
            ?? TestPaths.packageRoot.appendingPathComponent("models/cache").path
        let path = cache + "/llama-vocab"
        return FileManager.default.fileExists(atPath: path + "/ggml-vocab-llama-spm.gguf") ? path : nil
    }()

    static var run: Bool { directory != nil || TestPaths.requireTools }
    static let missing: Comment = "llama.cpp vocab vectors not found: run scripts/setup.sh --test-tools or set SECURENODE_VOCAB_DIR"

    /// Vocabularies whose algorithm and pre-tokenizer are supported: every case must pass.
    static let supported = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "mpt", "refact", "starcoder", "command-r", "falcon", "deepseek-coder", "qwen35"]
    /// Vocabularies whose tokenizer model is refused, with the model named in the error.
    static let refusedModels = ["bert-bge": "bert", "gemma-4": "gemma4", "nomic-bert-moe": "t5"]

    static func tokenizer(_ name: String) throws -> Tokenizer {
        let dir = try #require(directory, missing)
        return try Tokenizer(file: GGUFFile.parse(GGUFBuffer.read(contentsOf: "\(dir)/ggml-vocab-\(name).gguf")))
    }

    /// (input, expected ids) pairs of a vocabulary's `.inp` / `.out` files.
    static func cases(_ name: String) throws -> [(String, [Int])] {
        let dir = try #require(directory, missing)
        let inp = try String(contentsOfFile: "\(dir)/ggml-vocab-\(name).gguf.inp", encoding: .utf8)
        let out = try String(contentsOfFile: "\(dir)/ggml-vocab-\(name).gguf.out", encoding: .utf8)
        var inputs = inp.components(separatedBy: "\n__ggml_vocab_test__\n")
        if inputs.last == "" { inputs.removeLast() }
        var lines = out.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        try #require(inputs.count == lines.count, "\(name): \(inputs.count) inputs, \(lines.count) outputs")
        return try zip(inputs, lines).map { input, line in
            (input, try line.split(separator: " ").map { try #require(Int($0), "\(name): bad id \($0)") })
        }
    }
}

@Suite(.enabled(if: VocabularyVectors.run, VocabularyVectors.missing))
struct VocabularyVectorTests {
    /// Every case of llama.cpp's vectors for each supported vocabulary, exactly.
    @Test(arguments: VocabularyVectors.supported)
    func matchesLlamaCppVectors(_ name: String) throws {
        let tokenizer = try VocabularyVectors.tokenizer(name)
        let cases = try VocabularyVectors.cases(name)
        var passed = 0
        for (input, expected) in cases {
            let ids = try tokenizer.encode(input, addSpecial: false, parseSpecial: false, maxWordBytes: Tokenizer.defaultMaxWordBytes)
            if ids == expected {
                passed += 1
            } else {
                Issue.record("\(name): \(input.debugDescription) gave \(ids), llama.cpp \(expected)")
            }
        }
        print("vocab \(name): \(passed)/\(cases.count) cases passed")
        #expect(passed == cases.count)
        #expect(cases.count >= 40)
    }

    /// Decoding the vectors' ids gives every input back for the SentencePiece vocabularies, as
    /// llama.cpp's detokenize (the prefixed space removed, byte tokens joined into characters).
    @Test(arguments: ["llama-spm", "phi-3"])
    func decodesSentencePieceVectors(_ name: String) throws {
        let tokenizer = try VocabularyVectors.tokenizer(name)
        var passed = 0
        let cases = try VocabularyVectors.cases(name)
        for (input, expected) in cases where tokenizer.decode(expected) == input { passed += 1 }
        print("vocab \(name): \(passed)/\(cases.count) decode back to the input")
        #expect(passed == cases.count)
    }

    /// A vocabulary of an unsupported tokenizer model is refused with one line naming the model.
    @Test(arguments: VocabularyVectors.refusedModels.sorted { $0.key < $1.key }.map { [$0.key, $0.value] })
    func refusesUnsupportedTokenizerModel(_ pair: [String]) throws {
        let dir = try #require(VocabularyVectors.directory, VocabularyVectors.missing)
        let path = "\(dir)/ggml-vocab-\(pair[0]).gguf"
        try #require(FileManager.default.fileExists(atPath: path), "\(path) is missing")
        let file = try GGUFFile.parse(GGUFBuffer.read(contentsOf: path))
        do {
            _ = try Tokenizer(file: file)
            Issue.record("\(pair[0]) was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("unsupported tokenizer model"), "\(text)")
            #expect(text.contains("\"\(pair[1])\""), "\(text)")
            #expect(!text.contains("\n"))
        }
    }
}
