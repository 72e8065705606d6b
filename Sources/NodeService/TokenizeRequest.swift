import Foundation
import Generation

/// `POST /tokenize` and `POST /detokenize`, as llama-server names them, parsed and answered on the
/// request worker (their cost is the client's: bounded by the body limit, the JSON shape check,
/// `limits.max_word_bytes` and the linear-time tokenizer).
///
/// - `/tokenize`: `{"content": "...", "add_special": false, "parse_special": true, "with_pieces": false}`
///   → `{"tokens": [ids]}`, or with pieces `{"tokens": [{"id": 1, "piece": "..."}]}` (a piece that is
///   not valid UTF-8 on its own is its byte values, as llama-server does). With `add_special` and
///   `parse_special` the ids are those `/v1/completions` (and `securenode generate`) use for the text.
/// - `/detokenize`: `{"tokens": [ids]}` → `{"content": "..."}` (control tokens as their text); every
///   id is checked against the vocabulary (400 naming the first bad one).
extension CompletionRequestParser {
    public func tokenize(_ body: [UInt8]) throws(APIError) -> [UInt8] {
        let f = try object(body)
        guard case let .string(content)? = f["content"] else {
            throw APIError(400, f["content"] == nil ? "'content' is required" : "'content' must be a string", param: "content")
        }
        let addSpecial = try bool(f, "add_special") ?? false
        let parseSpecial = try bool(f, "parse_special") ?? true
        let withPieces = try bool(f, "with_pieces") ?? false
        let ids: [Int]
        do {
            ids = try tokenizer.encode(content, addSpecial: addSpecial, parseSpecial: parseSpecial, maxWordBytes: settings.maxWordBytes)
        } catch {
            throw APIError(400, "content: \(error.reason) (limits.max_word_bytes)", param: "content", code: "word_too_long")
        }
        struct Piece: Encodable {
            let id: Int
            let bytes: [UInt8]
            enum Keys: String, CodingKey { case id, piece }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: Keys.self)
                try c.encode(id, forKey: .id)
                if let text = String(validating: bytes, as: UTF8.self) { try c.encode(text, forKey: .piece) } else { try c.encode(bytes, forKey: .piece) }
            }
        }
        struct IDs: Encodable { let tokens: [Int] }
        struct Pieces: Encodable { let tokens: [Piece] }
        return try Self.encode(withPieces
            ? AnyEncodable(Pieces(tokens: ids.map { Piece(id: $0, bytes: tokenizer.piece($0, special: true)) }))
            : AnyEncodable(IDs(tokens: ids)))
    }

    public func detokenize(_ body: [UInt8]) throws(APIError) -> [UInt8] {
        let f = try object(body)
        guard case let .array(items)? = f["tokens"] else {
            throw APIError(400, f["tokens"] == nil ? "'tokens' is required" : "'tokens' must be an array of token ids", param: "tokens")
        }
        var ids: [Int] = []
        ids.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case let .number(n) = item, n == n.rounded(), n >= 0, n < Double(tokenizer.count) else {
                throw APIError(400, "tokens[\(i)] must be a token id in 0..<\(tokenizer.count)", param: "tokens")
            }
            ids.append(Int(n))
        }
        struct Content: Encodable { let content: String }
        return try Self.encode(AnyEncodable(Content(content: tokenizer.decode(ids, special: true))))
    }

    struct AnyEncodable: Encodable {
        let value: any Encodable
        init(_ value: any Encodable) { self.value = value }
        func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
    }

    static func encode(_ value: AnyEncodable) throws(APIError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { throw APIError(500, "cannot encode the response", type: "server_error") }
        return Array(data)
    }
}
