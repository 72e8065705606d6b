/// A linear pre-check of a request body before any JSON decoder sees it: nesting depth and the
/// number of values. A small body can otherwise be expensive to decode (`[[[[...` thousands deep
/// recurses once per level; `[0,0,0,...` a megabyte long makes a quarter of a million values), so
/// both are bounded here, in one pass, with the byte offset of the violation in the error.
public enum JSONShape {
    public struct Limits: Sendable {
        /// Deepest nesting of arrays and objects.
        public var depth = 32
        /// Most values (scalars, arrays and objects) in the document.
        public var values = 200_000
        public init(depth: Int = 32, values: Int = 200_000) {
            self.depth = depth
            self.values = values
        }
    }

    /// Throws if `bytes` nest deeper than `limits.depth` or hold more than `limits.values` values.
    /// Strings are skipped (escapes included); anything else about the document is the decoder's
    /// to check.
    public static func check(_ bytes: [UInt8], limits: Limits = Limits()) throws(APIError) {
        var depth = 0, values = 0
        var i = 0
        var inValue = false  // inside a bare scalar (number, true, false, null)
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "\""):
                inValue = false
                values += 1
                i += 1
                while i < n && bytes[i] != UInt8(ascii: "\"") {
                    i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1
                }
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                inValue = false
                values += 1
                depth += 1
                guard depth <= limits.depth else {
                    throw APIError(400, "the request body nests arrays and objects deeper than \(limits.depth) levels (at byte \(i))",
                                   code: "json_too_deep")
                }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                inValue = false
                depth -= 1
            case UInt8(ascii: ","), UInt8(ascii: ":"), UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"):
                inValue = false
            default:
                if !inValue {
                    values += 1
                    inValue = true
                }
            }
            guard values <= limits.values else {
                throw APIError(400, "the request body holds more than \(limits.values) JSON values (at byte \(i))", code: "json_too_large")
            }
            i += 1
        }
    }
}
