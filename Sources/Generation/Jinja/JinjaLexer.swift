import Foundation

/// One token inside `{{ }}` or `{% %}`.
enum JinjaToken: Equatable, Sendable {
    case name(String)
    case string(String)
    case int(Int)
    case double(Double)
    /// An operator or punctuation: `+ - * / // % ** ~ == != < > <= >= = ( ) [ ] { } , . : |`.
    case op(String)
}

/// The template split into text and tags, with jinja2's whitespace control applied as Hugging Face
/// configures it for chat templates (`trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline`
/// off): `{%-`/`-%}` strip whitespace, a block tag or comment eats the newline after it and the
/// indentation before it, `{%+` keeps that indentation.
struct JinjaLexer {
    enum Part: Sendable {
        case text(String, line: Int)
        case output([JinjaToken], line: Int)
        case statement([JinjaToken], line: Int)
    }

    /// A tag before whitespace control is applied.
    private struct Tag {
        enum Kind { case output, statement, comment }
        var kind: Kind
        var tokens: [JinjaToken]
        var line: Int
        var stripBefore: Bool // `{{-`, `{%-`, `{#-`
        var keepIndent: Bool // `{%+`
        var stripAfter: Bool // `-}}`, `-%}`, `-#}`
        var keepNewline = false // `+%}`
    }

