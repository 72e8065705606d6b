import Foundation
import Testing
@testable import Generation

/// Prompts built to make tokenization slow or unbounded: each test is named after the attack it
/// survives. No timings: the work is counted (heap operations) and bounded.
@Suite("Hostile prompts", .enabled(if: TestPaths.runModelTests, TestPaths.modelMissing))
struct HostilePromptTests {
    /// The heap work BPE may do on a word of n scalars: a push per initial pair and two per merge,
    /// a pop per push, each with at most log2(n) + 1 sift steps.
    static func mergeBound(_ n: Int) -> Int { 6 * n * (Int(log2(Double(n))) + 2) }

    /// One 200,000-letter word: the merge is O(n log n) (the quadratic one took minutes and froze
    /// the node), and gives the reference's result: the same `aaaa` tokens the quadratic merge
    /// makes of 1,000 letters, 200 times over.
    @Test func survivesLongWordPrompt() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let n = 200_000
        var operations = 0
        let symbols = tokenizer.merge(String(repeating: "a", count: n), operations: &operations)
        #expect(operations <= Self.mergeBound(n), "\(operations) heap operations for \(n) letters")
        #expect(operations >= n) // it was counted
        let period = ReferenceBPE.merge(String(repeating: "a", count: 1000), ranks: tokenizer.ranks)
        #expect(period == Array(repeating: "aaaa", count: 250))
        #expect(symbols == Array(Array(repeating: period, count: n / 1000).joined()))

