import Attestation
import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import Generation
import ModelSigning
import NIOCore
import Testing
@testable import NodeService

/// logprobs, penalties, n > 1, /tokenize and /detokenize through the routes on the real model, and
/// the receipts that cover them.
extension ServiceRouteTests {
    static func post(_ client: some TestClientProtocol, _ uri: String, _ body: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body)) { $0 }
    }

    static func choices(_ object: [String: Any]) throws -> [[String: Any]] {
        try #require(object["choices"] as? [[String: Any]])
    }

    static func receipt(_ object: [String: Any]) throws -> Receipt {
        try JSONDecoder().decode(Receipt.self, from: JSONSerialization.data(withJSONObject: try #require(object["receipt"])))
    }

    /// `ResponseTranscript` rebuilt from a chat response's JSON, as a client (or verify-receipt) does.
    static func chatTranscript(_ object: [String: Any]) throws -> String {
        let choices = try choices(object).map { c in
            let lp = (c["logprobs"] as? [String: Any])?["content"] as? [[String: Any]]
            return ResponseTranscript.Choice(
                index: c["index"] as! Int, text: (c["message"] as! [String: Any])["content"] as! String,
                finishReason: c["finish_reason"] as! String,
                logprobs: lp.map { entries in
                    entries.map { e in
                        ResponseTranscript.Token(token: e["token"] as! String, logprob: Float(e["logprob"] as! Double),
                                                 top: (e["top_logprobs"] as! [[String: Any]]).map { ($0["token"] as! String, Float($0["logprob"] as! Double)) })
                    }
                })
        }
        return ResponseTranscript.text(choices)
    }

    static func sha(_ text: String) -> String { hexString(Array(SHA256.hash(data: Array(text.utf8)))) }

    @Test(.enabled(if: runModelTests)) func answersChatLogprobsInOpenAIsShapeCoveredByTheReceipt() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let body = #"{"model": "m", "messages": [{"role": "user", "content": "Name a color."}], "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 3}"#
        try await node.app().test(.live) { client in
            var plain: [[String: Any]] = []
            do {
                let response = try await Self.post(client, "/v1/chat/completions", body)
                #expect(response.status == .ok)
                let object = try Self.json(response.body)
                let choice = try #require(try Self.choices(object).first)
                let content = try #require((choice["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
                let usage = try #require(object["usage"] as? [String: Any])
                #expect(content.count == usage["completion_tokens"] as? Int)
                var text: [UInt8] = []
                for entry in content {
                    let top = try #require(entry["top_logprobs"] as? [[String: Any]])
                    #expect(top.count == 3)
                    let values = top.map { $0["logprob"] as! Double }
                    #expect(values == values.sorted(by: >))
                    // Greedy: the chosen token is the most likely one, with the same log-probability.
                    #expect(entry["token"] as? String == top[0]["token"] as? String)
                    #expect(entry["logprob"] as? Double == values[0])
                    #expect((entry["logprob"] as! Double) <= 0)
                    text += (entry["bytes"] as! [Int]).map { UInt8($0) }
                }
                let message = try #require((choice["message"] as? [String: Any])?["content"] as? String)
                if choice["finish_reason"] as? String == "length" { #expect(String(decoding: text, as: UTF8.self) == message) }
                let receipt = try Self.receipt(object)
                #expect(receipt.responseSHA256 == Self.sha(try Self.chatTranscript(object)))
                #expect(receipt.responseSHA256 != Self.sha(message), "the v2 transcript, not the text alone")
                plain = content
            }
            // Streamed: the same entries, spread over the chunks.
            let streamed = body.replacingOccurrences(of: #""logprobs": true"#, with: #""logprobs": true, "stream": true"#)
            do {
                let response = try await Self.post(client, "/v1/chat/completions", streamed)
                #expect(response.status == .ok)
                var entries: [[String: Any]] = []
                for line in String(buffer: response.body).split(separator: "\n") where line.hasPrefix("data: {") {
                    let chunk = try #require(JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any])
                    for c in try Self.choices(chunk) {
                        entries += ((c["logprobs"] as? [String: Any])?["content"] as? [[String: Any]]) ?? []
                    }
                }
                #expect(entries.map { $0["token"] as! String } == plain.map { $0["token"] as! String })
                #expect(entries.map { $0["logprob"] as! Double } == plain.map { $0["logprob"] as! Double })
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func answersCompletionLogprobsInTheLegacyShape() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let body = #"{"model": "m", "prompt": "The capital of France is", "max_tokens": 5, "temperature": 0, "logprobs": 2}"#
        try await node.app().test(.live) { client in
            do {
                let response = try await Self.post(client, "/v1/completions", body)
                #expect(response.status == .ok)
                let choice = try #require(try Self.choices(try Self.json(response.body)).first)
                let lp = try #require(choice["logprobs"] as? [String: Any])
                let tokens = try #require(lp["tokens"] as? [String])
                let values = try #require(lp["token_logprobs"] as? [Double])
                let tops = try #require(lp["top_logprobs"] as? [[String: Double]])
                let offsets = try #require(lp["text_offset"] as? [Int])
                #expect(tokens.count == 5 && values.count == 5 && tops.count == 5 && offsets.count == 5)
                #expect(offsets.first == 0)
                #expect(tops.allSatisfy { (1 ... 2).contains($0.count) })
                for (value, top) in zip(values, tops) { #expect(value == top.values.max()) }
                #expect(tokens.joined() == choice["text"] as? String)
            }
            do {
                let response = try await Self.post(client, "/v1/completions", #"{"model": "m", "prompt": "Hi", "logprobs": true}"#)
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func generatesNChoicesWithSeedPlusIndex() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        @Sendable func request(n: Int, seed: Int) -> String {
            #"{"model": "m", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 1, "top_p": 1, "n": \#(n), "seed": \#(seed)}"#
        }
        try await node.app().test(.live) { client in
            var texts: [String] = []
            do {
                let response = try await Self.post(client, "/v1/completions", request(n: 2, seed: 5))
                #expect(response.status == .ok)
                let object = try Self.json(response.body)
                let choices = try Self.choices(object)
                #expect(choices.map { $0["index"] as? Int } == [0, 1])
                texts = choices.map { $0["text"] as! String }
                let usage = try #require(object["usage"] as? [String: Any])
                #expect(usage["completion_tokens"] as? Int == 16, "both choices' tokens (max_tokens each, unless one ended early)")
                let transcript = ResponseTranscript.text(choices.map {
                    .init(index: $0["index"] as! Int, text: $0["text"] as! String, finishReason: $0["finish_reason"] as! String, logprobs: nil)
                })
                #expect(try Self.receipt(object).responseSHA256 == Self.sha(transcript))
            }
            for (i, seed) in [5, 6].enumerated() {
                do {
                let response = try await Self.post(client, "/v1/completions", request(n: 1, seed: seed))
                    #expect(try Self.choices(try Self.json(response.body)).first?["text"] as? String == texts[i])
                }
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func refusesNBeyondTheCap() async throws {
        let node = try await Node { $0.maxN = 3 }
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            for n in [4, 0, -1] {
                do {
                let response = try await Self.post(client, "/v1/completions", #"{"model": "m", "prompt": "Hi", "n": \#(n)}"#)
                    #expect(response.status == .badRequest)
                    #expect(String(buffer: response.body).contains(#""param":"n""#))
                }
            }
            // Three choices never fit in two slots with no queue: a 400 naming the limits, not a 429 forever.
            let tight = try await Node { $0.maxN = 3; $0.queueDepth = 0 }
            defer { Task { await tight.stop() } }
            try await tight.app().test(.live) { tightClient in
                let response = try await Self.post(tightClient, "/v1/completions", #"{"model": "m", "prompt": "Hi", "n": 3}"#)
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("limits.parallel"))
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func refusesTopLogprobsBeyondTwenty() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let chat = #"{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "#
        try await node.app().test(.live) { client in
            for extra in [#""logprobs": true, "top_logprobs": 21}"#, #""logprobs": true, "top_logprobs": -1}"#, #""top_logprobs": 2}"#,
                          #""logprobs": "yes"}"#] {
                do {
                let response = try await Self.post(client, "/v1/chat/completions", chat + extra)
                    #expect(response.status == .badRequest, "\(extra)")
                }
            }
            do {
                let response = try await Self.post(client, "/v1/completions", #"{"model": "m", "prompt": "Hi", "logprobs": 21}"#)
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func appliesPenaltiesAndRefusesThemBeyondTwo() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let base = #"{"model": "m", "prompt": "1, 2, 1, 2, 1, 2, 1, 2,", "max_tokens": 12, "temperature": 0"#
        try await node.app().test(.live) { client in
            var plain = "", penalized = ""
            plain = try Self.choices(try Self.json(try await Self.post(client, "/v1/completions", base + "}").body))[0]["text"] as! String
            do {
                let response = try await Self.post(client, "/v1/completions", base + #", "frequency_penalty": 2, "presence_penalty": 2}"#)
                #expect(response.status == .ok)
                penalized = try Self.choices(try Self.json(response.body))[0]["text"] as! String
            }
            #expect(plain != penalized)
            for extra in [#", "presence_penalty": 2.5}"#, #", "frequency_penalty": -3}"#, #", "presence_penalty": "1"}"#] {
                do { let response = try await Self.post(client, "/v1/completions", base + extra); #expect(response.status == .badRequest) }
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func tokenizesAndDetokenizesAsTheCompletionsPromptIs() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let text = "The capital of France is Paris. Ünïcödé ✓"
        let expected = node.scheduler.tokenizer.encode(text, addSpecial: true, parseSpecial: true)
        try await node.app().test(.live) { client in
            let body = try String(decoding: JSONSerialization.data(withJSONObject: ["content": text, "add_special": true]), as: UTF8.self)
            do {
                let response = try await Self.post(client, "/tokenize", body)
                #expect(response.status == .ok)
                #expect(try Self.json(response.body)["tokens"] as? [Int] == expected)
            }
            let pieces = try String(decoding: JSONSerialization.data(withJSONObject: ["content": text, "with_pieces": true]), as: UTF8.self)
            do {
                let response = try await Self.post(client, "/tokenize", pieces)
                let tokens = try #require(try Self.json(response.body)["tokens"] as? [[String: Any]])
                #expect(tokens.compactMap { $0["id"] as? Int } == node.scheduler.tokenizer.encode(text, addSpecial: false, parseSpecial: true))
                // A piece that splits a character comes as its byte values (as llama-server sends it).
                let bytes = tokens.flatMap { t -> [UInt8] in
                    if let s = t["piece"] as? String { return Array(s.utf8) }
                    return (t["piece"] as? [Int] ?? [-1]).map { UInt8(clamping: $0) }
                }
                #expect(bytes == Array(text.utf8))
                #expect(tokens.contains { $0["piece"] is [Int] }, "this text has characters split between tokens")
            }
            let ids = try String(decoding: JSONSerialization.data(withJSONObject: ["tokens": node.scheduler.tokenizer.encode(text, addSpecial: false)]), as: UTF8.self)
            do {
                let response = try await Self.post(client, "/detokenize", ids)
                #expect(response.status == .ok)
                #expect(try Self.json(response.body)["content"] as? String == text)
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func survivesDetokenizeOfOutOfVocabularyIds() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            for bad in ["[1, 999999999]", "[1, -1]", "[1, 2.5]", #"[1, "2"]"#, "[1, 1e300]", "7"] {
                do {
                let response = try await Self.post(client, "/detokenize", #"{"tokens": \#(bad)}"#)
                    #expect(response.status == .badRequest, "\(bad)")
                    #expect(String(buffer: response.body).contains("tokens"))
                }
            }
            do { let response = try await Self.post(client, "/detokenize", "{}"); #expect(response.status == .badRequest) }
            try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test(.enabled(if: runModelTests)) func survivesHugeTokenizeBody() async throws {
        let node = try await Node { $0.maxBodyBytes = 64 * 1024 }
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            let huge = #"{"content": ""# + String(repeating: "ab ", count: 40_000) + #""}"#
            do { let response = try await Self.post(client, "/tokenize", huge); #expect(response.status == .contentTooLarge) }
            let longWord = #"{"content": ""# + String(repeating: "a", count: 60_000) + #""}"#
            do {
                let response = try await Self.post(client, "/tokenize", longWord)
                #expect(response.status == .badRequest)
                #expect((try? Self.errorCode(response.body)) == "word_too_long")
            }
            let deep = #"{"content": "#  + String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000) + "}"
            do { let response = try await Self.post(client, "/tokenize", deep); #expect(response.status == .badRequest) }
            try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test(.enabled(if: runModelTests)) func refusesTokenizeWithoutAnAPIKey() async throws {
        let node = try await Node { $0.apiKeyDigests = [Array(SHA256.hash(data: Array("key-one".utf8)))] }
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            do { let response = try await Self.post(client, "/tokenize", #"{"content": "Hi"}"#); #expect(response.status == .unauthorized) }
            do { let response = try await Self.post(client, "/detokenize", #"{"tokens": [1]}"#); #expect(response.status == .unauthorized) }
            do { let response = try await Self.post(client, "/tokenize", #"{"content": "Hi"}"#, headers: [.authorization: "Bearer key-one"]); #expect(response.status == .ok) }
        }
    }

    /// The other choices copy choice 0's evaluated prompt: the same tokens and log-probabilities,
    /// bit for bit, as a sequence that evaluated the prompt itself (a prompt of several chunks).
    @Test(.enabled(if: runModelTests)) func copiesTheFirstChoicesPromptBitForBit() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let prompt = node.scheduler.tokenizer.encode(String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 20), addSpecial: true)
        #expect(prompt.count > 128)
        var options = GenerationOptions(maxTokens: 12, sampling: SamplingParameters(temperature: 0.9, topK: 0, topP: 1, minP: 0, seed: 3))
        options.logprobs = 2
        func finished(_ s: InferenceScheduler.Submission) async -> InferenceScheduler.Completion? {
            for await event in s.events { if case let .finished(done) = event { return done } }
            return nil
        }
        let before = node.scheduler.promptsShared
        let leader = try node.scheduler.submit(.init(promptIDs: prompt, options: options, sharesPrompt: true))
        var second = options
        second.sampling.seed = 4
        let follower = try node.scheduler.submit(.init(promptIDs: prompt, options: second), sharingPromptOf: leader)
        let shared = try #require(await finished(follower))
        _ = await finished(leader)
        #expect(node.scheduler.promptsShared == before + 1)
        let alone = try #require(await finished(try node.scheduler.submit(.init(promptIDs: prompt, options: second))))
        #expect(node.scheduler.promptsShared == before + 1)
        #expect(shared.text == alone.text)
        #expect(shared.logprobs == alone.logprobs)
        #expect(shared.completionTokens == alone.completionTokens)
    }
}
