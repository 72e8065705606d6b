/// Splits text into words before BPE, as llama.cpp's `unicode_regex_split` does for the model's
/// `tokenizer.ggml.pre`. The regexes are matched by hand-written scanners (ports of llama.cpp's
/// own custom GPT-2 and Llama 3 matchers, and simple ones for character-class regexes), with
/// Unicode classes from `Unicode.Scalar.Properties`.
///
/// As in llama.cpp, the regexes of a variant apply in turn: each splits every piece the previous
/// one produced into its matches and the text between them (kept as pieces too).
///
/// | `tokenizer.ggml.pre` | regexes (llama.cpp `llm_tokenizer_bpe`) |
/// |---|---|
/// | `gpt2`, `gpt-2`, `phi-2`, `roberta-bpe`, `mpt`, `olmo`, `jais` | GPT-2: `'s\|'t\|'re\|'ve\|'m\|'ll\|'d\| ?\p{L}+\| ?\p{N}+\| ?[^\s\p{L}\p{N}]+\|\s+(?!\S)` |
/// | `smollm`, `starcoder`, `refact`, `command-r`, `codeshell`, `exaone`, `minerva` | `\p{N}`, then GPT-2 |
/// | `llama3`, `llama-v3`, `llama-bpe`, `dbrx`, `smaug-bpe` | Llama 3: `(?i:'s\|'t\|'re\|'ve\|'m\|'ll\|'d)\|[^\r\n\p{L}\p{N}]?\p{L}+\|\p{N}{1,3}\| ?[^\s\p{L}\p{N}]+[\r\n]*\|\s*[\r\n]+\|\s+(?!\S)\|\s+` (and whole words found in the vocabulary skip the merges) |
/// | `qwen2`, `deepseek-r1-qwen` | Qwen2: Llama 3 with `\p{N}` (one digit) for `\p{N}{1,3}` (and no whole-word shortcut) |
/// | `qwen35` | Qwen2 with `[\p{L}\p{M}]+` for `\p{L}+` and `[^\s\p{L}\p{M}\p{N}]` for `[^\s\p{L}\p{N}]` |
/// | `falcon` | ``[\p{P}\$\+<=>\^~\|`]+``, GPT-2, `[0-9][0-9][0-9]` |
/// | `deepseek-coder` | `[\r\n]`, `\s?\p{L}+`, `\s?\p{P}+`, `[一-龥ࠀ-一가-퟿]+`, `\p{N}` |
/// | `default` or absent | `[\p{P}\$\+<=>\^~\|]+`, GPT-2, `\p{N}+`, `[0-9][0-9][0-9]` |
public enum PreTokenizer: String, Sendable {
    case gpt2
    case smollm
    case llama3
    case qwen2
    case qwen35
    case falcon
    case deepseekCoder = "deepseek-coder"
    case standard = "default"

    /// The variant for a `tokenizer.ggml.pre` value; nil when it is not one of the table's names.
    public init?(name: String?) {
        guard let name else {
            self = .standard
            return
        }
        switch name {
        case "default": self = .standard
        case "gpt2", "gpt-2", "phi-2", "roberta-bpe", "mpt", "olmo", "jais": self = .gpt2
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva": self = .smollm
        case "llama3", "llama-v3", "llama-bpe", "dbrx", "smaug-bpe": self = .llama3
        case "qwen2", "deepseek-r1-qwen": self = .qwen2
        case "falcon": self = .falcon
        case "qwen35": self = .qwen35
        case "deepseek-coder": self = .deepseekCoder
        default: return nil
        }
    }

    /// Whether a word that is itself a token skips the merges (llama.cpp's `ignore_merges`).
    var ignoresMerges: Bool { self == .llama3 }

