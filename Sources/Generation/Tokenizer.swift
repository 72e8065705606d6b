import ModelFormat

/// A tokenizer built from the model's own vocabulary, encoding and decoding as llama.cpp does
/// (`llama_tokenize`, `llama_token_to_piece`, `llama_detokenize`), with one of two algorithms
/// (`TokenizerModel`, GGUF `tokenizer.ggml.model`):
///
/// - `gpt2`, byte-level BPE (`Tokenizer+BPE.swift`): (1) special tokens are cut out of the text
///   first, longest text first: user-defined tokens always, control tokens only with
///   `parseSpecial` (so text written by a user cannot turn into `<|im_start|>` unless the caller
///   allows it); (2) the rest is split into words by the model's `PreTokenizer`; (3) each word's
///   UTF-8 bytes are written in the byte-level alphabet and merged pairwise, lowest merge rank
///   first (leftmost among equals), until no merge applies (a priority queue, O(n log n) in the
///   word's length); (4) each symbol becomes its token id.
/// - `llama`, SentencePiece (`SentencePiece.swift`): (1) the same special-token partition; (2) each
///   text fragment gets a space in front when `tokenizer.ggml.add_space_prefix` (default true)
///   and it starts the text or follows a special token, and its spaces become `▁` (U+2581);
///   (3) its UTF-8 characters are merged pairwise, the merge whose result is the token with the
///   highest `tokenizer.ggml.scores` first (leftmost among equals), O(n log n); (4) each symbol
///   becomes its token, or when it is not one, its bytes' `<0xXX>` tokens (byte fallback).
///
/// `tokenizer.ggml.add_bos_token` decides whether a BOS is added in front (default: yes for
/// `llama` and for llama3 pre-tokenizers, no otherwise), `tokenizer.ggml.add_eos_token` whether
/// an EOS is added at the end (default no).
///
/// Decoding gives bytes, not text: a token may end in the middle of a UTF-8 character. Use
/// `StreamingDecoder` to print as tokens come.
public struct Tokenizer: Sendable {
    /// Token texts, by id (byte-level alphabet for normal tokens).
    public let tokens: [String]
    public let attributes: [TokenAttribute]
    /// The algorithm (`tokenizer.ggml.model`).
    public let model: TokenizerModel
    /// How BPE splits text into words (`tokenizer.ggml.pre`); `.standard` and unused for SentencePiece.
    public let preTokenizer: PreTokenizer
    /// `tokenizer.ggml.bos_token_id`, if any.
    public let bos: Int?
    /// `tokenizer.ggml.eos_token_id`, if any.
    public let eos: Int?
    /// Whether encoding a prompt adds `bos` in front (`tokenizer.ggml.add_bos_token`).
    public let addsBOS: Bool
    /// Whether encoding a prompt adds `eos` at the end (`tokenizer.ggml.add_eos_token`).
    public let addsEOS: Bool
    /// End-of-generation tokens: EOS, EOT and the control tokens llama.cpp treats as ends of turns
    /// (`<|endoftext|>`, `<|im_end|>`, `<|eot_id|>`, `<|end|>`, `<end_of_turn>`, `<|eom_id|>`, ...).
    public let endOfGeneration: Set<Int>

    let ids: [String: Int]
    /// "left right" -> rank.
    let ranks: [String: Int]
    /// Special tokens to cut out of raw text, longest first: (id, UTF-8 of the text, attribute).
    let specials: [(id: Int, text: [UInt8], attribute: TokenAttribute)]

