import Foundation
import Testing
@testable import Generation

/// The priority-queue BPE merge against the former quadratic one, and its cost on hostile words.
@Suite("BPE merges", .enabled(if: TestPaths.runModelTests, TestPaths.modelMissing))
struct BPEMergeTests {
    /// Scalars random words are drawn from: ASCII, accented Latin, CJK, emoji, combining marks, and
    /// a tiny alphabet so that equal-rank overlapping pairs ("aaa", "abab") are frequent.
    static let alphabets: [[Unicode.Scalar]] = [
        Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,'-_\n\t".unicodeScalars),
        Array("éèêëàâäôöûüçñøåæœßÉÀÇÑíóúãõąęłśźżčšž".unicodeScalars),
        (0x4E00 ... 0x4FFF).compactMap(Unicode.Scalar.init) + (0x3040 ... 0x30FF).compactMap(Unicode.Scalar.init),
        (0x1F600 ... 0x1F64F).compactMap(Unicode.Scalar.init) + [Unicode.Scalar(0x200D)!, Unicode.Scalar(0x1F1EB)!,
                                                                  Unicode.Scalar(0x1F1F7)!, Unicode.Scalar(0xFE0F)!],
        [Unicode.Scalar(0x301)!, Unicode.Scalar(0x308)!, "e", "a"],
        Array("ab ".unicodeScalars),
    ]

    static func randomWord(_ random: inout Xoshiro256) -> String {
        let length = 1 + Int(random.next() % 48)
        var scalars = String.UnicodeScalarView()
        // Mostly one alphabet per word (as real words are), sometimes mixed.
        let mixed = random.next() % 4 == 0
        var alphabet = alphabets[Int(random.next() % UInt64(alphabets.count))]
        for _ in 0 ..< length {
            if mixed { alphabet = alphabets[Int(random.next() % UInt64(alphabets.count))] }
            scalars.append(alphabet[Int(random.next() % UInt64(alphabet.count))])
        }
        return String(scalars)
    }

    /// Seeded random words (and the words the pre-tokenizer makes of them): the priority-queue merge
    /// gives exactly the quadratic reference's symbols on the real SmolLM2 vocabulary.
    @Test func mergesEqualTheQuadraticReference() throws {
        let tokenizer = try RealVocabulary.tokenizer()
        var random = Xoshiro256(seed: 20_261_202)
        var checked = 0, merged = 0
        for _ in 0 ..< 3000 {
            let text = Self.randomWord(&random)
            for word in [text] + tokenizer.preTokenizer.split(text) {
                let encoded = ByteLevel.encode(word.utf8)
                let fast = tokenizer.merge(encoded)
                let reference = ReferenceBPE.merge(encoded, ranks: tokenizer.ranks)
                #expect(fast == reference, "word \(word.debugDescription)")
                checked += 1
                if fast.count < encoded.unicodeScalars.count { merged += 1 }
            }
        }
        // Runs of one letter and of repeated pairs, where equal ranks overlap.
        for letter in ["a", "e", " ", "0", "\n", "ab", "ba", "é", "中", "😀"] {
            for count in [2, 3, 5, 8, 13, 64, 100, 257] {
                let encoded = ByteLevel.encode(String(repeating: letter, count: count).utf8)
                #expect(tokenizer.merge(encoded) == ReferenceBPE.merge(encoded, ranks: tokenizer.ranks), "\(count) x \(letter.debugDescription)")
                checked += 1
            }
        }
        #expect(merged > 1000) // the words did exercise the merges
        print("BPE: \(checked) words equal the reference (\(merged) merged)")
    }
}
