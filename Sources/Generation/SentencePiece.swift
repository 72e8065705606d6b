/// SentencePiece-style BPE (GGUF `tokenizer.ggml.model = llama`), as llama.cpp's
/// `llm_tokenizer_spm_session`:
///
/// 1. Spaces (U+0020 only) become `▁` (U+2581); a `▁` is put in front when `addsSpacePrefix`
///    (`tokenizer.ggml.add_space_prefix`, default true) and the fragment starts the text or
///    follows a special token.
/// 2. The symbols start as the text's UTF-8 characters. Every adjacent pair whose concatenation is
///    a token is a candidate; the candidate whose token has the highest score
///    (`tokenizer.ggml.scores`) is merged first, the leftmost among equal scores, and the merged
///    symbol's new pairs become candidates, until none is left. Scores are turned into ranks once
///    (equal scores, equal ranks) so the same min-heap as BPE (`BigramQueue`) orders them: a
///    fragment of n characters costs O(n log n).
/// 3. Each symbol becomes its token; a symbol that is not a token (a character absent from the
///    vocabulary) becomes the `<0xXX>` tokens of its UTF-8 bytes (byte fallback; the single-byte
///    token, then the unknown token, when a byte token is missing; nothing when neither exists).
///
/// Word limit: llama.cpp merges a whole fragment as one "word", and pieces may contain `▁` inside
/// them, so the merge is never cut at spaces (that would change the tokens). The `maxWordBytes`
/// limit is checked on the runs of bytes between spaces of the fragment instead: a text whose
/// space-free runs all fit is merged whole, exactly as llama.cpp does, in O(n log n).
public struct SentencePiece: Sendable {
    /// Whether a `▁` is put in front of a fragment that starts the text or follows a special token.
    public let addsSpacePrefix: Bool
    /// Token text's UTF-8 -> id (the last id of a text that appears twice, as llama.cpp). Keyed by
    /// bytes, not `String`: Swift compares strings by canonical equivalence, so `e` + U+0301 would
    /// find the `é` token and U+0340 the U+0300 one, which llama.cpp (and the model) never do.
    let ids: [[UInt8]: Int]
    /// Merge rank of each token id: 0 for the highest score; equal scores share a rank.
    let ranks: [Int]
    /// The byte-fallback token of each byte value.
    let byteTokens: [Int?]

    static let escapedSpace: [UInt8] = Array("\u{2581}".utf8)

    init(tokens: [String], scores: [Float], unknown: Int?, addsSpacePrefix: Bool) {
        self.addsSpacePrefix = addsSpacePrefix
        var byteIds: [[UInt8]: Int] = [:]
        byteIds.reserveCapacity(tokens.count)
        for (id, text) in tokens.enumerated() { byteIds[Array(text.utf8)] = id }
        self.ids = byteIds
        let clean = scores.map { $0.isNaN ? -Float.infinity : $0 }
        let order = clean.indices.sorted { clean[$0] > clean[$1] }
        var ranks = [Int](repeating: 0, count: tokens.count)
        var rank = 0
        for (k, id) in order.enumerated() {
            if k > 0, clean[id] != clean[order[k - 1]] { rank += 1 }
            ranks[id] = rank
        }
        self.ranks = ranks
        let hex = Array("0123456789ABCDEF")
        self.byteTokens = (0 ..< 256).map { b in
            let name = "<0x" + String(hex[b >> 4]) + String(hex[b & 15]) + ">"
            if let id = byteIds[Array(name.utf8)] { return id }
            if b < 0x80, let id = byteIds[[UInt8(b)]] { return id }
            return unknown
        }
    }

    /// Encodes one text fragment (no special tokens in it) into `output`. `spacePrefix`: the
    /// fragment starts the text or follows a special token. Refuses (`.wordTooLong`) a run of
    /// bytes between spaces longer than the limit.
    func encode(_ bytes: ArraySlice<UInt8>, spacePrefix: Bool, limit: Tokenizer.WordLimit,
                into output: inout [Int]) throws(InferenceError) {
        var operations = 0
        try encode(bytes, spacePrefix: spacePrefix, limit: limit, into: &output, operations: &operations)
    }