    /// The words of `text`, in order; their concatenation is `text`.
    public func split(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var lengths = scalars.isEmpty ? [] : [scalars.count]
        switch self {
        case .gpt2:
            lengths = Self.gpt2(scalars, lengths)
        case .smollm:
            lengths = Self.runs(scalars, lengths, maxRun: 1) { CodepointClass.of($0).contains(.number) }
            lengths = Self.gpt2(scalars, lengths)
        case .llama3:
            lengths = Self.llama3(scalars, lengths)
        case .qwen2:
            lengths = Self.llama3(scalars, lengths, maxDigits: 1)
        case .qwen35:
            lengths = Self.llama3(scalars, lengths, maxDigits: 1, marksAreLetters: true)
        case .falcon:
            lengths = Self.runs(scalars, lengths) { Self.isDefaultPunctuation($0) || $0 == "`" }
            lengths = Self.gpt2(scalars, lengths)
            lengths = Self.runs(scalars, lengths, exactRun: 3) { $0.value >= 0x30 && $0.value <= 0x39 }
        case .deepseekCoder:
            lengths = Self.runs(scalars, lengths, maxRun: 1) { $0 == "\r" || $0 == "\n" }
            lengths = Self.prefixedRuns(scalars, lengths) { CodepointClass.of($0).contains(.letter) }
            lengths = Self.prefixedRuns(scalars, lengths) { CodepointClass.of($0).contains(.punctuation) }
            lengths = Self.runs(scalars, lengths) {
                (0x4E00 ... 0x9FA5).contains($0.value) || (0x0800 ... 0x4E00).contains($0.value) || (0xAC00 ... 0xD7FF).contains($0.value)
            }
            lengths = Self.runs(scalars, lengths, maxRun: 1) { CodepointClass.of($0).contains(.number) }
        case .standard:
            lengths = Self.runs(scalars, lengths) { Self.isDefaultPunctuation($0) }
            lengths = Self.gpt2(scalars, lengths)
            lengths = Self.runs(scalars, lengths) { CodepointClass.of($0).contains(.number) }
            lengths = Self.runs(scalars, lengths, exactRun: 3) { $0.value >= 0x30 && $0.value <= 0x39 }
        }
        var words: [String] = []
        words.reserveCapacity(lengths.count)
        var start = 0
        for length in lengths {
            var word = String.UnicodeScalarView()
            word.append(contentsOf: scalars[start ..< start + length])
            words.append(String(word))
            start += length
        }
        return words
    }

    /// `[\p{P}\$\+<=>\^~\|]`.
    static func isDefaultPunctuation(_ s: Unicode.Scalar) -> Bool {
        if CodepointClass.of(s).contains(.punctuation) { return true }
        switch s {
        case "$", "+", "<", "=", ">", "^", "~", "|": return true
        default: return false
        }
    }

    /// A regex of one character class repeated: `[class]+` (default), `[class]` (`maxRun: 1`), or
    /// `[class]{n}` taken greedily left to right (`exactRun: n`, a shorter remainder is unmatched).
    /// Matches and the text between them become pieces.
    static func runs(_ s: [Unicode.Scalar], _ lengths: [Int], maxRun: Int = .max, exactRun: Int? = nil,
                     _ inClass: (Unicode.Scalar) -> Bool) -> [Int] {
        var out: [Int] = []
        var start = 0
        for length in lengths {
            let end = start + length
            var gapStart = start
            var pos = start
            while pos < end {
                guard inClass(s[pos]) else { pos += 1; continue }
                var runEnd = pos
                while runEnd < end, inClass(s[runEnd]) { runEnd += 1 }
                if let n = exactRun {
                    // Matches of exactly n inside the run; a remainder < n is left to the gap.
                    var p = pos
                    while runEnd - p >= n {
                        if p > gapStart { out.append(p - gapStart) }
                        out.append(n)
                        p += n
                        gapStart = p
                    }
                    pos = runEnd
                    continue
                }
                var p = pos
                while p < runEnd {
                    let matchEnd = min(runEnd, p + min(maxRun, runEnd - p))
                    if p > gapStart { out.append(p - gapStart) }
                    out.append(matchEnd - p)
                    gapStart = matchEnd
                    p = matchEnd
                }
                pos = runEnd
            }
            if end > gapStart { out.append(end - gapStart) }
            start = end
        }
        return out
    }

