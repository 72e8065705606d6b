/// The Unicode classes the pre-tokenizer regexes test, from `Unicode.Scalar.Properties`:
/// `\p{L}` (general category L*), `\p{N}` (N*), `\p{P}` (P*), `\p{M}` (M*) and `\s` (the White_Space property,
/// the same set as llama.cpp's `unicode_set_whitespace`).
struct CodepointClass: OptionSet {
    let rawValue: UInt8
    static let letter = CodepointClass(rawValue: 1)
    static let number = CodepointClass(rawValue: 2)
    static let whitespace = CodepointClass(rawValue: 4)
    static let punctuation = CodepointClass(rawValue: 8)
    static let mark = CodepointClass(rawValue: 16)

    /// ASCII classes, computed once.
    private static let ascii: [CodepointClass] = (0 ..< 128).map { compute(Unicode.Scalar(UInt8($0))) }

    static func of(_ scalar: Unicode.Scalar) -> CodepointClass {
        scalar.value < 128 ? ascii[Int(scalar.value)] : compute(scalar)
    }

    private static func compute(_ scalar: Unicode.Scalar) -> CodepointClass {
        var result: CodepointClass = []
        let properties = scalar.properties
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            result.insert(.letter)
        case .decimalNumber, .letterNumber, .otherNumber:
            result.insert(.number)
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            result.insert(.punctuation)
        case .nonspacingMark, .spacingMark, .enclosingMark:
            result.insert(.mark)
        default:
            break
        }
        if properties.isWhitespace { result.insert(.whitespace) }
        return result
    }
}