    func encode(_ bytes: ArraySlice<UInt8>, spacePrefix: Bool, limit: Tokenizer.WordLimit,
                into output: inout [Int], operations: inout Int) throws(InferenceError) {
        var runStart = bytes.startIndex
        for i in bytes.indices where bytes[i] == 0x20 {
            try limit.check(i - runStart, at: runStart - bytes.startIndex)
            runStart = i + 1
        }
        try limit.check(bytes.endIndex - runStart, at: runStart - bytes.startIndex)

        let text = escape(bytes, spacePrefix: spacePrefix)
        for symbol in merge(text, operations: &operations) {
            if let id = ids[Array(text[symbol])] {
                output.append(id)
            } else {
                for byte in text[symbol] {
                    if let id = byteTokens[Int(byte)] { output.append(id) }
                }
            }
        }
    }

    /// `bytes` with spaces as `▁`, and a `▁` in front when `spacePrefix` and `addsSpacePrefix`.
    func escape(_ bytes: ArraySlice<UInt8>, spacePrefix: Bool) -> [UInt8] {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count + 3)
        if spacePrefix && addsSpacePrefix { text += Self.escapedSpace }
        for byte in bytes {
            if byte == 0x20 { text += Self.escapedSpace } else { text.append(byte) }
        }
        return text
    }

    /// The symbols (byte ranges of `text`) left when no adjacent pair forms a token any more.
    func merge(_ text: [UInt8], operations: inout Int) -> [Range<Int>] {
        // Symbol i starts at byte starts[i]; merged symbols keep the left one's index.
        var starts: [Int] = []
        var lengths: [Int] = [] // bytes in symbol i; 0 once merged into its left neighbour
        starts.reserveCapacity(text.count)
        lengths.reserveCapacity(text.count)
        var offset = 0
        while offset < text.count {
            let length = min(Self.utf8Length(text[offset]), text.count - offset)
            starts.append(offset)
            lengths.append(length)
            offset += length
        }
        let n = starts.count
        guard n > 1 else { return n == 1 ? [0 ..< text.count] : [] }
        var previous = Array(-1 ..< n - 1)
        var next = Array(1 ... n)
        next[n - 1] = -1
        var queue = BigramQueue(capacity: n)
        func enqueue(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0 else { return }
            let start = starts[left], size = lengths[left] + lengths[right]
            guard let id = ids[Array(text[start ..< start + size])] else { return }
            queue.push(BigramQueue.Bigram(rank: ranks[id], left: left, right: right, size: size))
        }
        for i in 0 ..< n - 1 { enqueue(i, i + 1) }
        while let bigram = queue.pop() {
            let left = bigram.left, right = bigram.right
            // Symbols only grow, so equal sizes mean neither changed since the pair was queued.
            guard lengths[left] > 0, lengths[right] > 0, next[left] == right,
                  lengths[left] + lengths[right] == bigram.size else { continue }
            lengths[left] += lengths[right]
            lengths[right] = 0
            next[left] = next[right]
            if next[right] >= 0 { previous[next[right]] = left }
            enqueue(previous[left], left)
            enqueue(left, next[left])
        }
        operations += queue.operations
        var symbols: [Range<Int>] = []
        var i = 0 // symbol 0 is never merged away
        while i >= 0 {
            symbols.append(starts[i] ..< starts[i] + lengths[i])
            i = next[i]
        }
        return symbols
    }

    /// Bytes of the UTF-8 character starting with `byte` (1 for a stray continuation byte), as
    /// llama.cpp's `unicode_len_utf8`.
    static func utf8Length(_ byte: UInt8) -> Int {
        switch byte >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    /// A normal token's text with `▁` back to spaces.
    static func unescape(_ token: String) -> [UInt8] {
        var out: [UInt8] = []
        let utf8 = Array(token.utf8)
        out.reserveCapacity(utf8.count)
        var i = 0
        while i < utf8.count {
            if i + 2 < utf8.count, utf8[i] == 0xE2, utf8[i + 1] == 0x96, utf8[i + 2] == 0x81 {
                out.append(0x20)
                i += 3
            } else {
                out.append(utf8[i])
                i += 1
            }
        }
        return out
    }
}
