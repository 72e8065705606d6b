/// Finds the earliest occurrence of any of a few stop strings in text that arrives in pieces (one
/// per token), on UTF-8 bytes, without rescanning what came before: for each stop string it keeps
/// only how many of its first bytes the text so far ends with (the state of a Knuth-Morris-Pratt
/// automaton, which stands for the tail of at most `longest stop - 1` bytes that could still begin
/// a match). A piece costs at most `piece length + longest stop length` steps per stop string, however
/// long the output already is.
public struct StopStringMatcher: Sendable {
    /// The stop strings' UTF-8 bytes (empty strings are ignored).
    public let stops: [[UInt8]]
    /// Per stop string, KMP's failure function: `failure[k]` is the length of the longest proper
    /// prefix of `stop[0 ... k]` that is also a suffix of it.
    private let failure: [[Int]]
    /// Per stop string: how many of its first bytes the text so far ends with (< its length).
    private var matched: [Int]
    /// Bytes fed so far: the offset of the next piece in the text.
    public private(set) var offset = 0
    /// Automaton steps taken so far (bytes examined, fallbacks included): the work, which tests bound.
    public private(set) var scanned = 0

    public init(_ stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.utf8) }
        failure = self.stops.map(Self.failureFunction)
        matched = Array(repeating: 0, count: self.stops.count)
    }

    /// The longest stop string, in bytes (0 without any).
    public var longestStop: Int { stops.map(\.count).max() ?? 0 }

    /// Bytes at the end of the text so far that are a proper prefix of some stop string: they may
    /// still become a stop, so a stream holds them back. Always starts at a character boundary (a
    /// stop string begins with a lead byte).
    public var heldBack: Int { matched.max() ?? 0 }

    /// Feeds the next piece of text; returns the offset (in all the text fed) where the earliest
    /// stop string occurrence starts, if one is now complete. Of several, the one that starts first
    /// wins, as a search of the whole text for each stop string would find.
    public mutating func append<Bytes: Collection>(_ piece: Bytes) -> Int? where Bytes.Element == UInt8 {
        var earliest: Int?
        for s in stops.indices {
            let stop = stops[s]
            var state = matched[s]
            var position = offset
            var found: Int?
            for byte in piece {
                scanned += 1
                while state > 0 && stop[state] != byte {
                    state = failure[s][state - 1]
                    scanned += 1
                }
                if stop[state] == byte { state += 1 }
                position += 1
                if state == stop.count {
                    if found == nil { found = position - stop.count }
                    state = failure[s][state - 1]
                }
            }
            matched[s] = state
            if let found, found < earliest ?? .max { earliest = found }
        }
        offset += piece.count
        return earliest
    }

    static func failureFunction(_ stop: [UInt8]) -> [Int] {
        var failure = [Int](repeating: 0, count: stop.count)
        var k = 0
        for i in 1 ..< max(stop.count, 1) {
            while k > 0 && stop[i] != stop[k] { k = failure[k - 1] }
            if stop[i] == stop[k] { k += 1 }
            failure[i] = k
        }
        return failure
    }
}
