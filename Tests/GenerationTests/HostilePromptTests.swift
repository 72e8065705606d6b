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

        let ids = tokenizer.encode(String(repeating: "a", count: n), addSpecial: false)
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
}
