import Attestation
import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import Generation
import Inference
import ModelFormat
import ModelSigning
import NIOCore
import NodeHTTP
import Testing
@testable import NodeService

/// The OpenAI routes in process, on the real model, through a live Hummingbird server on a free
/// loopback port: no TPM (the routes that need one are tested in TPMTests and end to end).
@Suite(.serialized) struct ServiceRouteTests {
    static let modelPath: String? = {
        if let path = ProcessInfo.processInfo.environment["SECURENODE_TEST_MODEL"], !path.isEmpty { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("models/cache/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf").path
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()
    static var runModelTests: Bool { modelPath != nil || ProcessInfo.processInfo.environment["SECURENODE_REQUIRE_TOOLS"] == "1" }

    static let loaded: Result<(GGUFFile, LlamaModel, Tokenizer), any Error>? = modelPath.map { path in
        Result {
            let file = try GGUFFile.parse(GGUFBuffer.read(contentsOf: path))
            return (file, try LlamaModel(file: file), try Tokenizer(file: file))
        }
    }

    /// A node's OpenAI side on the real model: settings, scheduler (started), worker, receipts.
    struct Node {
        let settings: ServiceSettings
        let routes: OpenAIRoutes
        let scheduler: InferenceScheduler
        let metrics: NodeMetrics
        let key: P256.Signing.PrivateKey

        init(promptCache: Bool = true, chatTemplate: String? = nil, configure: (inout ServiceSettings) -> Void = { _ in }) async throws {
            let (file, model, tokenizer) = try #require(ServiceRouteTests.loaded, "model not found: set SECURENODE_TEST_MODEL").get()
            var settings = ServiceSettings(modelID: "m")
            settings.contextLength = 2048
            settings.parallel = 2
            settings.queueDepth = 2
            configure(&settings)
            let engine = LlamaEngine(model: model, backend: CPUBackend(threads: 2), contextCapacity: settings.contextLength, batchCapacity: 64,
                                     prefill: settings.exact ? .exact : .default)
            metrics = NodeMetrics()
            scheduler = try InferenceScheduler(engine: engine, tokenizer: tokenizer,
                                               limits: .init(parallel: settings.parallel, queueDepth: settings.queueDepth,
                                                             perKeyLimit: settings.perKeyConcurrency, batchTokens: 64, promptCache: promptCache,
                                                             keepsAnswers: promptCache && settings.keepsAnswers,
                                                             decodesAsPromptRows: settings.resolvedDecoding == .promptRows),
                                               contextLength: settings.contextLength, drainTimeout: .seconds(2), observer: metrics)
            scheduler.start()
            key = P256.Signing.PrivateKey()
            let receipts = ReceiptIssuer(key: key, reference: .init(akName: "00", pcr: 14, receiptKeySHA256: Receipt.keyDigest(key.publicKey),
                                                                    evidenceURL: "http://127.0.0.1/v1/attestation"),
                                         modelID: settings.modelID, manifestRoot: String(repeating: "ab", count: 32), profile: "test")
            let readiness = Readiness()
            await readiness.set(ready: true, reason: "test model")
            let template = try ChatTemplate.forModel(source: chatTemplate ?? file.string("tokenizer.chat_template"), tokenizer: tokenizer)
            routes = OpenAIRoutes(settings: settings, parser: CompletionRequestParser(settings: settings, tokenizer: tokenizer, chatTemplate: template),
                                  scheduler: scheduler, worker: RequestWorker(threads: 2, queueDepth: 8), metrics: metrics,
                                  receipts: receipts, readiness: readiness)
            self.settings = settings
        }

        func app() -> some ApplicationProtocol {
            Application(router: ServiceApplication.router(nodeRoutes: nil, openAI: routes, settings: settings), server: ServiceApplication.http1,
                        configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        }

        func stop() async { await scheduler.drain(deadline: .zero) }
    }

    static func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    static func errorCode(_ buffer: ByteBuffer) throws -> String? {
        ((try json(buffer))["error"] as? [String: Any])?["code"] as? String
    }

    @Test(.enabled(if: runModelTests)) func answersWithAReceiptOverTheExactBodyAndText() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let body = #"{"model": "m", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}"#
        try await node.app().test(.live) { client in
            try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .ok)
                let object = try Self.json(response.body)
                let text = try #require(((object["choices"] as? [[String: Any]])?.first)?["text"] as? String)
                let receiptJSON = try JSONSerialization.data(withJSONObject: try #require(object["receipt"]))
                let receipt = try JSONDecoder().decode(Receipt.self, from: receiptJSON)
                #expect(receipt.requestSHA256 == hexString(Array(SHA256.hash(data: Array(body.utf8)))))
                #expect(receipt.responseSHA256 == hexString(Array(SHA256.hash(data: Array(text.utf8)))))
                let signature = try P256.Signing.ECDSASignature(derRepresentation: try #require(Data(base64Encoded: receipt.signature)))
                #expect(node.key.publicKey.isValidSignature(signature, for: receipt.signedBytes))
                #expect(response.headers[OpenAIRoutes.receiptHeader] != nil)
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func refusesDeepJSONNestingWithANamedError() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let body = "{\"model\": \"m\", \"prompt\": " + String(repeating: "[", count: 50_000) + String(repeating: "]", count: 50_000) + "}"
        try await node.app().test(.live) { client in
            try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .badRequest)
                #expect((try? Self.errorCode(response.body)) == "json_too_deep")
            }
            // The node still answers.
            try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .ok) }
        }
    }

