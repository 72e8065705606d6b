/// Builds a `Grammar` rule by rule, within limits, then checks it (`build`): the caller is a
/// compiler of untrusted input (a JSON schema in a request), so every size is bounded here and
/// named in the error when exceeded.
public struct GrammarBuilder: Sendable {
    public struct Limits: Sendable, Equatable {
        /// Most rules.
        public var rules: Int
        /// Most elements (terminals, rule references and ends of alternatives) over all rules.
        public var elements: Int
        public init(rules: Int = 4096, elements: Int = 65536) {
            self.rules = rules
            self.elements = elements
        }
    }

    /// One symbol of an alternative.
    public enum Symbol: Sendable, Equatable {
        /// These bytes, in order.
        case literal([UInt8])
        /// One byte of the set.
        case bytes(ByteSet)
        /// A rule, by the index `declare` or `rule` returned.
        case rule(Int)

        /// The UTF-8 of `text`.
        public static func text(_ text: String) -> Symbol { .literal(Array(text.utf8)) }
    }

    public let limits: Limits
    var names: [String] = []
    var definitions: [[[Symbol]]?] = []
    var elementCount = 0

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    public var ruleCount: Int { names.count }

    /// A new rule, to define later (for recursion).
    public mutating func declare(_ name: String) throws(InferenceError) -> Int {
        guard names.count < limits.rules else {
            throw InferenceError(.grammarRefused, "the grammar needs more than \(limits.rules) rules (limit: grammar rules)")
        }
        names.append(name)
        definitions.append(nil)
        return names.count - 1
    }

    /// Defines a declared rule.
    public mutating func define(_ rule: Int, _ alternatives: [[Symbol]]) throws(InferenceError) {
        precondition(definitions[rule] == nil, "rule \(names[rule]) is defined twice")
        var count = 0
        for alternative in alternatives {
            count += 1
            for symbol in alternative {
                if case let .literal(bytes) = symbol { count += bytes.count } else { count += 1 }
            }
        }
        guard elementCount + count <= limits.elements else {
            throw InferenceError(.grammarRefused, "the grammar needs more than \(limits.elements) elements (limit: grammar elements)")
        }
        elementCount += count
        definitions[rule] = alternatives
    }

    /// Declares and defines a rule.
    public mutating func rule(_ name: String, _ alternatives: [[Symbol]]) throws(InferenceError) -> Int {
        let r = try declare(name)
        try define(r, alternatives)
        return r
    }

    /// The checked, flattened grammar (see `Grammar` for what is guaranteed). Refuses a root that
    /// derives no finite string and left recursion, naming the rule.
    public func build(root: Int) throws(InferenceError) -> Grammar {
        let n = names.count
        var rules: [[[Symbol]]] = []
        for (i, d) in definitions.enumerated() {
            guard let d else { preconditionFailure("rule \(names[i]) is declared but not defined") }
            rules.append(d)
        }
        func refs(_ alt: [Symbol]) -> [Int] { alt.compactMap { if case let .rule(r) = $0 { r } else { nil } } }

        // 1. Nullable rules (derive the empty string).
        var nullable = [Bool](repeating: false, count: n)
        func symbolNullable(_ s: Symbol) -> Bool {
            switch s {
            case let .literal(bytes): bytes.isEmpty
            case .bytes: false
            case let .rule(r): nullable[r]
            }
        }
        var changed = true
        while changed {
            changed = false
            for r in 0 ..< n where !nullable[r] && rules[r].contains(where: { $0.allSatisfy(symbolNullable) }) {
                nullable[r] = true
                changed = true
            }
        }

        // 2. Left recursion: r -> s when s can come first in r (after nullable symbols only); no cycles.
        var leftEdges = [[Int]](repeating: [], count: n)
        for r in 0 ..< n {
            for alt in rules[r] {
                for s in alt {
                    if case let .rule(t) = s { leftEdges[r].append(t) }
                    if !symbolNullable(s) { break }
                }
            }
        }
        var color = [UInt8](repeating: 0, count: n) // 0 new, 1 on the path, 2 done
        for start in 0 ..< n where color[start] == 0 {
            var path: [(rule: Int, next: Int)] = [(start, 0)]
            color[start] = 1
            while let top = path.last {
                if top.next < leftEdges[top.rule].count {
                    path[path.count - 1].next += 1
                    let t = leftEdges[top.rule][top.next]
                    if color[t] == 1 {
                        throw InferenceError(.grammarRefused,
                                             "the schema refers to itself without consuming input (\(names[t]) can begin with itself)")
                    }
                    if color[t] == 0 {
                        color[t] = 1
                        path.append((t, 0))
                    }
                } else {
                    color[top.rule] = 2
                    path.removeLast()
                }
            }
        }

        // 3. Productive rules (derive a finite byte string), to a fixpoint; drop the other alternatives.
        var productive = [Bool](repeating: false, count: n)
        changed = true
        while changed {
            changed = false
            for r in 0 ..< n where !productive[r] {
                if rules[r].contains(where: { refs($0).allSatisfy { productive[$0] } }) {
                    productive[r] = true
                    changed = true
                }
            }
        }
        guard productive[root] else {
            throw InferenceError(.grammarRefused, "the schema admits no finite value (\(names[root]) can only recurse forever)")
        }
        for r in 0 ..< n { rules[r] = rules[r].filter { refs($0).allSatisfy { productive[$0] } } }

        // 4. Flatten.
        var elements: [Grammar.Element] = []
        elements.reserveCapacity(elementCount)
        var classes: [ByteSet] = []
        var classIndex: [ByteSet: Int32] = [:]
        func terminal(_ set: ByteSet) -> Grammar.Element {
            if let i = classIndex[set] { return .bytes(i) }
            let i = Int32(classes.count)
            classes.append(set)
            classIndex[set] = i
            return .bytes(i)
        }
        var alternatives: [[Int32]] = []
        for r in 0 ..< n {
            var starts: [Int32] = []
            for alt in rules[r] {
                starts.append(Int32(elements.count))
                for s in alt {
                    switch s {
                    case let .literal(bytes): for b in bytes { elements.append(terminal(ByteSet(byte: b))) }
                    case let .bytes(set): elements.append(terminal(set))
                    case let .rule(t): elements.append(.rule(Int32(t)))
                    }
                }
                elements.append(.end)
            }
            alternatives.append(starts)
        }
        return Grammar(elements: elements, classes: classes, alternatives: alternatives, names: names, root: Int32(root))
    }
}
