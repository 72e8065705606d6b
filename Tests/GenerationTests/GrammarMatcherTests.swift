import Foundation
import Testing
@testable import Generation

/// The byte-level grammar matcher and the token-level constraint: accepted and refused strings,
/// partial UTF-8, the builder's refusals, bounded fuzzing, and (on the real vocabulary) the trie
/// mask against a token-by-token check and a generation held to the grammar.
struct GrammarMatcherTests {
    static func jsonObjectGrammar() throws -> Grammar {
        var b = GrammarBuilder()
        let json = try JSONRules(&b)
        return try b.build(root: json.object)
    }

    static func matches(_ g: Grammar, _ bytes: [UInt8]) -> Bool {
        var m = GrammarMatcher(g)
        return m.accept(bytes) && m.isAccepting
    }

    @Test func acceptsJSONAndRefusesWhatIsNot() throws {
        let g = try Self.jsonObjectGrammar()
        for ok in [#"{}"#, #"{"a":1}"#, #"{"a": [1, -0.5, 2E+3, "x", true, false, null, {"b": {}}]}"#, "{\n\t\"k\": \"\\u00e9\\n\"\n}",
                   "{\"日本\": \"😀\"}"] {
            #expect(Self.matches(g, Array(ok.utf8)), "\(ok)")
        }
        for bad in ["", "{", "[]", "{\"a\"}", "{\"a\":}", "{\"a\": 1 2}", "{\"a\": \"\n\"}", "{\"a\": 1e}", "{\"a\": .5}", "{\"a\": -}",
                    "{} ", " {}", "{\"a\": \"\\x\"}", "{\"a\": nul}"] {
            #expect(!Self.matches(g, Array(bad.utf8)), "\(bad)")
        }
        // Invalid UTF-8 in a string: an overlong encoding, a lone continuation byte, a surrogate, a truncated sequence.
        for bytes: [UInt8] in [[0xC0, 0x80], [0x80], [0xED, 0xA0, 0x80], [0xE6, 0x97]] {
            #expect(!Self.matches(g, Array("{\"a\": \"".utf8) + bytes + Array("\"}".utf8)))
        }
    }

    @Test func partialUTF8IsHeldUntilItsCharacterCompletes() throws {
        let g = try Self.jsonObjectGrammar()
        var m = GrammarMatcher(g)
        var ok = m.accept(Array("{\"a\": \"".utf8))
        #expect(ok)
        let snowman: [UInt8] = [0xE2, 0x98, 0x83]
        ok = m.accept([snowman[0]])
        #expect(ok)
        let quote = m.allows([UInt8(ascii: "\"")])
        #expect(!quote)  // inside a character: no closing quote yet
        #expect(m.nextBytes() == ByteSet(0x80 ... 0xBF))
        ok = m.accept(Array(snowman[1...])) && m.accept(Array("\"}".utf8))
        #expect(ok)
        #expect(m.isAccepting && m.isFinished)
    }

    @Test func refusesLeftRecursionAndEmptyLanguages() throws {
        var b = GrammarBuilder()
        let a = try b.declare("a")
        try b.define(a, [[.rule(a), .text("x")], [.text("y")]])
        #expect(throws: InferenceError.self) { try b.build(root: a) }
        var c = GrammarBuilder()
        let loop = try c.declare("loop")
        try c.define(loop, [[.text("("), .rule(loop), .text(")")]])
        do {
            _ = try c.build(root: loop)
            Issue.record("an unproductive root was accepted")
        } catch {
            #expect(error.code == .grammarRefused && error.reason.contains("no finite value"))
        }
    }

    @Test func refusesGrammarsOverTheirLimits() throws {
        var b = GrammarBuilder(limits: .init(rules: 10, elements: 100))
        for i in 0 ..< 10 { _ = try b.rule("r\(i)", [[.text("x")]]) }
        #expect(throws: InferenceError.self) { _ = try b.rule("one-more", [[.text("x")]]) }
        var c = GrammarBuilder(limits: .init(rules: 10, elements: 100))
        #expect(throws: InferenceError.self) { _ = try c.rule("long", [[.literal([UInt8](repeating: 0x41, count: 200))]]) }
    }

