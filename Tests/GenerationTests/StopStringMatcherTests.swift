import Testing
@testable import Generation

/// Stop strings matched incrementally on UTF-8 bytes.
@Suite struct StopStringMatcherTests {
    /// The earliest start among the stop strings' first occurrences, by plain search of the whole text.
    static func naiveFirstStop(_ text: [UInt8], _ stops: [[UInt8]]) -> Int? {
        stops.compactMap { stop -> Int? in
            guard !stop.isEmpty, text.count >= stop.count else { return nil }
            return (0 ... text.count - stop.count).first { Array(text[$0 ..< $0 + stop.count]) == stop }
        }.min()
    }

    /// The longest suffix of `text` that is a proper prefix of a stop string.
    static func naiveHeldBack(_ text: [UInt8], _ stops: [[UInt8]]) -> Int {
        stops.map { stop in
            (0 ..< stop.count).reversed().first { k in k <= text.count && Array(text.suffix(k)) == Array(stop.prefix(k)) } ?? 0
        }.max() ?? 0
    }

    @Test func findsStopsAcrossPieces() {
        var m = StopStringMatcher(["lo w"])
        #expect(m.append(Array("He".utf8)) == nil)
        #expect(m.heldBack == 0)
        #expect(m.append(Array("l".utf8)) == nil)
        #expect(m.heldBack == 1)
        #expect(m.append(Array("lo".utf8)) == nil)
        #expect(m.heldBack == 2)
        #expect(m.append(Array(" wo".utf8)) == 3)
        // Of two stops, the one that starts first wins even if it ends later.
        var two = StopStringMatcher(["bc", "abcd"])
        #expect(two.append(Array("xabcdy".utf8)) == 1)
        // Self-overlapping stop strings (KMP fallbacks).
        var overlap = StopStringMatcher(["aab"])
        #expect(overlap.append(Array("aa".utf8)) == nil)
        #expect(overlap.append(Array("ab".utf8)) == 1)
        #expect(StopStringMatcher(["", "x"]).stops == [[UInt8(ascii: "x")]])
    }

    /// Seeded random texts over a 3-letter alphabet cut in random pieces, random stop strings:
    /// the offset and the held-back length equal a plain search of the whole text each time.
    @Test func equalsPlainSearchOnRandomPieces() {
        var random = Xoshiro256(seed: 7)
        func byte() -> UInt8 { [UInt8(ascii: "a"), UInt8(ascii: "b"), UInt8(ascii: "c")][Int(random.next() % 3)] }
        for _ in 0 ..< 2000 {
            let stops = (0 ..< 1 + Int(random.next() % 4)).map { _ in (0 ..< 1 + Int(random.next() % 6)).map { _ in byte() } }
            var matcher = StopStringMatcher(stops.map { String(decoding: $0, as: UTF8.self) })
            var text: [UInt8] = []
            for _ in 0 ..< 1 + Int(random.next() % 12) {
                let piece = (0 ..< Int(random.next() % 5)).map { _ in byte() }
                text += piece
                let found = matcher.append(piece)
                #expect(found == Self.naiveFirstStop(text, stops), "text \(text) stops \(stops)")
                if found != nil { break }
                #expect(matcher.heldBack == Self.naiveHeldBack(text, stops))
            }
        }
    }

    /// 5,000 tokens of "ab" against four 64-byte near misses ("abab…abX", the automaton's worst
    /// case): each token's stop check scans at most stops x (2 x piece + longest stop) bytes, the
    /// same at the end as at the start, however long the output is.
    @Test(.enabled(if: TestPaths.runModelTests, TestPaths.modelMissing))
    func stopMatchingCostDoesNotGrowWithOutput() throws {
        let forced = try ForcedGeneration(RealVocabulary.tokenizer())
        let ab = try #require(forced.id(ofPiece: Array("ab".utf8)))
        let near = (0 ..< 4).map { String(repeating: "ab", count: 31) + "a" + String(UnicodeScalar(UInt8(ascii: "w") + UInt8($0))) }
        #expect(near.allSatisfy { $0.utf8.count == GenerationOptions.maxStopStringBytes })
        let run = try forced.run(Array(repeating: ab, count: 5_000), stops: near)
        #expect(run.result.stopReason == .length)
        #expect(run.result.text == String(repeating: "ab", count: 5_000))
        #expect(run.streamed == run.result.text)
        let perToken = zip(run.scanned, [0] + run.scanned).map { $0 - $1 }
        let bound = 4 * (2 * 2 + 64)
        #expect(perToken.allSatisfy { $0 <= bound }, "max \(perToken.max() ?? 0) > \(bound)")
        #expect(perToken.suffix(1000).max()! <= perToken.prefix(1000).max()!)
        // And the held-back tail never exceeds the longest stop string.
        #expect(run.pieces.dropFirst(100).dropLast().allSatisfy { !$0.isEmpty })
    }

    /// More than 4 stop strings, or one longer than 64 UTF-8 bytes, is refused; 4 of 64 are fine.
    @Test func refusesTooManyOrTooLongStopStrings() throws {
        let tokenizer = try TinyVocabulary.tokenizer()
        func refusal(_ stops: [String]) -> InferenceError? {
            do {
                _ = try GenerationState(promptIDs: [3], options: GenerationOptions(stopStrings: stops), tokenizer: tokenizer)
                return nil
            } catch {
                return error
            }
        }
        #expect(GenerationOptions.maxStopStrings == 4 && GenerationOptions.maxStopStringBytes == 64)
        #expect(refusal(Array(repeating: String(repeating: "é", count: 32), count: 4)) == nil)
        #expect(refusal(["a", "b", "c", "d", "e"])?.reason == "at most 4 stop strings are allowed, not 5")
        #expect(refusal(["a", String(repeating: "é", count: 33)])?.reason == "stop string 1 is 66 UTF-8 bytes long, longer than the limit of 64")
        #expect(refusal(["a", String(repeating: "é", count: 33)])?.code == .invalidArgument)
    }
}
