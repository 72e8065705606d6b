import Crypto
import Foundation

/// What a receipt's `responseSHA256` is the SHA-256 of (its UTF-8 bytes).
///
/// - One choice without `logprobs` (the common case, and every receipt before this format): the
///   generated text itself.
/// - Otherwise (`n` > 1, log-probabilities asked for, or tool calls in the answer), this text, one
///   line each, `\n`-terminated:
///   ```
///   securenode.response.v2
///   choice <index> <finish_reason> <SHA-256 hex of the choice's text>
///   token <hex of the token string's UTF-8> <logprob> [<hex of an alternative's UTF-8>:<logprob> ...]
///   ```
///   tool_call <hex of the id's UTF-8> <hex of the function name's UTF-8> <hex of the arguments' UTF-8>
///   ```
///   choices in index order, each followed by its `tool_call` lines (a chat answer that called
///   tools: the text is then the message's content, empty when null) and its `token` lines (only
///   with logprobs) in order;
///   `<logprob>` is the 8 hex digits of the IEEE-754 single-precision bits of the reported value
///   (so that a client recomputes it from the JSON number exactly: `struct.pack('>f', x).hex()`),
///   alternatives written `<hex>:<logprob>` and sorted as strings (bytewise). The token strings are those
///   of the response (`token`, or the keys of a completion's `top_logprobs`).
///
/// `securenode verify-receipt` rebuilds this text from a saved response (JSON or event stream).
public enum ResponseTranscript {
    public struct Token: Sendable {
        public var token: String
        public var logprob: Float
        public var top: [(token: String, logprob: Float)]
        public init(token: String, logprob: Float, top: [(token: String, logprob: Float)]) {
            self.token = token
            self.logprob = logprob
            self.top = top
        }
    }

    public struct Choice: Sendable {
        public var index: Int
        public var text: String
        public var finishReason: String
        /// nil: log-probabilities were not asked for.
        public var logprobs: [Token]?
        /// The answer's tool calls (id, function name, arguments), in order.
        public var toolCalls: [(id: String, name: String, arguments: String)]
        public init(index: Int, text: String, finishReason: String, logprobs: [Token]?,
                    toolCalls: [(id: String, name: String, arguments: String)] = []) {
            self.index = index
            self.text = text
            self.finishReason = finishReason
            self.logprobs = logprobs
            self.toolCalls = toolCalls
        }
    }

    public static let header = "securenode.response.v2"

    public static func text(_ choices: [Choice]) -> String {
        if choices.count == 1, choices[0].logprobs == nil, choices[0].toolCalls.isEmpty { return choices[0].text }
        func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
        func bits(_ x: Float) -> String { String(format: "%08x", x.bitPattern) }
        var out = header + "\n"
        for choice in choices.sorted(by: { $0.index < $1.index }) {
            out += "choice \(choice.index) \(choice.finishReason) \(hex(SHA256.hash(data: Array(choice.text.utf8))))\n"
            for call in choice.toolCalls {
                out += "tool_call \(hex(call.id.utf8)) \(hex(call.name.utf8)) \(hex(call.arguments.utf8))\n"
            }
            for t in choice.logprobs ?? [] {
                let top = t.top.map { "\(hex($0.token.utf8)):\(bits($0.logprob))" }.sorted()
                out += (["token", hex(t.token.utf8), bits(t.logprob)] + top).joined(separator: " ") + "\n"
            }
        }
        return out
    }
}
