import Foundation
import Testing
@testable import Generation

/// `Fixtures/tokenizer.json`, made by `Fixtures/make_fixtures.py` with llama.cpp's tokenizer.
struct TokenizerFixture: Decodable {
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let ids_special: [Int]
    }
    let cases: [Case]
}

/// Our tokenizer against llama.cpp's on a corpus of code, whitespace runs, numbers, non-Latin
/// scripts, emoji and control tokens written as text.
@Suite("Tokenizer against llama.cpp", .enabled(if: TestPaths.runModelTests, TestPaths.modelMissing))
struct TokenizerReferenceTests {
    static func fixture() throws -> TokenizerFixture {
        try loadJSON(TestPaths.fixtures.appendingPathComponent("tokenizer.json"))
    }

    @Test func idsMatchLlamaCppWithoutSpecialParsing() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let fixture = try Self.fixture()
        #expect(fixture.cases.count >= 20)
        for c in fixture.cases {
            #expect(try tokenizer.encode(c.text, addSpecial: true, parseSpecial: false, maxWordBytes: Tokenizer.defaultMaxWordBytes) == c.ids, "text \(c.text.debugDescription)")
        }
    }

    @Test func idsMatchLlamaCppWithSpecialParsing() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        for c in try Self.fixture().cases {
            #expect(try tokenizer.encode(c.text, addSpecial: true, parseSpecial: true, maxWordBytes: Tokenizer.defaultMaxWordBytes) == c.ids_special, "text \(c.text.debugDescription)")
        }
    }

    /// Decoding the ids gives the text back, byte for byte (with special tokens printed).
    @Test func decodingRoundTrips() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        for c in try Self.fixture().cases {
            #expect(tokenizer.decode(c.ids, special: true) == c.text)
            #expect(tokenizer.decode(c.ids_special, special: true) == c.text)
        }
    }

    /// Streaming the pieces one token at a time never emits half a character, and adds up to the text.
    @Test func streamingNeverSplitsCharacters() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        for c in try Self.fixture().cases {
            var decoder = StreamingDecoder()
            var text = ""
            for id in c.ids {
                let piece = decoder.append(tokenizer.piece(id))
                #expect(!piece.contains("\u{FFFD}"), "split character in \(c.text.debugDescription)")
                text += piece
            }
            text += decoder.finish()
            #expect(text == c.text)
        }
    }
}
