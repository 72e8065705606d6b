import Foundation
import Testing
@testable import Generation

/// Hostile prompts against the SentencePiece tokenizer (llama.cpp's llama-spm vocabulary, 32,000
/// tokens with 256 byte-fallback tokens): each test is named after the attack it survives. No
/// timings: the heap work is counted and bounded, results are checked by decoding them back.
@Suite("Hostile prompts (SentencePiece)", .enabled(if: VocabularyVectors.run, VocabularyVectors.missing))
struct HostileSentencePieceTests {
    static let loaded = Result { try VocabularyVectors.tokenizer("llama-spm") }

    static func spm() throws -> (Tokenizer, SentencePiece) {
        let tokenizer = try loaded.get()
        guard case let .sentencePiece(spm) = tokenizer.model else { throw InferenceError(.invalidVocabulary, "not SentencePiece") }
        return (tokenizer, spm)
    }

    /// A deterministic generator, so that a failure can be reproduced.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// 200,000 letters and no space: refused under the default limit (one run between spaces,
    /// named by offset and length, never content); with the limit raised, the merge of the whole
    /// fragment is O(n log n) and decodes back to the text.
    @Test func survivesLongWordPromptSPM() throws {
        let (tokenizer, spm) = try Self.spm()
        let n = 200_000
        let text = String(repeating: "a", count: n)
        do {
            _ = try tokenizer.encode(text, addSpecial: false, maxWordBytes: Tokenizer.defaultMaxWordBytes)
            Issue.record("a 200,000-byte run was accepted")
        } catch {
            #expect(error.code == .wordTooLong)
            #expect("\(error)".contains("200000 UTF-8 bytes at byte offset 0"), "\(error)")
        }
        var operations = 0
        var ids: [Int] = []
        try spm.encode(ArraySlice(text.utf8), spacePrefix: true, limit: Tokenizer.WordLimit(maxBytes: n, of: "the text"),
                       into: &ids, operations: &operations)
        #expect(operations <= HostilePromptTests.mergeBound(n + 1), "\(operations) heap operations for \(n) letters")
        #expect(operations >= n)
        #expect(ids.count < n / 2)
        #expect(tokenizer.decode(ids) == text)
    }

    /// Words separated by spaces are each checked against the limit, not the whole text: 100,000
    /// short words pass under the default limit, and decode back.
    @Test func acceptsManyShortWordsSPM() throws {
        let (tokenizer, _) = try Self.spm()
        let text = Array(repeating: "word", count: 100_000).joined(separator: " ")
        let ids = try tokenizer.encode(text, addSpecial: false, maxWordBytes: Tokenizer.defaultMaxWordBytes)
        #expect(tokenizer.decode(ids) == text)
    }

    /// A flood of characters the vocabulary mostly lacks (random bytes 0x80-0xFF made into text:
    /// U+FFFD replacements of invalid UTF-8 and random 2-4 byte characters, plus private-use
    /// scalars): they fall back to `<0xXX>` byte tokens, the work stays O(n log n), and the text
    /// decodes back scalar for scalar.
    @Test func survivesByteFallbackFlood() throws {
        let (tokenizer, spm) = try Self.spm()
        var rng = SplitMix(state: 18)
        var bytes = (0 ..< 60_000).map { _ in UInt8.random(in: 0x80 ... 0xFF, using: &rng) } // invalid UTF-8
        for _ in 0 ..< 20_000 {
            let scalar = Unicode.Scalar(UInt32.random(in: 0xE000 ... 0xF8FF, using: &rng))!
            bytes += Array(String(scalar).utf8)
        }
        // A `▁` (U+2581) the random bytes happen to spell decodes as a space, as in llama.cpp.
        let text = String(String.UnicodeScalarView(String(decoding: bytes, as: UTF8.self).unicodeScalars.filter { $0 != "\u{2581}" }))
        var operations = 0
        var ids: [Int] = []
        let n = text.utf8.count
        try spm.encode(ArraySlice(text.utf8), spacePrefix: false, limit: Tokenizer.WordLimit(maxBytes: n, of: "the text"),
                       into: &ids, operations: &operations)
        #expect(operations <= HostilePromptTests.mergeBound(n), "\(operations) heap operations for \(n) bytes")
        #expect(tokenizer.decode(ids).unicodeScalars.elementsEqual(text.unicodeScalars))
        #expect(ids.contains { tokenizer.attributes[$0] == .byte })
        // Through the public API too (space prefix, limit).
        let all = try tokenizer.encode(text, addSpecial: true, maxWordBytes: n)
        #expect(all.first == tokenizer.bos)
        // As llama_detokenize: only the first token's space is removed, and here it is BOS's.
        #expect(tokenizer.decode(all).unicodeScalars.elementsEqual((" " + text).unicodeScalars))
        #expect(tokenizer.decode(Array(all.dropFirst())).unicodeScalars.elementsEqual(text.unicodeScalars))
    }

    /// Text canonically equivalent to a token but not byte-equal (`e` + U+0301 against `é`,
    /// U+0340 against U+0300) is not that token: Swift's `String` equality would say it is;
    /// llama.cpp compares bytes. Decoding gives the same scalars back.
    @Test func keepsCanonicallyEquivalentTextApart() throws {
        let (tokenizer, _) = try Self.spm()
        for text in ["cafe\u{301}", "\u{340}", "A\u{30A}ngstr\u{F6}m \u{212B}"] {
            let ids = try tokenizer.encode(text, addSpecial: false, maxWordBytes: 100)
            #expect(tokenizer.decode(ids).unicodeScalars.elementsEqual(text.unicodeScalars), "\(text.debugDescription)")
        }
        let precomposed = try #require(tokenizer.id(of: "\u{E9}"))
        let ids = try tokenizer.encode("e\u{301}", addSpecial: false, maxWordBytes: 100)
        #expect(!ids.contains(precomposed))
    }

    /// 20,000 `</s><s>` pairs: control tokens only with `parseSpecial` (linear partition); without
    /// it they are ordinary text and no control token appears.
    @Test func survivesManySpecialTokensPromptSPM() throws {
        let (tokenizer, _) = try Self.spm()
        let text = String(repeating: "</s><s>", count: 20_000)
        let parsed = try tokenizer.encode(text, addSpecial: false, parseSpecial: true, maxWordBytes: Tokenizer.defaultMaxWordBytes)
        #expect(parsed == Array(Array(repeating: [2, 1], count: 20_000).joined()))
        let plain = try tokenizer.encode(text, addSpecial: false, parseSpecial: false, maxWordBytes: text.utf8.count)
        #expect(!plain.contains { tokenizer.attributes[$0] == .control })
        #expect(tokenizer.decode(plain) == text)
    }

    /// BOS from `add_bos_token`, the space prefix again after a special token, and `decode`
    /// removing only the first prefixed space (`piece` keeps it: generated text).
    @Test func addsBOSAndSpacePrefixAsLlamaCpp() throws {
        let (tokenizer, _) = try Self.spm()
        let ids = try tokenizer.encode("Hello</s>world", addSpecial: true, parseSpecial: true, maxWordBytes: 100)
        let hello = try #require(tokenizer.id(of: "\u{2581}Hello")), world = try #require(tokenizer.id(of: "\u{2581}world"))
        #expect(ids == [1, hello, 2, world])
        #expect(tokenizer.decode(Array(ids.dropFirst())) == "Hello world")
        #expect(tokenizer.piece(hello) == Array(" Hello".utf8))
        #expect(tokenizer.addsBOS && !tokenizer.addsEOS)
    }
}
