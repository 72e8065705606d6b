/// The vocabulary's token bytes (`Tokenizer.piece`) in a byte trie, built once per tokenizer, so
/// that masking the vocabulary with a grammar walks each shared prefix once instead of once per
/// token. Nodes are in preorder: node i's subtree is `i ..< subtreeEnd[i]`, its first child i + 1,
/// the next sibling of child c is `subtreeEnd[c]`. Tokens with no bytes (control tokens) are not
/// in the trie: a grammar never allows them (end-of-generation tokens are decided apart).
public final class TokenTrie: Sendable {
    /// Each token's bytes, by id.
    public let pieces: [[UInt8]]
    /// The end-of-generation tokens.
    public let endOfGeneration: Set<Int>
    let bytes: [UInt8]
    let subtreeEnd: [Int32]
    /// Tokens whose bytes end at node i: `tokenOrder[firstToken[i] ..< firstToken[i] + tokenCount[i]]`.
    let firstToken: [Int32]
    let tokenCount: [UInt16]
    let tokenOrder: [Int32]

    public var vocabularySize: Int { pieces.count }
    public var nodeCount: Int { bytes.count }

    public init(tokenizer: Tokenizer) {
        let pieces = (0 ..< tokenizer.count).map { tokenizer.piece($0) }
        self.pieces = pieces
        endOfGeneration = tokenizer.endOfGeneration
        let order = pieces.indices.filter { !pieces[$0].isEmpty }.sorted { pieces[$0].lexicographicallyPrecedes(pieces[$1]) }
        // Node 0 is the root (no byte).
        var bytes: [UInt8] = [0]
        var subtreeEnd: [Int32] = [0]
        var firstToken: [Int32] = [0]
        var tokenCount: [UInt16] = [0]
        var path: [Int] = [0] // node of each depth on the current path
        var previous: [UInt8] = []
        for (k, id) in order.enumerated() {
            let piece = pieces[id]
            var common = 0
            while common < min(previous.count, piece.count) && previous[common] == piece[common] { common += 1 }
            while path.count > common + 1 {
                subtreeEnd[path.removeLast()] = Int32(bytes.count)
            }
            for b in piece[common...] {
                bytes.append(b)
                subtreeEnd.append(0)
                firstToken.append(0)
                tokenCount.append(0)
                path.append(bytes.count - 1)
            }
            let end = path[path.count - 1]
            if tokenCount[end] == 0 { firstToken[end] = Int32(k) }
            tokenCount[end] += 1
            previous = piece
        }
        while let n = path.popLast() { subtreeEnd[n] = Int32(bytes.count) }
        self.bytes = bytes
        self.subtreeEnd = subtreeEnd
        self.firstToken = firstToken
        self.tokenCount = tokenCount
        tokenOrder = order.map { Int32($0) }
    }
}
