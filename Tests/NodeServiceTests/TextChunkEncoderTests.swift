import Attestation
import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import NodeService

/// The streamed text chunks written from one template per stream (`TextChunkEncoder`) parse to
/// what `JSONEncoder` writes for the same chunk, whatever the text; and a streamed completion's
/// chunks still add up to the text its receipt covers.
@Suite struct TextChunkEncoderTests {
    struct Chunk: Encodable {
        struct Delta: Encodable { let content: String }
        struct Choice: Encodable {
            let index: Int
            let delta: Delta
            let logprobs: String?
            let finish_reason: String?
            func encode(to encoder: any Encoder) throws {
                enum K: String, CodingKey { case index, delta, logprobs, finish_reason }
                var c = encoder.container(keyedBy: K.self)
                try c.encode(index, forKey: .index)
                try c.encode(delta, forKey: .delta)
                try c.encodeNil(forKey: .logprobs)
                try c.encodeNil(forKey: .finish_reason)
            }
        }
        let id: String
        let model: String
        let choices: [Choice]
    }

    static func chunk(_ text: String, model: String = "m") -> Chunk {
        Chunk(id: "chatcmpl-1", model: model, choices: [.init(index: 0, delta: .init(content: text), logprobs: nil, finish_reason: nil)])
    }

    /// The JSON value, written again with sorted keys (so that key order does not matter).
    static func parsed(_ bytes: some Sequence<UInt8>) throws -> Data {
        try JSONSerialization.data(withJSONObject: JSONSerialization.jsonObject(with: Data(bytes)), options: [.sortedKeys])
    }

    static let texts: [String] = (0 ..< 0x80).map { String(Character(Unicode.Scalar(UInt8($0)))) } + [
        "", " the", "a\"b\\c/d\ne\rf\tg\u{8}h\u{C}", "é", "€ 😀", "\u{2028}\u{2029}", "\u{FFFD}", "\u{7F}\u{85}\u{A0}",
        "e\u{301}", "🇫🇷", "👩‍👩‍👧", "</script>", "\u{0}\u{1F}",
    ]

    @Test func escapingRoundTripsOnThisPlatform() {
        #expect(TextChunkEncoder.escapingRoundTrips)
    }

    @Test func eventsParseAsTheEncodersChunkForEveryText() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let chunks = try #require(TextChunkEncoder { try encoder.encode(Self.chunk($0)) })
        for text in Self.texts {
            let event = Array(chunks.event(text).readableBytesView)
            #expect(event.starts(with: Array("data: ".utf8)) && event.suffix(2) == [10, 10], "\(text.debugDescription)")
            let fast = try Self.parsed(event.dropFirst(6).dropLast(2))
            let slow = try Self.parsed(try encoder.encode(Self.chunk(text)))
            #expect(fast == slow, "\(text.debugDescription)")
        }
    }

    /// A client's `model` string that holds the marker: the template cannot be cut safely, and the
    /// stream falls back to encoding every chunk.
    @Test func refusesATemplateWhoseMarkerAppearsTwice() {
        let encoder = JSONEncoder()
        #expect(TextChunkEncoder { try encoder.encode(Self.chunk($0, model: "x securenode-text-marker-7f3a9c")) } == nil)
    }
}

extension ServiceRouteTests {
    /// Streamed chat and completions without logprobs (the template path): every event parses, and
    /// the texts concatenated are the text the receipt covers.
    @Test(.enabled(if: runModelTests)) func streamedTextChunksAddUpToTheReceiptsText() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            for (uri, body) in [("/v1/completions", #"{"model": "m", "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "stream": true}"#),
                                ("/v1/chat/completions", #"{"model": "m", "messages": [{"role": "user", "content": "Say \"hi\" \\ and a newline"}], "max_tokens": 24, "temperature": 0, "stream": true}"#)] {
                let response = try await Self.post(client, uri, body)
                #expect(response.status == .ok)
                var text = ""
                var receipt: [String: Any]?
                for line in String(buffer: response.body).split(separator: "\n") where line.hasPrefix("data: {") {
                    let chunk = try #require(JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any])
                    for c in try Self.choices(chunk) {
                        text += (c["text"] as? String) ?? ((c["delta"] as? [String: Any])?["content"] as? String) ?? ""
                    }
                    if let r = chunk["receipt"] as? [String: Any] { receipt = r }
                }
                #expect(!text.isEmpty)
                #expect(try Self.receipt(["receipt": try #require(receipt)]).responseSHA256 == Self.sha(text))
            }
        }
    }
}