    /// `\s?[class]+`: an optional whitespace character, then a run of the class (leftmost,
    /// greedy). Matches and the text between them become pieces.
    static func prefixedRuns(_ s: [Unicode.Scalar], _ lengths: [Int], _ inClass: (Unicode.Scalar) -> Bool) -> [Int] {
        var out: [Int] = []
        var start = 0
        for length in lengths {
            let end = start + length
            var gapStart = start
            var pos = start
            while pos < end {
                var matchStart = -1
                if inClass(s[pos]) {
                    matchStart = pos
                } else if CodepointClass.of(s[pos]).contains(.whitespace), pos + 1 < end, inClass(s[pos + 1]) {
                    matchStart = pos
                    pos += 1
                }
                guard matchStart >= 0 else { pos += 1; continue }
                while pos < end, inClass(s[pos]) { pos += 1 }
                if matchStart > gapStart { out.append(matchStart - gapStart) }
                out.append(pos - matchStart)
                gapStart = pos
            }
            if end > gapStart { out.append(end - gapStart) }
            start = end
        }
        return out
    }

    /// llama.cpp's `unicode_regex_split_custom_gpt2`.
    static func gpt2(_ s: [Unicode.Scalar], _ lengths: [Int]) -> [Int] {
        var out: [Int] = []
        var start = 0
        for length in lengths {
            let begin = start, end = start + length
            start = end
            func flags(_ p: Int) -> CodepointClass? { p >= begin && p < end ? CodepointClass.of(s[p]) : nil }
            func scalar(_ p: Int) -> Unicode.Scalar? { p >= begin && p < end ? s[p] : nil }
            var previous = begin
            func add(_ e: Int) {
                if e > previous { out.append(e - previous) }
                previous = e
            }
            var pos = begin
            while pos < end {
                let c = s[pos]
                // 's|'t|'re|'ve|'m|'ll|'d
                if c == "'", pos + 1 < end {
                    let next = s[pos + 1]
                    if next == "s" || next == "t" || next == "m" || next == "d" {
                        pos += 2; add(pos); continue
                    }
                    if pos + 2 < end {
                        let next2 = s[pos + 2]
                        if (next == "r" && next2 == "e") || (next == "v" && next2 == "e") || (next == "l" && next2 == "l") {
                            pos += 3; add(pos); continue
                        }
                    }
                }
                let isSpace = c == " "
                let f2 = isSpace ? flags(pos + 1) : flags(pos)
                // <space>?\p{L}+  <space>?\p{N}+  <space>?[^\s\p{L}\p{N}]+
                if let f2 {
                    if f2.contains(.letter) || f2.contains(.number) {
                        let cls: CodepointClass = f2.contains(.letter) ? .letter : .number
                        if isSpace { pos += 1 }
                        while flags(pos)?.contains(cls) == true { pos += 1 }
                        add(pos)
                        continue
                    }
                    if f2.isDisjoint(with: [.whitespace, .letter, .number]) {
                        if isSpace { pos += 1 }
                        while let f = flags(pos), f.isDisjoint(with: [.whitespace, .letter, .number]) { pos += 1 }
                        add(pos)
                        continue
                    }
                }
                var spaces = 0
                while flags(pos + spaces)?.contains(.whitespace) == true { spaces += 1 }
                // \s+(?!\S)
                if spaces > 1, scalar(pos + spaces) != nil {
                    pos += spaces - 1; add(pos); continue
                }
                // \s+
                if spaces > 0 {
                    pos += spaces; add(pos); continue
                }
                pos += 1
                add(pos)
            }
        }
        return out
    }

