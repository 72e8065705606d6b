extension Tokenizer {
    /// Token ids of a rendered conversation: `.special` segments become their token (their text
    /// must be a token of the vocabulary; if it is not, it is encoded as text), special tokens
    /// inside `.template` text become their tokens, and all other text (adjacent `.text` and the
    /// rest of `.template` segments) is joined and encoded as one text with `parseSpecial: false`,
    /// so message contents can never produce control tokens. BOS and EOS are added when the model asks for them. Refuses
    /// (`.wordTooLong`) a word longer than `maxWordBytes` UTF-8 bytes, naming its byte offset in the
    /// rendered conversation (all segments' texts joined, as `ChatTemplate.renderText` gives it).
    public func encode(_ segments: [ChatSegment], addSpecial: Bool = true, maxWordBytes: Int) throws(InferenceError) -> [Int] {
        var output: [Int] = []
        if addSpecial, addsBOS, let bos { output.append(bos) }
        var text: [UInt8] = []
        var offset = 0 // of `text` in the rendered conversation
        var limit = WordLimit(maxBytes: maxWordBytes, of: "the chat")
        func flush() throws(InferenceError) {
            if !text.isEmpty {
                limit.base = offset
                try encode(text, parseSpecial: false, limit: limit, into: &output)
            }
            offset += text.count
            text.removeAll(keepingCapacity: true)
        }
        for segment in segments {
            switch segment {
            case let .text(t):
                text += t.utf8
            case let .template(t):
                // The template's own text: its special tokens (as llama.cpp finds them with
                // parse_special) become tokens; the rest joins the text around it.
                let bytes = Array(t.utf8)
                for fragment in partition(bytes, parseSpecial: true) {
                    switch fragment {
                    case let .text(range):
                        text += bytes[range]
                    case let .token(id):
                        try flush()
                        output.append(id)
                        offset += tokens[id].utf8.count
                    }
                }
            case let .special(s):
                if let id = id(of: s), attributes[id] != .normal {
                    try flush()
                    output.append(id)
                    offset += s.utf8.count
                } else {
                    text += s.utf8
                }
            }
        }
        try flush()
        // A template that writes BOS itself does not get a second one (as llama.cpp strips it).
        if addSpecial, addsBOS, let bos, output.count > 1, output[0] == bos, output[1] == bos { output.removeFirst() }
        if addSpecial, addsEOS, let eos, output.last != eos { output.append(eos) }
        return output
    }

    /// `encode(_:addSpecial:maxWordBytes:)` without a limit on word length.
    @available(*, deprecated, message: "no limit on word length: use encode(_:addSpecial:maxWordBytes:)")
    public func encode(_ segments: [ChatSegment], addSpecial: Bool = true) -> [Int] {
        // Cannot throw: there is no limit.
        (try? encode(segments, addSpecial: addSpecial, maxWordBytes: .max)) ?? []
    }
}
