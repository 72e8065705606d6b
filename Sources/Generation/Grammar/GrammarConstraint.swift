/// What a generation is held to (`GenerationOptions.grammar`): a grammar, and the trie of the
/// vocabulary it masks. Immutable and shared; each sequence gets its own `TokenConstraint`.
public struct GrammarConstraint: Sendable {
    public let grammar: Grammar
    public let trie: TokenTrie

    public init(grammar: Grammar, trie: TokenTrie) {
        self.grammar = grammar
        self.trie = trie
    }
}

/// One sequence's grammar state at the token level: which tokens may come next.
///
/// A token is allowed when the grammar accepts all of its bytes from the current state (a token
/// that ends inside a UTF-8 character is fine: the grammar is over bytes); a token without bytes
/// (a control token) never is; an end-of-generation token only when the output so far is complete.
/// `allows` checks one token (a few bytes); `mask` walks the vocabulary's trie once (shared prefixes
/// once), with a small cache of masks per grammar state, since states recur (inside a string, between
/// array items).
public struct TokenConstraint: Sendable {
    public private(set) var matcher: GrammarMatcher
    public let trie: TokenTrie
    var cache: [[Int32]: [UInt64]] = [:]
    /// Masks computed (cache misses), for tests and measurements.
    public private(set) var masksComputed = 0
    static let cacheSize = 32

    public init(_ constraint: GrammarConstraint) {
        matcher = GrammarMatcher(constraint.grammar)
        trie = constraint.trie
    }

    public var isAccepting: Bool { matcher.isAccepting }
    /// Nothing more can be generated under the grammar.
    public var isFinished: Bool { matcher.isFinished }

    public mutating func allows(_ token: Int) -> Bool {
        guard token >= 0, token < trie.pieces.count else { return false }
        if trie.endOfGeneration.contains(token) { return matcher.isAccepting }
        let piece = trie.pieces[token]
        return !piece.isEmpty && matcher.allows(piece)
    }

    /// The allowed tokens as a bitset over the vocabulary (bit `id % 64` of word `id / 64`).
    public mutating func mask() -> [UInt64] {
        let key = matcher.stateKey
        var bits: [UInt64]
        if let cached = cache[key] {
            bits = cached
        } else {
            bits = [UInt64](repeating: 0, count: (trie.pieces.count + 63) / 64)
            matcher.allowedTokens(trie, into: &bits)
            masksComputed += 1
            if cache.count >= Self.cacheSize { cache.removeAll(keepingCapacity: true) }
            cache[key] = bits
        }
        if matcher.isAccepting {
            for id in trie.endOfGeneration where id < trie.pieces.count { bits[id / 64] |= 1 << UInt64(id % 64) }
        }
        return bits
    }

    /// Advances over `token`; false (and no change) if the grammar refuses it (an end-of-generation
    /// token changes nothing and is accepted when the output is complete).
    public mutating func accept(_ token: Int) -> Bool {
        guard token >= 0, token < trie.pieces.count else { return false }
        if trie.endOfGeneration.contains(token) { return matcher.isAccepting }
        let piece = trie.pieces[token]
        return !piece.isEmpty && matcher.accept(piece)
    }
}

extension GrammarMatcher {
    /// The state's content (every stack's positions, top to bottom), for the mask cache.
    var stateKey: [Int32] {
        var key: [Int32] = []
        for top in stacks {
            var n = top
            while n >= 0 {
                key.append(positions[Int(n)])
                n = parents[Int(n)]
            }
            key.append(-1)
        }
        return key
    }

    /// Sets in `mask` the bit of every token of `trie` whose bytes the grammar allows from here: a
    /// depth-first walk of the trie that advances the stacks one byte per trie node and prunes a
    /// subtree at the first byte refused. The arena is restored afterwards.
    mutating func allowedTokens(_ trie: TokenTrie, into mask: inout [UInt64]) {
        struct Frame {
            var node: Int32
            var stacks: [Int32]
            /// The bytes any of `stacks` accepts: children with another byte are skipped at once.
            var bytes: ByteSet
            var child: Int32
            var mark: Int
        }
        let start = positions.count
        var frames = [Frame(node: 0, stacks: stacks, bytes: nextBytes(of: stacks), child: 1, mark: start)]
        while !frames.isEmpty {
            let top = frames.count - 1
            let child = frames[top].child
            guard child < trie.subtreeEnd[Int(frames[top].node)] else {
                truncate(to: frames[top].mark)
                frames.removeLast()
                continue
            }
            frames[top].child = trie.subtreeEnd[Int(child)]
            guard frames[top].bytes.contains(trie.bytes[Int(child)]) else { continue }
            let mark = positions.count
            var accepting = false
            let next = advance(frames[top].stacks, trie.bytes[Int(child)], accepting: &accepting)
            if next.isEmpty && !accepting {
                truncate(to: mark)
                continue
            }
            let first = Int(trie.firstToken[Int(child)])
            for k in first ..< first + Int(trie.tokenCount[Int(child)]) {
                let id = Int(trie.tokenOrder[k])
                mask[id / 64] |= 1 << UInt64(id % 64)
            }
            if !next.isEmpty && trie.subtreeEnd[Int(child)] > child + 1 {
                frames.append(Frame(node: child, stacks: next, bytes: nextBytes(of: next), child: child + 1, mark: mark))
            } else {
                truncate(to: mark)
            }
        }
        truncate(to: start)
    }
}
