/// The candidate merges of one word for BPE: a binary min-heap ordered by (rank, left position), so
/// that the next merge is the lowest rank, the leftmost among equals (llama.cpp's `llm_bigram_bpe`
/// queue in `llm_tokenizer_bpe_session`). Entries go stale when one of their symbols changes after
/// they were queued; `Tokenizer.merge` recognises and skips those when it pops them.
struct BigramQueue {
    struct Bigram {
        var rank: Int
        /// Index of the left symbol (its first scalar in the word; never changes as it grows).
        var left: Int
        /// Index of the right symbol.
        var right: Int
        /// Scalars in the two symbols when queued: more now means one of them has grown (stale).
        var size: Int

        func precedes(_ other: Bigram) -> Bool {
            rank != other.rank ? rank < other.rank : left < other.left
        }
    }

    private var heap: [Bigram] = []
    /// Pushes, pops and sift steps so far: the work done, which the tests bound by O(n log n).
    private(set) var operations = 0

    init(capacity: Int) {
        heap.reserveCapacity(capacity)
    }

    mutating func push(_ bigram: Bigram) {
        operations += 1
        heap.append(bigram)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].precedes(heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
            operations += 1
        }
    }

    /// The first bigram in (rank, left) order, removed; nil when empty.
    mutating func pop() -> Bigram? {
        guard let top = heap.first else { return nil }
        operations += 1
        let last = heap.removeLast()
        guard !heap.isEmpty else { return top }
        heap[0] = last
        var i = 0
        while true {
            let left = 2 * i + 1, right = left + 1
            var first = i
            if left < heap.count, heap[left].precedes(heap[first]) { first = left }
            if right < heap.count, heap[right].precedes(heap[first]) { first = right }
            if first == i { break }
            heap.swapAt(i, first)
            i = first
            operations += 1
        }
        return top
    }
}