    /// The attack that froze the node: prompts that are one long word. Refused with a 400 naming
    /// the limit, while another client's request on another connection is answered.
    @Test(.enabled(if: runModelTests)) func survivesLongWordPrompt() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let word = String(repeating: "a", count: 200_000)
        try await node.app().test(.live) { client in
            let port = try #require(client.port)
            let attackers = try (0 ..< 4).map { _ in try RawClient(port: port) }
            let attack = #"{"model": "m", "prompt": ""# + word + #"", "max_tokens": 1}"#
            for attacker in attackers {
                attacker.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: \(attack.utf8.count)\r\n\r\n\(attack)")
            }
            try await client.execute(uri: "/v1/completions", method: .post,
                                     body: ByteBuffer(string: #"{"model": "m", "prompt": "Hello", "max_tokens": 2}"#)) { response in
                #expect(response.status == .ok)
            }
            for attacker in attackers {
                let answer = attacker.read(4096)
                #expect(answer.hasPrefix("HTTP/1.1 400"))
                #expect(answer.contains("word_too_long") && answer.contains("8192"))
                attacker.close()
            }
            let chat = #"{"model": "m", "messages": [{"role": "user", "content": "hi "# + word + #""}], "max_tokens": 1}"#
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: chat)) { response in
                #expect(response.status == .badRequest)
                #expect((try? Self.errorCode(response.body)) == "word_too_long")
            }
        }
    }

    /// 150,000 token ids in a small body: refused by the pre-check, never decoded value by value.
    @Test(.enabled(if: runModelTests)) func refusesHugeTokenIDArrayBeforeDecoding() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let body = #"{"model": "m", "max_tokens": 1, "prompt": ["# + Array(repeating: "1", count: 150_000).joined(separator: ",") + "]}"
        try await node.app().test(.live) { client in
            try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .badRequest)
                #expect((try? Self.errorCode(response.body)) == "json_too_large")
            }
        }
    }

    /// A structured-output request is refused by name, not answered with unconstrained text.
    @Test(.enabled(if: runModelTests)) func answersJSONSchemaOutputThatParsesAndValidates() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            let schema = ##"{"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "count": {"type": "integer"}}, "required": ["answer", "count"], "additionalProperties": false}"##
            let json = ##"{"model": "m", "messages": [{"role": "user", "content": "Is the sky blue? Answer in JSON."}], "max_tokens": 40, "temperature": 0, "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": "## + schema + "}}}"
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: json)) { response in
                #expect(response.status == .ok)
                let choice = try #require((try Self.json(response.body)["choices"] as? [[String: Any]])?.first)
                #expect(choice["finish_reason"] as? String == "stop")
                let content = try #require((choice["message"] as? [String: Any])?["content"] as? String)
                let value = try #require(JSONSerialization.jsonObject(with: Data(content.utf8)) as? [String: Any], "\(content)")
                #expect(Set(value.keys) == ["answer", "count"])
                #expect(["yes", "no"].contains(value["answer"] as? String))
                #expect(value["count"] is Int)
            }
            let object = ##"{"model": "m", "prompt": "A JSON object describing a cat:", "max_tokens": 60, "temperature": 0.7, "seed": 3, "response_format": {"type": "json_object"}}"##
            try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: object)) { response in
                #expect(response.status == .ok)
                let choice = try #require((try Self.json(response.body)["choices"] as? [[String: Any]])?.first)
                let text = try #require(choice["text"] as? String)
                #expect(text.hasPrefix("{"))
                if choice["finish_reason"] as? String == "stop" {
                    #expect(try JSONSerialization.jsonObject(with: Data(text.utf8)) is [String: Any], "\(text)")
                }
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func refusesSchemaFeaturesAndToolsByName() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            let cases: [(body: String, code: String, says: String)] = [
                (##"{"model": "m", "prompt": "hi", "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a+$"}}}}"##,
                 "unsupported_schema", "'pattern'"),
                (##"{"model": "m", "prompt": "hi", "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#"}}}}"##,
                 "invalid_schema", "without consuming input"),
                (##"{"model": "m", "prompt": "hi", "response_format": {"type": "yaml"}}"##, "", "is not supported (text, json_object, json_schema)"),
                (##"{"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}"##,
                 "tools_unsupported", "chat template"),
            ]
            for c in cases {
                let uri = c.body.contains("messages") ? "/v1/chat/completions" : "/v1/completions"
                try await client.execute(uri: uri, method: .post, body: ByteBuffer(string: c.body)) { response in
                    #expect(response.status == .badRequest)
                    let text = String(buffer: response.body)
                    #expect(text.contains(c.says), "\(text)")
                    let code = try Self.errorCode(response.body)
                    if !c.code.isEmpty { #expect(code == c.code) }
                }
            }
            let text = ##"{"model": "m", "prompt": "hi", "max_tokens": 2, "response_format": {"type": "text"}}"##
            try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: text)) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func refusesTooManyOrTooLongStopStrings() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        try await node.app().test(.live) { client in
            let many = #"{"model": "m", "prompt": "hi", "max_tokens": 2, "stop": ["a", "b", "c", "d", "e"]}"#
            try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: many)) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("'stop' takes at most 4"))
            }
            let long = #"{"model": "m", "prompt": "hi", "max_tokens": 2, "stop": [""# + String(repeating: "x", count: 65) + #""]}"#
            try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: long)) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("65 bytes long"))
            }
        }
    }

    @Test(.enabled(if: runModelTests)) func refusesOneKeyTakingEverySlot() async throws {
        let node = try await Node { settings in
            settings.apiKeyDigests = [Array(SHA256.hash(data: Array("key-one".utf8))), Array(SHA256.hash(data: Array("key-two".utf8)))]
            settings.perKeyConcurrency = 1
        }
        defer { Task { await node.stop() } }
        let long = #"{"model": "m", "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,", "max_tokens": 400, "temperature": 0}"#
        let short = #"{"model": "m", "prompt": "Hi", "max_tokens": 2, "temperature": 0}"#
        try await node.app().test(.live) { client in
            try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: short)) { response in
                #expect(response.status == .unauthorized)
            }
            // key-one's first request (on a connection of its own: the test client has one) holds its share;
            // its second is refused; key-two still gets in.
            let first = try RawClient(port: try #require(client.port))
            defer { first.close() }
            first.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-one\r\nContent-Length: \(long.utf8.count)\r\n\r\n\(long)")
            try await waitUntil { node.scheduler.counts.running == 1 }
            try await client.execute(uri: "/v1/completions", method: .post, headers: [.authorization: "Bearer key-one"],
                                     body: ByteBuffer(string: short)) { response in
                #expect(response.status == .tooManyRequests)
                #expect((try? Self.errorCode(response.body)) == "key_concurrency_limit")
                #expect(response.headers[.retryAfter] == "1")
            }
            try await client.execute(uri: "/v1/completions", method: .post, headers: [.authorization: "Bearer key-two"],
                                     body: ByteBuffer(string: short)) { response in
                #expect(response.status == .ok)
            }
            #expect(first.read(12) == "HTTP/1.1 200")
        }
    }

    @Test(.enabled(if: runModelTests)) func cancelsAnAbandonedNonStreamingRequest() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let body = #"{"model": "m", "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,", "max_tokens": 1000, "temperature": 0}"#
        try await node.app().test(.live) { client in
            let port = try #require(client.port)
            // A client that sends a long request and hangs up without reading the answer.
            let socket = try RawClient(port: port)
            socket.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            try await waitUntil { node.scheduler.counts.running == 1 }
            socket.close()
            // Its slot comes back without generating the 1500 tokens, and it is counted as cancelled.
            try await waitUntil {
                node.scheduler.counts.running == 0
                    && String(decoding: node.metrics.exposition(), as: UTF8.self).contains("securenode_cancelled_requests_total 1")
            }
        }
    }

    /// A request the engine refuses at run time (a token id outside the vocabulary, slipped past
    /// validation) fails alone: the request batched with it completes.
    @Test(.enabled(if: runModelTests)) func aRowTheEngineRefusesFailsAlone() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        let options = GenerationOptions(maxTokens: 4, sampling: SamplingParameters(temperature: 0))
        let good = try node.scheduler.submit(.init(promptIDs: [1, 2, 3, 4, 5, 6], options: options))
        let bad = try node.scheduler.submit(.init(promptIDs: [1, 9_999_999], options: options))
        var goodEnd: InferenceScheduler.Event?, badEnd: InferenceScheduler.Event?
        for await event in good.events { goodEnd = event }
        for await event in bad.events { badEnd = event }
        guard case .finished? = goodEnd else { Issue.record("the good request did not finish: \(String(describing: goodEnd))"); return }
        guard case let .failed(reason)? = badEnd else { Issue.record("the bad request did not fail"); return }
        #expect(reason.contains("outside the vocabulary"))
    }

    /// A request that is not streamed (`Request.streams` false, as the non-streaming API submits)
    /// gets one event, its end, with the text and log-probabilities a streamed request gets piece by
    /// piece: its consumer is not woken for every token.
    @Test(.enabled(if: runModelTests)) func unstreamedRequestGetsOnlyItsEnd() async throws {
        let node = try await Node()
        defer { Task { await node.stop() } }
        var options = GenerationOptions(maxTokens: 12, sampling: SamplingParameters(temperature: 0))
        options.logprobs = 2
        let prompt = [1, 504, 3458, 314, 260, 4219, 28]
        var streamed = (text: "", pieces: 0, entries: 0, end: InferenceScheduler.Completion?.none)
        for await event in try node.scheduler.submit(.init(promptIDs: prompt, options: options)).events {
            switch event {
            case let .text(piece): streamed.text += piece; streamed.pieces += 1
            case let .logprobs(entries): streamed.entries += entries.count
            case let .finished(done): streamed.end = done
            case let .failed(reason): Issue.record("the streamed request failed: \(reason)")
            }
        }
        var events: [InferenceScheduler.Event] = []
        for await event in try node.scheduler.submit(.init(promptIDs: prompt, options: options, streams: false)).events { events.append(event) }
        let end = try #require(streamed.end)
        #expect(streamed.pieces > 1 && streamed.entries == end.completionTokens && streamed.text == end.text)
        guard events.count == 1, case let .finished(done) = events[0] else {
            Issue.record("the unstreamed request got \(events.count) events: \(events)")
            return
        }
        #expect(done.text == end.text && done.logprobs == end.logprobs && done.completionTokens == end.completionTokens)
    }

    /// A chat's second turn reuses the first turn's prompt rows; its answer equals the one computed
    /// from scratch, bit for bit (greedy and seeded sampling).
    @Test(.enabled(if: runModelTests)) func promptCacheOutputsEqualRecomputation() async throws {
        let tokenizer = try #require(Self.loaded).get().2
        let history = try tokenizer.encode("You are a careful assistant. The user asks about the sea, ships and the weather at sea. "
                                           + String(repeating: "Answer briefly and precisely. ", count: 10), maxWordBytes: 8192)
        let first = history + (try tokenizer.encode(" First question: what is a tide?", addSpecial: false, maxWordBytes: 8192))
        let second = history + (try tokenizer.encode(" Second question: why is the sea salty?", addSpecial: false, maxWordBytes: 8192))
        // The history covers the first 64-token chunk (shared whole even where it runs in F32) and
        // ends inside the second, which both prompts end early enough to keep exact.
        #expect(history.count > 64 && first.count < 100 && second.count < 100)
        // Logprobs too: the same text could hide different bits.
        func run(_ node: Node, _ prompt: [Int], temperature: Float) async throws -> (text: String, logprobs: [TokenLogprob]) {
            var options = GenerationOptions(maxTokens: 48, sampling: SamplingParameters(temperature: temperature, seed: 7))
            options.logprobs = 3
            var answer = (text: "", logprobs: [TokenLogprob]())
            for await event in try node.scheduler.submit(.init(promptIDs: prompt, options: options)).events {
                if case let .finished(done) = event { answer = (done.text, done.logprobs) }
            }
            return answer
        }
        let cached = try await Node(promptCache: true)
        let fresh = try await Node(promptCache: false)
        defer { Task { await cached.stop(); await fresh.stop() } }
        for temperature: Float in [0, 0.8] {
            _ = try await run(cached, first, temperature: temperature)
            let reused = try await run(cached, second, temperature: temperature)
            let recomputed = try await run(fresh, second, temperature: temperature)
            #expect(!reused.text.isEmpty && reused.text == recomputed.text && reused.logprobs == recomputed.logprobs)
        }
        let exposition = String(decoding: cached.metrics.exposition(), as: UTF8.self)
        // Turn two of round one, and both turns of round two, start from the shared history (two slots).
        #expect(exposition.contains("securenode_prompt_cache_tokens_total \(3 * history.count)"))
    }

    /// A long prompt's answer does not depend on what else the node was doing while it read it: the
    /// same greedy request alone and beside a decoding request gives the same text, bit for bit.
    @Test(.enabled(if: runModelTests)) func answerDoesNotDependOnConcurrentLoad() async throws {
        let tokenizer = try #require(Self.loaded).get().2
        let prompt = try tokenizer.encode(String(repeating: "The harbour master logs every ship, its cargo and its draught. ", count: 48),
                                          maxWordBytes: 8192)
        #expect(prompt.count > PrefillMode.gemmAttentionMinimumPositions)
        var options = GenerationOptions(maxTokens: 24, sampling: SamplingParameters(temperature: 0))
        options.logprobs = 3
        func text(_ submission: InferenceScheduler.Submission) async -> [TokenLogprob] {
            var logprobs: [TokenLogprob] = []
            for await event in submission.events { if case let .finished(done) = event { logprobs = done.logprobs } }
            return logprobs
        }
        let node = try await Node(promptCache: false)
        defer { Task { await node.stop() } }
        let alone = await text(try node.scheduler.submit(.init(promptIDs: prompt, options: options)))
        let busy = try node.scheduler.submit(.init(promptIDs: Array(prompt[..<8]),
                                                   options: GenerationOptions(maxTokens: 1500, sampling: SamplingParameters(temperature: 0.8, seed: 3))))
        var events = busy.events.makeAsyncIterator()
        _ = await events.next()  // decoding
        let loaded = await text(try node.scheduler.submit(.init(promptIDs: prompt, options: options)))
        busy.cancel()
        #expect(!alone.isEmpty && alone == loaded)
    }

    /// The prompt cache reuses a prefix whose length is not a multiple of the step size, so the rest
    /// of the prompt is evaluated in chunks that start elsewhere than when computed from scratch:
    /// the answers are still the same bits.
    @Test(.enabled(if: runModelTests)) func promptCacheOutputsEqualRecomputationOffChunkBoundaries() async throws {
        let tokenizer = try #require(Self.loaded).get().2
        let history = try tokenizer.encode("You are a careful assistant for harbour masters.", maxWordBytes: 8192)
        let first = history + (try tokenizer.encode(" Hello.", addSpecial: false, maxWordBytes: 8192))
        let second = history + (try tokenizer.encode(String(repeating: " Log the ship, its cargo and its draught.", count: 60),
                                                     addSpecial: false, maxWordBytes: 8192))
        #expect(history.count % 64 != 0 && second.count > PrefillMode.gemmAttentionMinimumPositions)
        func run(_ node: Node, _ prompt: [Int]) async throws -> [TokenLogprob] {
            var options = GenerationOptions(maxTokens: 24, sampling: SamplingParameters(temperature: 0))
            options.logprobs = 3
            var logprobs: [TokenLogprob] = []
            for await event in try node.scheduler.submit(.init(promptIDs: prompt, options: options)).events {
                if case let .finished(done) = event { logprobs = done.logprobs }
            }
            return logprobs
        }
        let cached = try await Node(promptCache: true) { $0.parallel = 1 }
        let fresh = try await Node(promptCache: false) { $0.parallel = 1 }
        defer { Task { await cached.stop(); await fresh.stop() } }
        _ = try await run(cached, first)
        let reused = try await run(cached, second)
        let recomputed = try await run(fresh, second)
        #expect(!reused.isEmpty && reused == recomputed)
    }

    /// On a node that decodes one token at a time (`limits.decoding: one-token`), a chat's next turn
    /// carries the previous answer: the idle slot evaluated it again as prompt rows meanwhile, the
    /// next turn reuses them, and its answer still equals recomputation bit for bit.
    @Test(.enabled(if: runModelTests)) func warmedAnswerOutputsEqualRecomputation() async throws {
        let tokenizer = try #require(Self.loaded).get().2
        let history = try tokenizer.encode("Notes on the sea. The sea rises and falls twice a day because", maxWordBytes: 8192)
        func run(_ node: Node, _ prompt: [Int]) async throws -> (text: String, logprobs: [TokenLogprob]) {
            var options = GenerationOptions(maxTokens: 40, sampling: SamplingParameters(temperature: 0))
            options.logprobs = 3
            var answer = (text: "", logprobs: [TokenLogprob]())
            for await event in try node.scheduler.submit(.init(promptIDs: prompt, options: options)).events {
                if case let .finished(done) = event { answer = (done.text, done.logprobs) }
            }
            return answer
        }
        func counter(_ node: Node, _ name: String) -> Int {
            let line = String(decoding: node.metrics.exposition(), as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(name + " ") }
            return line.flatMap { Int($0.split(separator: " ").last!) } ?? 0
        }
        let cached = try await Node(promptCache: true) { $0.parallel = 1; $0.decoding = .oneToken }
        let fresh = try await Node(promptCache: false) { $0.parallel = 1; $0.decoding = .oneToken }
        defer { Task { await cached.stop(); await fresh.stop() } }
        let first = try await run(cached, history)
        let answerIDs = first.logprobs.map(\.id)
        #expect(answerIDs.count > 8)
        try await waitUntil { counter(cached, "securenode_prompt_cache_warmed_tokens_total") == answerIDs.count }
        let next = history + answerIDs + (try tokenizer.encode(" Why?", addSpecial: false, maxWordBytes: 8192))
        let reused = try await run(cached, next)
        let recomputed = try await run(fresh, next)
        #expect(counter(cached, "securenode_prompt_cache_tokens_total") == history.count + answerIDs.count)
        #expect(!reused.logprobs.isEmpty && reused.text == recomputed.text && reused.logprobs == recomputed.logprobs)
    }

    /// With `limits.prompt_cache_answers`, every decoding row is computed as the last row of a prompt
    /// holding the text so far: a generated token's logprobs equal those of the first token generated
    /// for that text sent as a prompt, on a node that never saw it, bit for bit.
    @Test(.enabled(if: runModelTests)) func keptAnswerRowsAreTheRecomputationsPromptRows() async throws {
        let tokenizer = try #require(Self.loaded).get().2
        let history = try tokenizer.encode("Notes on the sea. The sea rises and falls twice a day because", maxWordBytes: 8192)
        func run(_ node: Node, _ prompt: [Int], maxTokens: Int) async throws -> [TokenLogprob] {
            var options = GenerationOptions(maxTokens: maxTokens, sampling: SamplingParameters(temperature: 0))
            options.logprobs = 3
            var logprobs: [TokenLogprob] = []
            for await event in try node.scheduler.submit(.init(promptIDs: prompt, options: options)).events {
                if case let .finished(done) = event { logprobs = done.logprobs }
            }
            return logprobs
        }
        let node = try await Node { $0.parallel = 1; $0.promptCacheAnswers = true }
        defer { Task { await node.stop() } }
        let answer = try await run(node, history, maxTokens: 30)
        #expect(answer.count == 30)
        for k in [1, 9, 29] where k < answer.count {
            let fresh = try await Node(promptCache: false) { $0.parallel = 1 }
            let first = try await run(fresh, history + answer[..<k].map(\.id), maxTokens: 1)
            await fresh.stop()
            #expect(first.count == 1 && first[0] == answer[k], "generated token \(k)")
        }
    }

    /// With `limits.prompt_cache_answers`, a chat's next turn reuses the previous answer's rows
    /// without waiting for idle time, and its answer equals the one computed from scratch (a node
    /// with the same setting and an empty cache), bit for bit.
    @Test(.enabled(if: runModelTests)) func keptAnswerOutputsEqualRecomputation() async throws {
        let tokenizer = try #require(Self.loaded).get().2
        let history = try tokenizer.encode("Notes on the sea. The sea rises and falls twice a day because", maxWordBytes: 8192)
        func run(_ node: Node, _ prompt: [Int], temperature: Float) async throws -> [TokenLogprob] {
            var options = GenerationOptions(maxTokens: 40, sampling: SamplingParameters(temperature: temperature, seed: 11))
            options.logprobs = 3
            var logprobs: [TokenLogprob] = []
            for await event in try node.scheduler.submit(.init(promptIDs: prompt, options: options)).events {
                if case let .finished(done) = event { logprobs = done.logprobs }
            }
            return logprobs
        }
        func counter(_ node: Node, _ name: String) -> Int {
            let line = String(decoding: node.metrics.exposition(), as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(name + " ") }
            return line.flatMap { Int($0.split(separator: " ").last!) } ?? 0
        }
        for temperature: Float in [0, 0.8] {
            let cached = try await Node { $0.parallel = 1; $0.promptCacheAnswers = true }
            let fresh = try await Node { $0.parallel = 1; $0.promptCacheAnswers = true }
            let answer = try await run(cached, history, temperature: temperature).map(\.id)
            #expect(answer.count > 8)
            // At once: the rows of every token but the last were kept while decoding.
            let next = history + answer + (try tokenizer.encode(" In other words, the tides come from", addSpecial: false, maxWordBytes: 8192))
            let reused = try await run(cached, next, temperature: temperature)
            let recomputed = try await run(fresh, next, temperature: temperature)
            #expect(counter(cached, "securenode_prompt_cache_tokens_total") >= history.count + answer.count - 1)
            #expect(!reused.isEmpty && reused == recomputed, "temperature \(temperature)")
            await cached.stop()
            await fresh.stop()
        }
    }

    /// SIGTERM's drain ends at its deadline even with a queue of long requests nobody reads.
    @Test(.enabled(if: runModelTests)) func drainIsBoundedWithAQueueOfAbandonedRequests() async throws {
        let node = try await Node { $0.queueDepth = 8 }
        let options = GenerationOptions(maxTokens: 1500, sampling: SamplingParameters(temperature: 0))
        var submissions: [InferenceScheduler.Submission] = []
        for _ in 0 ..< 10 { submissions.append(try node.scheduler.submit(.init(promptIDs: Array(1 ... 200), options: options))) }
        await node.scheduler.drain(deadline: .milliseconds(500))
        #expect(node.scheduler.counts == (0, 0))
        #expect(throws: InferenceScheduler.SubmitError.draining) {
            _ = try node.scheduler.submit(.init(promptIDs: [1], options: options))
        }
        var failed = 0
        for submission in submissions {
            for await event in submission.events { if case .failed = event { failed += 1 } }
        }
        #expect(failed == 10)
    }
}

/// Polls `condition` every 10 ms for up to 60 s (a liveness bound, not a performance assertion).
func waitUntil(_ condition: () -> Bool) async throws {
    for _ in 0 ..< 6000 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("condition not reached within 60 s")
    throw CancellationError()
}

/// A bare TCP client on loopback, to misbehave as no HTTP library would.
final class RawClient {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw CancellationError() }
    }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
    }

    func close() { Glibc.close(fd) }

    /// Up to `count` bytes of the answer (blocking).
    func read(_ count: Int) -> String {
        var buffer = [UInt8](repeating: 0, count: count)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count, 0) }
        return String(decoding: buffer.prefix(max(0, n)), as: UTF8.self)
    }
}