    /// Random bytes (seeded, bounded): the matcher never accepts what JSONSerialization refuses,
    /// and a random walk over the bytes it allows only ever completes valid JSON objects.
    @Test func fuzzRandomBytesAndRandomWalks() throws {
        let g = try Self.jsonObjectGrammar()
        var random = Xoshiro256(seed: 20)
        let alphabet = Array("{}[]\":,0123456789.-+eEtrufalsn \n\\u\u{e9}x".utf8)
        for _ in 0 ..< 3000 {
            let length = Int(random.next() % 24)
            let bytes = (0 ..< length).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }
            var m = GrammarMatcher(g)
            for b in bytes { _ = m.accept([b]) }
            if Self.matches(g, bytes) {
                #expect(try JSONSerialization.jsonObject(with: Data(bytes), options: []) is [String: Any])
            }
        }
        for _ in 0 ..< 300 {
            var m = GrammarMatcher(g)
            var bytes: [UInt8] = []
            while !m.isFinished && bytes.count < 200 {
                let next = m.nextBytes()
                let allowed = (0 ... 255).map { UInt8($0) }.filter { next.contains($0) }
                // Prefer closing once long, so that walks end.
                let closing = allowed.filter { [UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: "\"")].contains($0) }
                let pool = bytes.count > 60 && !closing.isEmpty ? closing : allowed
                let b = pool[Int(random.next() % UInt64(pool.count))]
                let allowedHere = m.allows([b])
                let accepted = m.accept([b])
                #expect(allowedHere && accepted)
                bytes.append(b)
                if m.isAccepting {
                    #expect((try? JSONSerialization.jsonObject(with: Data(bytes), options: [])) is [String: Any],
                            "\(String(decoding: bytes, as: UTF8.self))")
                }
            }
        }
    }

    @Test(.enabled(if: TestPaths.runModelTests, TestPaths.modelMissing)) func trieMaskEqualsTokenByTokenCheck() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let trie = TokenTrie(tokenizer: tokenizer)
        let g = try Self.jsonObjectGrammar()
        for prefix in ["", "{", "{\"", "{\"ab", "{\"a\": ", "{\"a\": 12", "{\"a\": \"x", "{\"a\": [", "{\"a\": tr", "{\"a\": {}"] {
            var c = TokenConstraint(GrammarConstraint(grammar: g, trie: trie))
            var m = GrammarMatcher(g)
            let bytesOK = m.accept(Array(prefix.utf8))
            #expect(bytesOK)
            for id in try tokenizer.encode(prefix, addSpecial: false, maxWordBytes: 1000) {
                let tokenOK = c.accept(id)
                #expect(tokenOK)
            }
            let mask = c.mask()
            var allowed = 0
            for id in 0 ..< tokenizer.count {
                let one = c.allows(id)
                #expect(Sampler.isAllowed(id, mask) == one, "token \(id) after \(prefix)")
                if Sampler.isAllowed(id, mask) { allowed += 1 }
            }
            #expect(allowed > 0)
        }
    }

    /// Random logits, biased toward a few structural tokens so that outputs end: every generation
    /// that ends (not by length) is one JSON object, and every token of it was allowed.
    @Test(.enabled(if: TestPaths.runModelTests, TestPaths.modelMissing)) func constrainedGenerationFromRandomLogitsAlwaysParses() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        let constraint = GrammarConstraint(grammar: try Self.jsonObjectGrammar(), trie: TokenTrie(tokenizer: tokenizer))
        let favoured = ["}", "\"", "]", ",", "1", ":", "{\"", "\":", "a"].compactMap { text -> Int? in
            let ids = (try? tokenizer.encode(text, addSpecial: false, maxWordBytes: 100)) ?? []
            return ids.count == 1 ? ids[0] : nil
        } + Array(tokenizer.endOfGeneration)
        var random = Xoshiro256(seed: 7)
        var ended = 0
        for round in 0 ..< 12 {
            var options = GenerationOptions(maxTokens: 80, sampling: SamplingParameters(temperature: round % 3 == 0 ? 0 : 1, topK: 0, topP: 1, minP: 0, seed: UInt64(round)))
            options.grammar = constraint
            var state = try GenerationState(promptIDs: [1], options: options, tokenizer: tokenizer)
            while !state.isFinished {
                var logits = (0 ..< tokenizer.count).map { _ in random.nextUnit() * 4 }
                for id in favoured { logits[id] += 6 + random.nextUnit() * 2 }
                _ = state.accept(logits: logits)
            }
            let result = state.result
            #expect(result.text.hasPrefix("{"))
            if result.stopReason == .endOfGeneration {
                ended += 1
                #expect((try? JSONSerialization.jsonObject(with: Data(result.text.utf8))) is [String: Any], "\(result.text)")
            }
        }
        #expect(ended > 0)
    }
}
