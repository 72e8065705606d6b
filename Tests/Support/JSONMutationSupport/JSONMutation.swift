import Foundation

/// The walk of the field mutation tests (`RequestFieldMutationTests`, `EvidenceVectorTests`): every
/// path into a JSON document as `JSONSerialization` reads it (keys and indexes, the root excluded),
/// and the document with the value at one path replaced.
public enum JSONMutation {
    public static func paths(_ value: Any, _ prefix: [Any] = []) -> [[Any]] {
        var out: [[Any]] = []
        if let o = value as? [String: Any] {
            for (k, v) in o { out.append(prefix + [k]); out += paths(v, prefix + [k]) }
        } else if let a = value as? [Any] {
            for (i, v) in a.enumerated() { out.append(prefix + [i]); out += paths(v, prefix + [i]) }
        }
        return out
    }

    public static func replacing(_ value: Any, at path: ArraySlice<Any>, with new: Any) -> Any {
        guard let head = path.first else { return new }
        if var o = value as? [String: Any], let k = head as? String {
            o[k] = replacing(o[k] as Any, at: path.dropFirst(), with: new)
            return o
        }
        if var a = value as? [Any], let i = head as? Int {
            a[i] = replacing(a[i], at: path.dropFirst(), with: new)
            return a
        }
        return value
    }

    /// `a.b.0.c`, for messages.
    public static func name(_ path: [Any]) -> String { path.map { "\($0)" }.joined(separator: ".") }
}
