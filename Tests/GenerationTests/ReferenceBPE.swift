@testable import Generation

/// The tokenizer's former BPE merge, kept as the specification the priority-queue merge must equal:
/// scan every adjacent pair for the lowest rank (leftmost among equals), merge it, repeat. O(n²) in
/// the word's length: for tests only.
enum ReferenceBPE {
    static func merge(_ word: String, ranks: [String: Int]) -> [String] {
        var symbols = word.unicodeScalars.map { String($0) }
        guard symbols.count > 1 else { return symbols }
        func rank(_ i: Int) -> Int { ranks[symbols[i] + " " + symbols[i + 1]] ?? .max }
        var pairRanks = (0 ..< symbols.count - 1).map(rank)
        while true {
            var best = Int.max, at = -1
            for (i, r) in pairRanks.enumerated() where r < best {
                best = r
                at = i
            }
            guard at >= 0 else { break }
            symbols[at] += symbols[at + 1]
            symbols.remove(at: at + 1)
            pairRanks.remove(at: at)
            if at < pairRanks.count { pairRanks[at] = rank(at) }
            if at > 0 { pairRanks[at - 1] = rank(at - 1) }
        }
        return symbols
    }
}
