/// A context-free grammar over bytes, checked and flattened for `GrammarMatcher`: each rule is a
/// list of alternatives, each alternative a sequence of terminals (one byte from a `ByteSet`) and
/// references to rules, ending with `.end`. Built only by `GrammarBuilder`, which guarantees what
/// the matcher relies on:
///
/// 1. every rule can derive a finite byte string (unproductive alternatives are removed; a root
///    that derives nothing finite is refused), so a generation held to the grammar can always end;
/// 2. no rule can reach itself without consuming a byte (left recursion, `A ::= A`), so expanding
///    a stack always terminates;
/// 3. the number of rules and elements is within `GrammarBuilder.Limits`.
public struct Grammar: Sendable {
    enum Element: Sendable, Equatable {
        /// One byte of `classes[index]`.
        case bytes(Int32)
        /// Rule `index`.
        case rule(Int32)
        /// The end of an alternative.
        case end
    }

    let elements: [Element]
    let classes: [ByteSet]
    /// Per rule, the element index where each alternative starts.
    let alternatives: [[Int32]]
    /// Per rule, its name (for errors and debugging).
    let names: [String]
    let root: Int32

    public var ruleCount: Int { alternatives.count }
    public var elementCount: Int { elements.count }
}