    static func parts(_ source: String) throws(JinjaError) -> [Part] {
        var bytes = Array(source.utf8)
        if bytes.last == UInt8(ascii: "\n") {
            bytes.removeLast()
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        }
        var texts: [(start: Int, end: Int, line: Int)] = []
        var tags: [Tag] = []
        var i = 0, line = 1, textStart = 0, textLine = 1
        let n = bytes.count
        while i < n {
            let c = bytes[i]
            if c == UInt8(ascii: "\n") { line += 1 }
            guard c == UInt8(ascii: "{"), i + 1 < n else { i += 1; continue }
            let d = bytes[i + 1]
            let kind: Tag.Kind
            switch d {
            case UInt8(ascii: "{"): kind = .output
            case UInt8(ascii: "%"): kind = .statement
            case UInt8(ascii: "#"): kind = .comment
            default: i += 1; continue
            }
            texts.append((textStart, i, textLine))
            var tag = Tag(kind: kind, tokens: [], line: line, stripBefore: false, keepIndent: false, stripAfter: false)
            var j = i + 2
            if j < n, bytes[j] == UInt8(ascii: "-") { tag.stripBefore = true; j += 1 } else if j < n, bytes[j] == UInt8(ascii: "+") { tag.keepIndent = true; j += 1 }
            if kind == .comment {
                // Up to the first `#}`.
                var end = j
                while end + 1 < n, !(bytes[end] == UInt8(ascii: "#") && bytes[end + 1] == UInt8(ascii: "}")) {
                    if bytes[end] == UInt8(ascii: "\n") { line += 1 }
                    end += 1
                }
                guard end + 1 < n else { throw JinjaError(.syntax, "a comment '{#' is never closed", line: tag.line) }
                tag.stripAfter = end > j && bytes[end - 1] == UInt8(ascii: "-")
                i = end + 2
            } else {
                let close = kind == .output ? UInt8(ascii: "}") : UInt8(ascii: "%")
                var closed = false
                while j < n {
                    let b = bytes[j]
                    if b == UInt8(ascii: "\n") { line += 1; j += 1; continue }
                    if b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") || b == UInt8(ascii: "\r") { j += 1; continue }
                    // The end: `}}` / `%}`, optionally `-}}` / `+%}`.
                    if (b == UInt8(ascii: "-") || b == UInt8(ascii: "+")) && j + 2 < n && bytes[j + 1] == close && bytes[j + 2] == UInt8(ascii: "}") {
                        tag.stripAfter = b == UInt8(ascii: "-")
                        tag.keepNewline = b == UInt8(ascii: "+")
                        j += 3; closed = true; break
                    }
                    if b == close, j + 1 < n, bytes[j + 1] == UInt8(ascii: "}") {
                        j += 2; closed = true; break
                    }
                    tag.tokens.append(try token(bytes, &j, line: line))
                }
                guard closed else {
                    throw JinjaError(.syntax, "a tag '\(kind == .output ? "{{" : "{%")' is never closed", line: tag.line)
                }
                i = j
            }
            tags.append(tag)
            textStart = i
            textLine = line
        }
        texts.append((textStart, n, textLine))

        // Whitespace control on the text around each tag.
        var pieces = texts.map { Array(bytes[$0.start ..< $0.end]) }
        var lineStart = [Bool](repeating: false, count: pieces.count)
        lineStart[0] = true
        for (k, tag) in tags.enumerated() {
            // After the tag: text k + 1.
            if tag.stripAfter {
                while let f = pieces[k + 1].first, isSpace(f) { pieces[k + 1].removeFirst() }
            } else if tag.keepNewline {
                // `+%}`: no trim_blocks for this tag.
            } else if tag.kind != .output, pieces[k + 1].first == UInt8(ascii: "\n") {
                pieces[k + 1].removeFirst()
                lineStart[k + 1] = true
            } else if tag.kind != .output, pieces[k + 1].starts(with: [13, 10]) {
                pieces[k + 1].removeFirst(2)
                lineStart[k + 1] = true
            }
        }
        for (k, tag) in tags.enumerated() {
            // Before the tag: text k.
            if tag.stripBefore {
                while let l = pieces[k].last, isSpace(l) { pieces[k].removeLast() }
            } else if tag.kind != .output, !tag.keepIndent {
                let lastNewline = pieces[k].lastIndex(of: UInt8(ascii: "\n"))
                let from = lastNewline.map { $0 + 1 } ?? 0
                if lastNewline != nil || lineStart[k], from < pieces[k].count,
                   pieces[k][from...].allSatisfy({ isSpace($0) }) {
                    pieces[k].removeSubrange(from...)
                }
            }
        }
        var parts: [Part] = []
        for k in pieces.indices {
            if !pieces[k].isEmpty { parts.append(.text(String(decoding: pieces[k], as: UTF8.self), line: texts[k].line)) }
            if k < tags.count {
                switch tags[k].kind {
                case .output: parts.append(.output(tags[k].tokens, line: tags[k].line))
                case .statement: parts.append(.statement(tags[k].tokens, line: tags[k].line))
                case .comment: break
                }
            }
        }
        return parts
    }

    static func isSpace(_ b: UInt8) -> Bool {
        b == 32 || b == 9 || b == 10 || b == 13 || b == 11 || b == 12
    }

    static let operators = ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}",
                            ",", ".", ":", "|"].map { Array($0.utf8) }

    private static func token(_ b: [UInt8], _ j: inout Int, line: Int) throws(JinjaError) -> JinjaToken {
        let c = b[j]
        func isIdent(_ x: UInt8) -> Bool { (x >= 97 && x <= 122) || (x >= 65 && x <= 90) || x == 95 || (x >= 48 && x <= 57) }
        if isIdent(c) && !(c >= 48 && c <= 57) {
            let s = j
            while j < b.count, isIdent(b[j]) { j += 1 }
            return .name(String(decoding: b[s ..< j], as: UTF8.self))
        }
        if c >= 48 && c <= 57 {
            let s = j
            var isFloat = false
            while j < b.count, (b[j] >= 48 && b[j] <= 57) || b[j] == 95 { j += 1 }
            if j + 1 < b.count, b[j] == UInt8(ascii: "."), b[j + 1] >= 48 && b[j + 1] <= 57 {
                isFloat = true
                j += 1
                while j < b.count, b[j] >= 48 && b[j] <= 57 { j += 1 }
            }
            if j < b.count, b[j] == UInt8(ascii: "e") || b[j] == UInt8(ascii: "E") {
                var k = j + 1
                if k < b.count, b[k] == UInt8(ascii: "+") || b[k] == UInt8(ascii: "-") { k += 1 }
                if k < b.count, b[k] >= 48 && b[k] <= 57 {
                    isFloat = true
                    j = k
                    while j < b.count, b[j] >= 48 && b[j] <= 57 { j += 1 }
                }
            }
            let text = String(decoding: b[s ..< j], as: UTF8.self).replacingOccurrences(of: "_", with: "")
            if isFloat, let d = Double(text) { return .double(d) }
            guard let i = Int(text) else { throw JinjaError(.syntax, "the number \(text.prefix(40)) is out of range", line: line) }
            return .int(i)
        }
        if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") {
            var out: [UInt8] = []
            j += 1
            while j < b.count, b[j] != c {
                if b[j] == UInt8(ascii: "\\"), j + 1 < b.count {
                    let e = b[j + 1]
                    j += 2
                    switch e {
                    case UInt8(ascii: "n"): out.append(10)
                    case UInt8(ascii: "t"): out.append(9)
                    case UInt8(ascii: "r"): out.append(13)
                    case UInt8(ascii: "b"): out.append(8)
                    case UInt8(ascii: "f"): out.append(12)
                    case UInt8(ascii: "0"): out.append(0)
                    case UInt8(ascii: "u"), UInt8(ascii: "x"):
                        let count = e == UInt8(ascii: "u") ? 4 : 2
                        guard j + count <= b.count, let v = UInt32(String(decoding: b[j ..< j + count], as: UTF8.self), radix: 16),
                              let scalar = Unicode.Scalar(v) else {
                            throw JinjaError(.syntax, "a bad \\\(Character(Unicode.Scalar(e))) escape in a string", line: line)
                        }
                        out += Array(String(Character(scalar)).utf8)
                        j += count
                    case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(e)
                    case 10: break // a backslash-newline joins lines
                    default: out += [UInt8(ascii: "\\"), e] // Python keeps unknown escapes
                    }
                } else {
                    out.append(b[j])
                    j += 1
                }
            }
            guard j < b.count else { throw JinjaError(.syntax, "a string is never closed", line: line) }
            j += 1
            return .string(String(decoding: out, as: UTF8.self))
        }
        for op in operators where j + op.count <= b.count && b[j ..< j + op.count].elementsEqual(op) {
            j += op.count
            return .op(String(decoding: op, as: UTF8.self))
        }
        throw JinjaError(.syntax, "unexpected character '\(String(decoding: [c], as: UTF8.self))' in a tag", line: line)
    }
}
