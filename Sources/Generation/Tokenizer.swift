import ModelFormat

/// A byte-level BPE tokenizer (GGUF `tokenizer.ggml.model = gpt2`) built from the model's own
/// vocabulary, merges and token types, encoding and decoding as llama.cpp does (`llama_tokenize`,
/// `llama_token_to_piece`).
///
/// Encoding: (1) special tokens are cut out of the text first, longest text first: user-defined
/// tokens always, control tokens only with `parseSpecial` (so text written by a user cannot turn
/// into `<|im_start|>` unless the caller allows it); (2) the rest is split into words by the
/// model's `PreTokenizer`; (3) each word's UTF-8 bytes are written in the byte-level alphabet and
/// merged pairwise, lowest merge rank first (leftmost among equals), until no merge applies (a
/// priority queue, O(n log n) in the word's length);
/// (4) each symbol becomes its token id. `tokenizer.ggml.add_bos_token` decides whether a BOS is
/// added in front (llama3 pre-tokenizers default to yes, others to no).
///
/// Decoding gives bytes, not text: a token may end in the middle of a UTF-8 character. Use
/// `StreamingDecoder` to print as tokens come.
public struct Tokenizer: Sendable {
    /// Token texts, by id (byte-level alphabet for normal tokens).
    public let tokens: [String]
    public let attributes: [TokenAttribute]
    public let preTokenizer: PreTokenizer
    /// `tokenizer.ggml.bos_token_id`, if any.
    public let bos: Int?
    /// `tokenizer.ggml.eos_token_id`, if any.
    public let eos: Int?
    /// Whether encoding a prompt adds `bos` in front (`tokenizer.ggml.add_bos_token`).
    public let addsBOS: Bool
    /// End-of-generation tokens: EOS, EOT and the control tokens llama.cpp treats as ends of turns
    /// (`<|endoftext|>`, `<|im_end|>`, `<|eot_id|>`, `<|end|>`, `<end_of_turn>`, `<|eom_id|>`, ...).
    public let endOfGeneration: Set<Int>

    private let ids: [String: Int]
    /// "left right" -> rank.
    let ranks: [String: Int]
    /// Special tokens to cut out of raw text, longest first: (id, UTF-8 of the text, attribute).
    let specials: [(id: Int, text: [UInt8], attribute: TokenAttribute)]

