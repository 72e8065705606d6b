import Testing
@testable import Generation

/// The streamed text is the receipt's text (`result.text`) byte for byte, also when a token only
/// extends the previous grapheme (a combining mark, the second regional indicator of a flag, a
/// zero-width joiner and what it joins), which emission counted in Characters never sent. Tokens
/// are forced through the real SmolLM2 vocabulary, cut so that such scalars arrive on their own
/// (and split across tokens inside their UTF-8).
@Suite("Streaming equals the receipt text", .enabled(if: TestPaths.runModelTests, TestPaths.modelMissing))
struct StreamingTextTests {
    /// Runs `text` as forced tokens with no stop strings, with a stop string that never matches but
    /// keeps a tail held back, and with `stop` (which spans token boundaries): the stream equals the
    /// result byte for byte each time; with `stop`, the result is `text` cut before it.
    static func check(_ text: String, stop: String, holdBack: String) throws {
        let forced = try ForcedGeneration(RealVocabulary.tokenizer())
        let ids = forced.ids(spelling: text)
        #expect(forced.tokenizer.decode(ids) == text)
        for stops in [[], [holdBack], [stop], [holdBack, stop]] {
            let run = try forced.run(ids, stops: stops)
            #expect(Array(run.streamed.utf8) == Array(run.result.text.utf8), "stops \(stops.map(\.debugDescription))")
            #expect(!run.pieces.contains { $0.contains("\u{FFFD}") })
            if stops.contains(stop) {
                let cut = try #require(text.utf8.firstRange(of: stop.utf8))
                #expect(Array(run.result.text.utf8) == Array(text.utf8[..<cut.lowerBound]))
                #expect(run.result.stopReason == .stopString)
            } else {
                #expect(run.result.text == text)
                #expect(run.result.stopReason == .length)
            }
        }
        // Without stop strings, each complete scalar is sent at the step that completes it (no
        // grapheme waits for the end).
        let run = try forced.run(ids)
        var decoder = StreamingDecoder()
        for (id, piece) in zip(ids, run.pieces) {
            #expect(piece == decoder.append(forced.tokenizer.piece(id)))
        }
    }

    @Test func streamEqualsReceiptTextForCombiningMarks() throws {
        let text = "Cafe\u{301} ole\u{301}\u{308} o\u{301}! e\u{301}"
        // The combining acute alone: its two bytes come as separate byte tokens.
        let forced = try ForcedGeneration(RealVocabulary.tokenizer())
        #expect(forced.ids(spelling: "\u{301}").count == 2)
        try Self.check(text, stop: "\u{301}\u{308} o", holdBack: "e\u{301}\u{301}")
    }

    @Test func streamEqualsReceiptTextForRegionalIndicators() throws {
        // 🇫🇷🇩🇪: four regional indicators; a flag is one Character, the second indicator only
        // extends it. The stop cuts between the halves of 🇩🇪.
        try Self.check("Flags: 🇫🇷🇩🇪 and 🇯🇵.", stop: "\u{1F1EA} and", holdBack: "🇫🇷🇫")
    }

    @Test func streamEqualsReceiptTextForZWJEmoji() throws {
        // 👩‍💻 and 👨‍👩‍👧: ZWJ sequences, one Character each. The stop starts at a ZWJ.
        try Self.check("Dev: 👩‍💻, family: 👨‍👩‍👧 ok", stop: "\u{200D}👧 ok", holdBack: "👩‍💻👩")
    }
}