    /// The token texts llama.cpp treats as end of generation wherever they are in the vocabulary.
    static let endOfGenerationTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
        "<｜end▁of▁sentence｜>",
    ]

    /// Builds the tokenizer from `file`'s metadata (nothing else: a vocabulary-only GGUF is
    /// enough). Refuses a tokenizer model other than `gpt2` and `llama` (naming it), an unknown
    /// pre-tokenizer (BPE), token types, merges (BPE) or scores (SentencePiece) that are missing,
    /// malformed or inconsistent with the token list, and special ids outside it.
    public init(file: GGUFFile) throws(InferenceError) {
        func fail(_ reason: String) -> InferenceError { InferenceError(.invalidVocabulary, reason) }
        let modelName = try file.optionalString("tokenizer.ggml.model")
        let kind = try TokenizerModel.Kind(name: modelName)
        let preTokenizer: PreTokenizer
        if kind == .bpe {
            let pre = try file.optionalString("tokenizer.ggml.pre")
            guard let variant = PreTokenizer(name: pre) else {
                throw fail("unknown pre-tokenizer tokenizer.ggml.pre = \"\(pre ?? "")\"")
            }
            preTokenizer = variant
        } else {
            preTokenizer = .standard // llama.cpp ignores tokenizer.ggml.pre for SentencePiece
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
        let merges: [String]
        if kind == .bpe {
            guard let mergeArray = file.array("tokenizer.ggml.merges") else { throw fail("the model has no tokenizer.ggml.merges") }
            do { merges = try mergeArray.strings() } catch { throw fail("tokenizer.ggml.merges: \(error)") }
        } else {
            merges = []
        }
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
        // As llama.cpp's token_to_id: a text that appears twice maps to its last id.
        for (id, text) in tokens.enumerated() { ids[text] = id }

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
        let addsBOS = try file.optionalBool("tokenizer.ggml.add_bos_token") ?? (kind == .sentencePiece || preTokenizer == .llama3)
        if addsBOS && bos == nil { throw fail("tokenizer.ggml.add_bos_token is true but there is no bos_token_id") }
        let addsEOS = try file.optionalBool("tokenizer.ggml.add_eos_token") ?? false
        if addsEOS && eos == nil { throw fail("tokenizer.ggml.add_eos_token is true but there is no eos_token_id") }

        let model: TokenizerModel
        switch kind {
        case .bpe:
            model = .bpe
        case .sentencePiece:
            var scores = [Float](repeating: 0, count: tokens.count)
            if let scoreArray = file.array("tokenizer.ggml.scores") {
                do { scores = try scoreArray.float32s() } catch { throw fail("tokenizer.ggml.scores: \(error)") }
                guard scores.count == tokens.count else {
                    throw fail("tokenizer.ggml.scores has \(scores.count) entries for \(tokens.count) tokens")
                }
            }
            let unknown = try special("tokenizer.ggml.unknown_token_id")
            model = .sentencePiece(SentencePiece(tokens: tokens, scores: scores, unknown: unknown,
                                                 addsSpacePrefix: try file.optionalBool("tokenizer.ggml.add_space_prefix") ?? true))
        }

        var endOfGeneration = Set([eos, eot, eom].compactMap { $0 })
        for (id, text) in tokens.enumerated() where Self.endOfGenerationTexts.contains(text) {
            endOfGeneration.insert(id)
            // llama.cpp forces end-of-turn tokens to be control tokens.
            if attributes[id] == .normal || attributes[id] == .undefined { attributes[id] = .control }
        }

        self.tokens = tokens
        self.model = model
        self.addsEOS = addsEOS
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
        if addSpecial, addsEOS, let eos { output.append(eos) }
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

    /// Encodes `bytes` (special tokens, then the model's algorithm on the text between them) into
    /// `output`. `bytes` starts the text or follows a special token (SentencePiece's space prefix).
    func encode(_ bytes: [UInt8], parseSpecial: Bool, limit: WordLimit, into output: inout [Int]) throws(InferenceError) {
        var previousIsSpecial = true
        for fragment in partition(bytes, parseSpecial: parseSpecial) {
            switch fragment {
            case let .token(id):
                output.append(id)
                previousIsSpecial = true
            case let .text(range):
                var fragmentLimit = limit
                fragmentLimit.base += range.lowerBound
                switch model {
                case .bpe:
                    try encodeBPE(String(decoding: bytes[range], as: UTF8.self), limit: fragmentLimit, into: &output)
                case let .sentencePiece(spm):
                    try spm.encode(bytes[range], spacePrefix: previousIsSpecial, limit: fragmentLimit, into: &output)
                }
                previousIsSpecial = false
            }
        }
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
            switch model {
            case .bpe: return ByteLevel.decode(tokens[id])
            case .sentencePiece: return SentencePiece.unescape(tokens[id])
            }
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
    /// become U+FFFD). As `llama_detokenize`: for SentencePiece with `add_space_prefix`, one
    /// leading space of the first token's piece is removed (the space encoding put in front;
    /// when the first token is BOS, its empty piece takes that turn and the space stays, as in
    /// llama.cpp); `piece` never removes it (a generated token's space is text).
    public func decode(_ ids: [Int], special: Bool = false) -> String {
        var bytes: [UInt8] = []
        for (i, id) in ids.enumerated() {
            var p = piece(id, special: special)
            if i == 0, case let .sentencePiece(spm) = model, spm.addsSpacePrefix, p.first == 0x20 { p.removeFirst() }
            bytes += p
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
