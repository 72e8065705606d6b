/// Where a `Grammar` stands after some bytes: an incremental pushdown automaton over bytes, as
/// llama.cpp's grammar sampler. The state is a set of stacks (one per way of reading the bytes so
/// far); each stack holds grammar positions, the top being the terminal the next byte must match
/// and the others where to return after the rule being read. Stacks share their tails (a node
/// arena), so a branch costs one node.
///
/// Bounded per byte: at most `maxStacks` stacks are kept (an ambiguous grammar may produce more;
/// the extra ways of reading are dropped, which never lets a byte through that the grammar refuses)
/// and no stack grows deeper than `maxDepth` (deeper nesting is refused). Partial UTF-8 needs
/// nothing special: the grammar is over bytes.
public struct GrammarMatcher: Sendable {
    public static let maxStacks = 128
    public static let maxDepth = 512

    let grammar: Grammar
    /// The node arena: a node is a grammar position and the node below it (-1: the bottom).
    var positions: [Int32] = []
    var parents: [Int32] = []
    var depths: [UInt16] = []
    /// The stacks' top nodes, each at a terminal.
    var stacks: [Int32] = []
    /// The bytes so far are a complete sentence of the grammar.
    public private(set) var isAccepting = false

    public init(_ grammar: Grammar) {
        self.grammar = grammar
        var start: [Int32] = []
        var accepting = false
        for a in grammar.alternatives[Int(grammar.root)] {
            expand(node(a, parent: -1), into: &start, accepting: &accepting)
        }
        stacks = dedupe(start)
        isAccepting = accepting
    }

    /// No byte can follow (the sentence is complete, or, only when a limit dropped every way of
    /// reading, dead).
    public var isFinished: Bool { stacks.isEmpty }

    /// Consumes `bytes` if the grammar allows them all from here (then true); otherwise changes
    /// nothing and returns false.
    public mutating func accept<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        var current = stacks
        var accepting = isAccepting
        let mark = positions.count
        for b in bytes {
            accepting = false
            current = advance(current, b, accepting: &accepting)
            if current.isEmpty && !accepting {
                truncate(to: mark)
                return false
            }
        }
        stacks = current
        isAccepting = accepting
        return true
    }

    /// Whether `bytes` could be consumed from here (nothing changes).
    public mutating func allows<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        let mark = positions.count
        defer { truncate(to: mark) }
        var current = stacks
        var accepting = isAccepting
        for b in bytes {
            accepting = false
            current = advance(current, b, accepting: &accepting)
            if current.isEmpty && !accepting { return false }
        }
        return true
    }

    /// Every byte that may come next.
    public func nextBytes() -> ByteSet { nextBytes(of: stacks) }

    func nextBytes(of stacks: [Int32]) -> ByteSet {
        var set = ByteSet()
        for n in stacks {
            if case let .bytes(c) = grammar.elements[Int(positions[Int(n)])] {
                let cls = grammar.classes[Int(c)]
                set.w0 |= cls.w0
                set.w1 |= cls.w1
                set.w2 |= cls.w2
                set.w3 |= cls.w3
            }
        }
        return set
    }

    // MARK: The automaton

    mutating func node(_ position: Int32, parent: Int32) -> Int32 {
        positions.append(position)
        parents.append(parent)
        depths.append(parent < 0 ? 1 : depths[Int(parent)] &+ 1)
        return Int32(positions.count - 1)
    }

    mutating func truncate(to mark: Int) {
        guard positions.count > mark else { return }
        positions.removeSubrange(mark...)
        parents.removeSubrange(mark...)
        depths.removeSubrange(mark...)
    }

    /// The stacks after `byte` from `stacks` (expanded, deduplicated, at most `maxStacks`);
    /// `accepting` is set when one of them ended the root.
    mutating func advance(_ stacks: [Int32], _ byte: UInt8, accepting: inout Bool) -> [Int32] {
        var next: [Int32] = []
        for n in stacks {
            let position = positions[Int(n)]
            guard case let .bytes(c) = grammar.elements[Int(position)], grammar.classes[Int(c)].contains(byte) else { continue }
            expand(node(position + 1, parent: parents[Int(n)]), into: &next, accepting: &accepting)
        }
        return next.count > 1 ? dedupe(next) : next
    }

    /// Pushes `start`'s rules until every stack's top is a terminal (appended to `out`); a stack
    /// that returns past the root sets `accepting`. Terminates: the builder refused left recursion.
    mutating func expand(_ start: Int32, into out: inout [Int32], accepting: inout Bool) {
        var work: [Int32] = [start]
        while let n = work.popLast() {
            let position = positions[Int(n)]
            switch grammar.elements[Int(position)] {
            case .bytes:
                out.append(n)
            case .end:
                let parent = parents[Int(n)]
                if parent < 0 { accepting = true } else { work.append(parent) }
            case let .rule(r):
                // Where to return; a reference that ends its alternative returns straight to the
                // parent (so right recursion, `chars ::= char chars`, does not deepen the stack).
                var ret = parents[Int(n)]
                if grammar.elements[Int(position) + 1] != .end { ret = node(position + 1, parent: ret) }
                if ret >= 0 && Int(depths[Int(ret)]) >= Self.maxDepth { continue }
                for a in grammar.alternatives[Int(r)] { work.append(node(a, parent: ret)) }
            }
        }
    }

    /// Stacks with the same top position and the same node below are one; at most `maxStacks`.
    func dedupe(_ stacks: [Int32]) -> [Int32] {
        if stacks.count <= 16 {
            // Few stacks (the usual case): a linear scan, no hashing.
            var out: [Int32] = []
            out.reserveCapacity(stacks.count)
            for n in stacks where !out.contains(where: { positions[Int($0)] == positions[Int(n)] && parents[Int($0)] == parents[Int(n)] }) {
                out.append(n)
            }
            return out
        }
        var seen = Set<UInt64>()
        var out: [Int32] = []
        for n in stacks {
            let key = UInt64(UInt32(bitPattern: positions[Int(n)])) << 32 | UInt64(UInt32(bitPattern: parents[Int(n)]))
            if seen.insert(key).inserted {
                out.append(n)
                if out.count == Self.maxStacks { break }
            }
        }
        return out
    }
}