    /// The token texts llama.cpp treats as end of generation wherever they are in the vocabulary.
    static let endOfGenerationTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
        "<｜end▁of▁sentence｜>",
    ]

    /// Builds the tokenizer from `file`'s metadata. Refuses a tokenizer model other than `gpt2`, an
    /// unknown pre-tokenizer, token types or merges that are missing, malformed or inconsistent
    /// with the token list, and special ids outside it.
    public init(file: GGUFFile) throws(InferenceError) {
        func fail(_ reason: String) -> InferenceError { InferenceError(.invalidVocabulary, reason) }
        let model = try file.optionalString("tokenizer.ggml.model")
        guard model == "gpt2" else {
            throw fail("tokenizer.ggml.model is \(model.map { "\"\($0)\"" } ?? "absent"); only \"gpt2\" (byte-level BPE) is supported")
        }
        let pre = try file.optionalString("tokenizer.ggml.pre")
        guard let preTokenizer = PreTokenizer(name: pre) else {
            throw fail("unknown pre-tokenizer tokenizer.ggml.pre = \"\(pre ?? "")\"")
        }
        guard let tokenArray = file.array("tokenizer.ggml.tokens") else { throw fail("the model has no tokenizer.ggml.tokens") }
        let tokens: [String]
        do { tokens = try tokenArray.strings() } catch { throw fail("tokenizer.ggml.tokens: \(error)") }
        guard !tokens.isEmpty, tokens.count <= Int(Int32.max) else { throw fail("tokenizer.ggml.tokens is empty") }

        var attributes = [TokenAttribute](repeating: .normal, count: tokens.count)
        if let typeArray = file.array("tokenizer.ggml.token_type") {
            let types: [Int32]
            do { types = try typeArray.int32s() } catch { throw fail("tokenizer.ggml.token_type: \(error)") }
            guard types.count == tokens.count else {
                throw fail("tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
            }
            for (i, type) in types.enumerated() {
                guard let attribute = TokenAttribute(rawValue: type) else {
                    throw fail("tokenizer.ggml.token_type[\(i)] = \(type) is not a token type (0...6)")
                }
                attributes[i] = attribute
            }
        }
        guard let mergeArray = file.array("tokenizer.ggml.merges") else { throw fail("the model has no tokenizer.ggml.merges") }
        let merges: [String]
        do { merges = try mergeArray.strings() } catch { throw fail("tokenizer.ggml.merges: \(error)") }
        var ranks: [String: Int] = [:]
        ranks.reserveCapacity(merges.count)
        for (rank, merge) in merges.enumerated() {
            // llama.cpp splits at the first space after the first character.
            let scalars = Array(merge.unicodeScalars)
            guard scalars.count >= 3, let space = scalars.dropFirst().firstIndex(of: " "), space < scalars.count - 1 else {
                throw fail("tokenizer.ggml.merges[\(rank)] = \"\(merge)\" is not two symbols separated by a space")
            }
            if ranks[merge] == nil { ranks[merge] = rank }
        }
        var ids: [String: Int] = [:]
        ids.reserveCapacity(tokens.count)
        for (id, text) in tokens.enumerated() where ids[text] == nil { ids[text] = id }

        func special(_ key: String) throws(InferenceError) -> Int? {
            guard let id = try file.optionalInt(key, in: Int(Int32.min) ... Int(Int32.max)) else { return nil }
            if id == -1 { return nil }
            guard id >= 0, id < tokens.count else { throw fail("\(key) = \(id) is outside the vocabulary (\(tokens.count) tokens)") }
            return id
        }
        let bos = try special("tokenizer.ggml.bos_token_id")
        let eos = try special("tokenizer.ggml.eos_token_id")
        let eot = try special("tokenizer.ggml.eot_token_id")
        let eom = try special("tokenizer.ggml.eom_token_id")
        let addsBOS = try file.optionalBool("tokenizer.ggml.add_bos_token") ?? (preTokenizer == .llama3)
        if addsBOS && bos == nil { throw fail("tokenizer.ggml.add_bos_token is true but there is no bos_token_id") }

        var endOfGeneration = Set([eos, eot, eom].compactMap { $0 })
        for (id, text) in tokens.enumerated() where Self.endOfGenerationTexts.contains(text) {
            endOfGeneration.insert(id)
            // llama.cpp forces end-of-turn tokens to be control tokens.
            if attributes[id] == .normal || attributes[id] == .undefined { attributes[id] = .control }
        }

        self.tokens = tokens
        self.attributes = attributes
        self.preTokenizer = preTokenizer
        self.bos = bos
        self.eos = eos
        self.addsBOS = addsBOS
        self.endOfGeneration = endOfGeneration
        self.ids = ids
        self.ranks = ranks
        self.specials = tokens.indices
            .filter { attributes[$0].isSpecial && !tokens[$0].isEmpty }
            .map { (id: $0, text: Array(tokens[$0].utf8), attribute: attributes[$0]) }
            .sorted { $0.text.count != $1.text.count ? $0.text.count > $1.text.count : $0.id < $1.id }
    }

    public var count: Int { tokens.count }

    /// The id of a token text, if it is in the vocabulary.
    public func id(of text: String) -> Int? { ids[text] }

    // MARK: Encoding

    /// The longest word (pre-token) `encode` accepts unless told otherwise, in UTF-8 bytes: far
    /// longer than any word of real text, short enough that one word's BPE stays cheap.
    public static let defaultMaxWordBytes = 8192

    /// Token ids of `text`. `addSpecial` adds BOS when the model asks for it (`addsBOS`);
    /// `parseSpecial` lets control tokens written as text (`<|im_start|>`) become those tokens.
    /// Refuses (`.wordTooLong`) a word of the pre-tokenizer longer than `maxWordBytes` UTF-8 bytes,
    /// naming its byte offset in `text`, its length and the limit (never its content).
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false,
                       maxWordBytes: Int) throws(InferenceError) -> [Int] {
        var output: [Int] = []
        if addSpecial, addsBOS, let bos { output.append(bos) }
        try encode(Array(text.utf8), parseSpecial: parseSpecial, limit: WordLimit(maxBytes: maxWordBytes, of: "the text"),
                   into: &output)
        return output
    }

    /// `encode(_:addSpecial:parseSpecial:maxWordBytes:)` without a limit on word length.
    @available(*, deprecated, message: "no limit on word length: use encode(_:addSpecial:parseSpecial:maxWordBytes:)")
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false) -> [Int] {
        // Cannot throw: there is no limit.
        (try? encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial, maxWordBytes: .max)) ?? []
    }

    /// Where a word limit applies: the limit, what the offsets are offsets of (for the error), and
    /// the offset of the bytes being encoded in it.
    struct WordLimit {
        var maxBytes: Int
        var of: String
        var base = 0

        func check(_ length: Int, at offset: Int) throws(InferenceError) {
            guard length > maxBytes else { return }
            throw InferenceError(.wordTooLong,
                                 "\(of) has a word of \(length) UTF-8 bytes at byte offset \(base + offset), longer than the limit of \(maxBytes) bytes")
        }
    }

    /// Encodes `bytes` (special tokens, then BPE of the text between them) into `output`.
    func encode(_ bytes: [UInt8], parseSpecial: Bool, limit: WordLimit, into output: inout [Int]) throws(InferenceError) {
        for fragment in partition(bytes, parseSpecial: parseSpecial) {
            switch fragment {
            case let .token(id):
                output.append(id)
            case let .text(range):
                var fragmentLimit = limit
                fragmentLimit.base += range.lowerBound
                try encodeText(String(decoding: bytes[range], as: UTF8.self), limit: fragmentLimit, into: &output)
            }
        }
    }

    /// BPE of ordinary text (no special tokens in it); each word is checked against `limit` first.
    func encodeText(_ text: String, limit: WordLimit, into output: inout [Int]) throws(InferenceError) {
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

    // MARK: Decoding

    /// The bytes token `id` stands for. Control and unknown tokens give nothing unless `special`
    /// (then their text); user-defined tokens their text; normal tokens their bytes (the byte-level
    /// alphabet undone); `<0xXX>` byte tokens that byte. Ids outside the vocabulary give nothing.
    public func piece(_ id: Int, special: Bool = false) -> [UInt8] {
        guard id >= 0, id < tokens.count else { return [] }
        switch attributes[id] {
        case .control, .unknown:
            return special ? Array(tokens[id].utf8) : []
        case .userDefined:
            return Array(tokens[id].utf8)
        case .normal:
            return ByteLevel.decode(tokens[id])
        case .byte:
            let text = tokens[id]
            if text.count == 6, text.hasPrefix("<0x"), text.hasSuffix(">"),
               let byte = UInt8(text.dropFirst(3).prefix(2), radix: 16) {
                return [byte]
            }
            return []
        case .undefined, .unused:
            return []
        }
    }

    /// The text of `ids` (their pieces concatenated, then decoded as UTF-8; invalid sequences
    /// become U+FFFD).
    public func decode(_ ids: [Int], special: Bool = false) -> String {
        String(decoding: ids.flatMap { piece($0, special: special) }, as: UTF8.self)
    }
}