    /// llama.cpp's `unicode_regex_split_custom_llama3`; with `maxDigits: 1`, Qwen2's regex (which
    /// llama.cpp runs through `std::regex`; it differs from Llama 3's only in `\p{N}` for `\p{N}{1,3}`).
    /// With `marksAreLetters`, Qwen3.5's: `\p{M}` joins `\p{L}` in the letter runs and leaves the
    /// "other" class.
    static func llama3(_ s: [Unicode.Scalar], _ lengths: [Int], maxDigits: Int = 3, marksAreLetters: Bool = false) -> [Int] {
        let word: CodepointClass = marksAreLetters ? [.letter, .mark] : .letter
        let notOther: CodepointClass = marksAreLetters ? [.whitespace, .letter, .mark, .number] : [.whitespace, .letter, .number]
        var out: [Int] = []
        var start = 0
        for length in lengths {
            let begin = start, end = start + length
            start = end
            func flags(_ p: Int) -> CodepointClass? { p >= begin && p < end ? CodepointClass.of(s[p]) : nil }
            func scalar(_ p: Int) -> Unicode.Scalar? { p >= begin && p < end ? s[p] : nil }
            func lower(_ p: Int) -> Unicode.Scalar? {
                guard let c = scalar(p) else { return nil }
                let mapped = c.properties.lowercaseMapping.unicodeScalars
                return mapped.count == 1 ? mapped.first : c
            }
            var previous = begin
            func add(_ e: Int) {
                if e > previous { out.append(e - previous) }
                previous = e
            }
            var pos = begin
            while pos < end {
                let c = s[pos]
                let f = CodepointClass.of(c)
                // (?i:'s|'t|'re|'ve|'m|'ll|'d)
                if c == "'", pos + 1 < end {
                    let next = lower(pos + 1)
                    if next == "s" || next == "t" || next == "m" || next == "d" {
                        pos += 2; add(pos); continue
                    }
                    if pos + 2 < end {
                        let next2 = lower(pos + 2)
                        if (next == "r" && next2 == "e") || (next == "v" && next2 == "e") || (next == "l" && next2 == "l") {
                            pos += 3; add(pos); continue
                        }
                    }
                }
                // [^\r\n\p{L}\p{N}]?\p{L}+ (qwen35: [^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+)
                if !(c == "\r" || c == "\n" || f.contains(.number)) {
                    if !f.isDisjoint(with: word) || flags(pos + 1).map({ !$0.isDisjoint(with: word) }) == true {
                        pos += 1
                        while let g = flags(pos), !g.isDisjoint(with: word) { pos += 1 }
                        add(pos)
                        continue
                    }
                }
                // \p{N}{1,3}
                if f.contains(.number) {
                    var first = pos
                    while flags(pos)?.contains(.number) == true {
                        pos += 1
                        if pos - first >= maxDigits {
                            add(pos)
                            first = pos
                        }
                    }
                    add(pos)
                    continue
                }
                // <space>?[^\s\p{L}\p{N}]+[\r\n]*
                let f2 = c == " " ? flags(pos + 1) : f
                if f2 == nil || f2!.isDisjoint(with: notOther) {
                    if c == " " { pos += 1 }
                    while f2 != nil, let g = flags(pos), g.isDisjoint(with: notOther) { pos += 1 }
                    while let r = scalar(pos), r == "\r" || r == "\n" { pos += 1 }
                    add(pos)
                    continue
                }
                var spaces = 0
                var lastLineEnd = 0
                while flags(pos + spaces)?.contains(.whitespace) == true {
                    if let r = scalar(pos + spaces), r == "\r" || r == "\n" { lastLineEnd = pos + spaces + 1 }
                    spaces += 1
                }
                // \s*[\r\n]+
                if lastLineEnd > 0 {
                    pos = lastLineEnd; add(pos); continue
                }
                // \s+(?!\S)
                if spaces > 1, scalar(pos + spaces) != nil {
                    pos += spaces - 1; add(pos); continue
                }
                // \s+
                if spaces > 0 {
                    pos += spaces; add(pos); continue
                }
                pos += 1
                add(pos)
            }
        }
        return out
    }
}
