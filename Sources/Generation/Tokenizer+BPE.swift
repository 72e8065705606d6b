/// Byte-level BPE (`tokenizer.ggml.model = gpt2`), as llama.cpp's `llm_tokenizer_bpe_session`.
extension Tokenizer {
    /// BPE of ordinary text (no special tokens in it); each word is checked against `limit` first.
    func encodeBPE(_ text: String, limit: WordLimit, into output: inout [Int]) throws(InferenceError) {
        var offset = 0
        for word in preTokenizer.split(text) {
            let length = word.utf8.count
            try limit.check(length, at: offset)
            offset += length
            let encoded = ByteLevel.encode(word.utf8)
            if preTokenizer.ignoresMerges, let id = ids[encoded] {
                output.append(id)
                continue
            }
            for symbol in merge(encoded) {
                if let id = ids[symbol] {
                    output.append(id)
                } else {
                    // As llama.cpp: fall back to the symbol's characters one by one, skipping any
                    // that are not tokens either.
                    for scalar in symbol.unicodeScalars {
                        if let id = ids[String(scalar)] { output.append(id) }
                    }
                }
            }
        }
    }

    /// The BPE merges of one word (already in the byte-level alphabet): repeatedly merge the
    /// adjacent pair with the lowest rank, the leftmost among equal ranks, until no adjacent pair
    /// has a rank. As llama.cpp's `llm_tokenizer_bpe_session`: the symbols are a doubly linked list
    /// over the word's scalars and the candidate pairs a min-heap (`BigramQueue`), so a word of n
    /// scalars costs O(n log n), not O(n²) (a prompt that is one long word cannot stall the node).
    func merge(_ word: String) -> [String] {
        var operations = 0
        return merge(word, operations: &operations)
    }

    /// `merge(_:)`, adding the heap operations it performed to `operations`.
    func merge(_ word: String, operations: inout Int) -> [String] {
        // Symbol i starts at scalar i; merged symbols keep the left one's index.
        var texts = word.unicodeScalars.map { String($0) }
        let n = texts.count
        guard n > 1 else { return texts }
        var lengths = [Int](repeating: 1, count: n) // scalars in symbol i; 0 once merged into its left
        var previous = Array(-1 ..< n - 1)
        var next = Array(1 ... n)
        next[n - 1] = -1
        var queue = BigramQueue(capacity: n)
        func enqueue(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0, let rank = ranks[texts[left] + " " + texts[right]] else { return }
            queue.push(BigramQueue.Bigram(rank: rank, left: left, right: right, size: lengths[left] + lengths[right]))
        }
        for i in 0 ..< n - 1 { enqueue(i, i + 1) }
        while let bigram = queue.pop() {
            let left = bigram.left, right = bigram.right
            // Symbols only grow, so equal sizes mean neither changed since the pair was queued.
            guard lengths[left] > 0, lengths[right] > 0, next[left] == right,
                  lengths[left] + lengths[right] == bigram.size else { continue }
            texts[left] += texts[right]
            texts[right] = ""
            lengths[left] += lengths[right]
            lengths[right] = 0
            next[left] = next[right]
            if next[right] >= 0 { previous[next[right]] = left }
            enqueue(previous[left], left)
            enqueue(left, next[left])
        }
        operations += queue.operations
        var symbols: [String] = []
        var i = 0 // symbol 0 is never merged away
        while i >= 0 {
            symbols.append(texts[i])
            i = next[i]
        }
        return symbols
    }
}
