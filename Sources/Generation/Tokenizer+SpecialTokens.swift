/// Cutting special tokens out of raw text before BPE, as llama.cpp does.
extension Tokenizer {
    enum Fragment: Equatable {
        /// Bytes of the text to encode as text.
        case text(Range<Int>)
        case token(Int)
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest first, every text
    /// fragment is split around each occurrence of it. O(specials × bytes × longest special), linear
    /// in the text for a given vocabulary; `comparisons` counts the byte comparisons.
    func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [Fragment] {
        var comparisons = 0
        return partition(bytes, parseSpecial: parseSpecial, comparisons: &comparisons)
    }

    func partition(_ bytes: [UInt8], parseSpecial: Bool, comparisons: inout Int) -> [Fragment] {
        guard !bytes.isEmpty else { return [] }
        var fragments: [Fragment] = [.text(0 ..< bytes.count)]
        for special in specials {
            if !parseSpecial && (special.attribute == .control || special.attribute == .unknown) { continue }
            var next: [Fragment] = []
            next.reserveCapacity(fragments.count)
            for fragment in fragments {
                guard case let .text(range) = fragment else {
                    next.append(fragment)
                    continue
                }
                var start = range.lowerBound
                while let match = Self.find(special.text, in: bytes, from: start, to: range.upperBound, comparisons: &comparisons) {
                    if match > start { next.append(.text(start ..< match)) }
                    next.append(.token(special.id))
                    start = match + special.text.count
                }
                if start < range.upperBound { next.append(.text(start ..< range.upperBound)) }
            }
            fragments = next
        }
        return fragments
    }

    /// First index of `needle` in `haystack[from ..< to]`.
    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int, to end: Int, comparisons: inout Int) -> Int? {
        guard let first = needle.first, end - from >= needle.count else { return nil }
        var i = from
        let last = end - needle.count
        while i <= last {
            comparisons += 1
            if haystack[i] == first {
                var j = 1
                while j < needle.count && haystack[i + j] == needle[j] { j += 1 }
                comparisons += j - 1
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}