        let ids = try tokenizer.encode(String(repeating: "a", count: n), addSpecial: false, maxWordBytes: n)
        let aaaa = try #require(tokenizer.id(of: "aaaa"))
        #expect(ids == Array(repeating: aaaa, count: n / 4))
    }

    /// A run of 200,000 spaces is one word too: bounded the same way, and it decodes back.
    @Test func survivesLongWhitespaceWord() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let n = 200_000
        var operations = 0
        let symbols = tokenizer.merge(ByteLevel.encode(String(repeating: " ", count: n).utf8), operations: &operations)
        #expect(operations <= Self.mergeBound(n), "\(operations) heap operations for \(n) spaces")
        #expect(symbols.joined() == ByteLevel.encode(String(repeating: " ", count: n).utf8))
        #expect(symbols.count < n / 16)
    }

    /// The error a refused encoding throws, or nil when it was accepted.
    static func refusal(_ encode: () throws(InferenceError) -> [Int]) -> InferenceError? {
        do {
            _ = try encode()
            return nil
        } catch {
            return error
        }
    }

    /// A word over the limit is refused, saying where it is, how long it is and what the limit is
    /// (never its content); a word exactly at the limit passes.
    @Test func refusesWordLongerThanTheLimit() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let long = "Hello, " + String(repeating: "b", count: 9000) + " world"
        let error = try #require(Self.refusal { () throws(InferenceError) in
            try tokenizer.encode(long, maxWordBytes: Tokenizer.defaultMaxWordBytes)
        })
        #expect(error.code == .wordTooLong)
        #expect(error.reason == "the text has a word of 9001 UTF-8 bytes at byte offset 6, longer than the limit of 8192 bytes")
        let atLimit = "Hello," + " " + String(repeating: "b", count: 8191) + " world"
        #expect(Self.refusal { () throws(InferenceError) in try tokenizer.encode(atLimit, maxWordBytes: 8192) } == nil)
        #expect(Self.refusal { () throws(InferenceError) in try tokenizer.encode(atLimit, maxWordBytes: 8191) }?.code == .wordTooLong)

        // Offsets count the bytes of special tokens cut out before the word, parsed or not.
        let afterSpecial = "<|im_start|>" + String(repeating: "é", count: 5000)
        for parseSpecial in [true, false] {
            let error = Self.refusal { () throws(InferenceError) in
                try tokenizer.encode(afterSpecial, addSpecial: false, parseSpecial: parseSpecial, maxWordBytes: 8192)
            }
            #expect(error?.reason == "the text has a word of 10000 UTF-8 bytes at byte offset 12, longer than the limit of 8192 bytes")
        }
    }

    /// In a chat, the offset is in the rendered conversation (`renderText`), special tokens included.
    @Test func refusesLongWordInChatMessage() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let template = ChatTemplate(family: .chatML)
        let messages = [ChatMessage(role: "system", content: "Be brief."),
                        ChatMessage(role: "user", content: "hi " + String(repeating: "c", count: 9000))]
        let error = try #require(Self.refusal { () throws(InferenceError) in
            try tokenizer.encode(template.render(messages), maxWordBytes: 8192)
        })
        let rendered = Array(try template.renderText(messages).utf8)
        let offset = rendered.count - 9001 - "<|im_end|>\n<|im_start|>assistant\n".utf8.count
        #expect(rendered[offset] == UInt8(ascii: " ") && rendered[offset + 1] == UInt8(ascii: "c") && rendered[offset - 1] == UInt8(ascii: "i"))
        #expect(error.code == .wordTooLong)
        #expect(error.reason == "the chat has a word of 9001 UTF-8 bytes at byte offset \(offset), longer than the limit of 8192 bytes")
        // The same conversation with a short word passes and equals the unbounded encoding.
        let short = [messages[0], ChatMessage(role: "user", content: "hi there")]
        #expect(try tokenizer.encode(template.render(short), maxWordBytes: 8192) == tokenizer.encode(template.render(short), maxWordBytes: .max))
    }

    /// 50,000 control tokens written as text (and 50,000 near misses): the special-token partition
    /// is linear (bytes compared <= text length x the specials' total length), and with
    /// parse_special the text becomes exactly those tokens.
    @Test func survivesManySpecialTokensPrompt() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let imStart = try #require(tokenizer.id(of: "<|im_start|>"))
        let flood = String(repeating: "<|im_start|>", count: 50_000)
        let nearMiss = String(repeating: "<|im_star", count: 50_000)
        let specialBytes = tokenizer.specials.map(\.text.count).reduce(0, +)
        for text in [flood, nearMiss, flood + nearMiss + flood] {
            for parseSpecial in [true, false] {
                var comparisons = 0
                _ = tokenizer.partition(Array(text.utf8), parseSpecial: parseSpecial, comparisons: &comparisons)
                #expect(comparisons <= text.utf8.count * specialBytes)
            }
        }
        #expect(try tokenizer.encode(flood, addSpecial: false, parseSpecial: true, maxWordBytes: 8192) == Array(repeating: imStart, count: 50_000))
        let asText = try tokenizer.encode(flood, addSpecial: false, parseSpecial: false, maxWordBytes: 8192)
        #expect(!asText.contains(imStart))
        #expect(tokenizer.decode(asText, special: true) == flood)
        let mixed = try tokenizer.encode(flood + nearMiss, addSpecial: false, parseSpecial: true, maxWordBytes: 8192)
        #expect(tokenizer.decode(mixed, special: true) == flood + nearMiss)
    }

    /// A prompt that is one deep whitespace run is one word: refused past the limit (at offset 0),
    /// and with a large limit it tokenizes and decodes back.
    @Test func survivesDeepWhitespaceRun() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let run = String(repeating: " ", count: 100_000) + "x"
        let error = Self.refusal { () throws(InferenceError) in try tokenizer.encode(run, maxWordBytes: 8192) }
        #expect(error?.reason == "the text has a word of 99999 UTF-8 bytes at byte offset 0, longer than the limit of 8192 bytes")
        for text in [run, String(repeating: "\n", count: 100_000), String(repeating: "\r\n", count: 50_000) + "x",
                     String(repeating: " \t", count: 50_000) + "x"] {
            let ids = try tokenizer.encode(text, addSpecial: false, maxWordBytes: 1 << 20)
            #expect(tokenizer.decode(ids) == text)
        }
    }

    /// Every pre-tokenizer on 300,000-scalar texts shaped against its scanners (whitespace runs
    /// before letters, apostrophe floods, digit runs, punctuation runs, mixed scripts): the words
    /// add up to the text (each scanner moves forward over each scalar a bounded number of times).
    @Test func survivesPreTokenizerWorstCases() {
        let shapes = [
            String(repeating: " ", count: 299_999) + "a", String(repeating: " \t\n", count: 100_000),
            String(repeating: "'", count: 300_000), String(repeating: "'s", count: 150_000), String(repeating: "'l", count: 150_000),
            String(repeating: "1", count: 300_000), String(repeating: "1a", count: 150_000), String(repeating: "!?", count: 150_000),
            String(repeating: "\r\n ", count: 100_000), String(repeating: " é中😀", count: 75_000),
        ]
        for pre in [PreTokenizer.gpt2, .smollm, .llama3, .qwen2, .qwen35, .falcon, .deepseekCoder, .standard] {
            for text in shapes {
                let words = pre.split(text)
                #expect(words.joined() == text, "\(pre) on \(text.prefix(6).debugDescription)…")
            }
        }
    }

    /// 20,000 messages render (every template family) and tokenize in time linear in their number:
    /// exactly one turn marker per message plus the generation prompt.
    @Test func survivesManyMessagesChat() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let messages = (0 ..< 20_000).map { ChatMessage(role: $0 % 2 == 0 ? "user" : "assistant", content: "message \($0)") }
        for family in [ChatTemplate.Family.chatML, .llama3, .llama2, .zephyr] {
            let segments = try ChatTemplate(family: family).render(messages)
            #expect(segments.count >= messages.count * 2)
        }
        let ids = try tokenizer.encode(ChatTemplate(family: .chatML).render(messages), maxWordBytes: 8192)
        let imStart = try #require(tokenizer.id(of: "<|im_start|>"))
        #expect(ids.filter { $0 == imStart }.count == messages.count + 1)
    }
}
