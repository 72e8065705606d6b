import ArgumentParser
import Foundation
import Inference
import Kernels
import ModelFormat

/// `securenode bench-engine`: the engine's side of `bench/inference.sh` (one JSON object on stdout).
struct BenchEngineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-engine",
        abstract: "Measure the inference engine on a signed model (used by bench/inference.sh).",
        discussion: """
            Verifies and loads the model (cold start), then, in one session with a 2,048-position KV cache: \
            prompt processing for each --prompt-lengths value from an empty context, time to first token for \
            a 128-token prompt, and --decode-tokens greedy decoding steps after a --decode-after-token prompt (default 1). Prompt \
            tokens are ids (1 + 7919 i) mod vocabulary, as the llama.cpp side of the benchmark uses. Prints \
            one JSON object: engine, threads, modelBytes, kvCacheBytes, coldStartSeconds, verifySeconds, \
            prefill [{tokens, seconds}], ttft128Seconds, decode {tokens, seconds, after}, peakRSSBytes, prefillMode \
            (exact, or blas with its threshold), decoding (--decoding), promptBatch, blasCore (OpenBLAS's kernel family), attention \
            (gemm: BLAS batches attend as matrix products; exact: the per-head kernels, with --exact or --exact-attention). \
            With --perplexity-tokens FILE (a JSON object with n_ctx and token_ids, as llama.cpp's perplexity \
            fixture in Tests/InferenceTests/Fixtures/perplexity.json), also perplexity {nCtx, chunks, scored, value} \
            (Inference's `Perplexity`, computed as that fixture's llama.cpp value is; used by bench/perplexity.sh).
            """
    )

    @Option(help: "The model directory (holding one .gguf file), or a single GGUF file.")
    var model: String
    @Option(help: "The signature bundle.")
    var signature: String
    @OptionGroup var trust: TrustOptions
    @Option(help: "Threads for the engine.")
    var threads = 2
    @Option(name: .customLong("prompt-lengths"), help: "Comma-separated prompt lengths.")
    var promptLengths = "16,32,64,128,256,512"
    @Option(name: .customLong("decode-tokens"), help: "Greedy decoding steps to time.")
    var decodeTokens = 128
    @Option(name: .customLong("decode-after"), help: "Prompt tokens evaluated before the timed decoding steps (the positions they start at).")
    var decodeAfter = 1
    @Option(name: .customLong("context"), help: "KV cache positions.")
    var context = 2048
    @Flag(help: "Bit-exact kernels for prompts too, never BLAS.")
    var exact = false
    @Option(name: .customLong("blas-min-rows"), help: "Smallest prompt batch that runs through BLAS (default: the measured threshold).")
    var blasMinimumRows: Int?
    @Flag(name: .customLong("exact-attention"), help: "BLAS prompt batches keep the exact per-head attention kernels (to measure GEMM attention against them).")
    var exactAttention = false
    @Option(help: "How the timed decoding steps are evaluated: one-token (the default: llama.cpp's one-token kernels) or prompt-rows (each as the last row of a prompt holding the text so far).")
    var decoding: Decoding = .oneToken
    @Option(name: .customLong("perplexity-tokens"), help: "A JSON file {n_ctx, token_ids}: also report the perplexity of those tokens.")
    var perplexityTokens: String?

    /// `--perplexity-tokens`' file.
    struct PerplexityTokens: Decodable {
        let n_ctx: Int
        let token_ids: [Int]
    }

    func run() async throws {
        if !exact { OpenBLASCoreType.reexecIfMisdetected() }
        try await reportingFailures {
            let lengths = try promptLengths.split(separator: ",").map { part -> Int in
                guard let n = Int(part.trimmingCharacters(in: .whitespaces)), n >= 1 else {
                    throw CLIFailure("--prompt-lengths must be positive integers separated by commas, not \"\(part)\"")
                }
                return n
            }
            guard threads >= 1, decodeTokens >= 1, decodeAfter >= 1 else {
                throw CLIFailure("--threads, --decode-tokens and --decode-after must be at least 1")
            }
            guard (lengths + [128, decodeTokens + decodeAfter]).allSatisfy({ $0 <= context }) else {
                throw CLIFailure("every prompt (and --decode-after + --decode-tokens) must fit in --context \(context)")
            }
            let tokens = try perplexityTokens.map { path -> PerplexityTokens in
                let decoded: PerplexityTokens
                do {
                    decoded = try JSONDecoder().decode(PerplexityTokens.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
                } catch {
                    throw CLIFailure("--perplexity-tokens \(path): not a JSON object with n_ctx and token_ids (\(error.localizedDescription))")
                }
                guard decoded.n_ctx >= 2, decoded.n_ctx <= context, decoded.token_ids.count >= decoded.n_ctx else {
                    throw CLIFailure("--perplexity-tokens \(path): n_ctx must be 2...\(context) (--context) and at most the number of token_ids")
                }
                return decoded
            }
            let clock = ContinuousClock()
            let start = clock.now
            let loaded = try await LoadedModel.open(model: model, signature: signature, trust: try trust.anchor())
            let verified = clock.now
            let llama = try LlamaModel(file: loaded.gguf)
            let mode: PrefillMode = exact ? .exact : .blas(minimumRows: blasMinimumRows ?? PrefillMode.measuredMinimumRows)
            let session = try llama.makeSession(contextLength: context, threads: threads, prefill: mode)
            session.engine.attentionInFloat = !exactAttention
            session.decodesAsPromptRows = decoding == .promptRows
            let ready = clock.now
            let vocab = llama.config.vocabularySize
            func ids(_ n: Int) -> [Int] { (0 ..< n).map { (1 + $0 * 7919) % vocab } }

            var prefill: [[String: Any]] = []
            for n in lengths {
                let prompt = ids(n)
                session.reset()
                let t0 = clock.now
                _ = try session.evaluate(prompt)
                prefill.append(["tokens": n, "seconds": seconds(clock.now - t0)])
            }
            session.reset()
            let prompt128 = ids(128)
            let t0 = clock.now
            let first = Self.argmax(try session.evaluate(prompt128))
            let ttft = seconds(clock.now - t0)
            _ = first

            session.reset()
            var logits = try session.evaluate(decodeAfter == 1 ? [1] : ids(decodeAfter))
            let t1 = clock.now
            for _ in 0 ..< decodeTokens {
                logits = try session.evaluate([Self.argmax(logits)])
            }
            let decodeSeconds = seconds(clock.now - t1)

            var perplexity: [String: Any]?
            if let tokens {
                guard tokens.token_ids.allSatisfy({ (0 ..< vocab).contains($0) }) else {
                    throw CLIFailure("--perplexity-tokens: a token id is outside the model's vocabulary (0..<\(vocab))")
                }
                let measured = try Perplexity(session: session, tokens: tokens.token_ids, chunkLength: tokens.n_ctx)
                perplexity = ["nCtx": measured.chunkLength, "chunks": measured.chunks, "scored": measured.scored, "value": measured.value]
            }

            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            var result: [String: Any] = [
                "engine": "securenode",
                "prefillMode": mode.description,
                "decoding": decoding.rawValue,
                "promptBatch": session.engine.batchCapacity,
                "blasCore": BLAS.coreName,
                "attention": mode.isExact || exactAttention ? "exact" : "gemm",
                "threads": session.threads,
                "modelBytes": loaded.gguf.buffer.count,
                "kvCacheBytes": session.cacheBytes,
                "coldStartSeconds": seconds(ready - start),
                "verifySeconds": seconds(verified - start),
                "prefill": prefill,
                "ttft128Seconds": ttft,
                "decode": ["tokens": decodeTokens, "seconds": decodeSeconds, "after": decodeAfter],
                "peakRSSBytes": Int(usage.ru_maxrss) * 1024,
            ]
            if let perplexity { result["perplexity"] = perplexity }
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    private func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// Greedy choice: the largest logit, lowest id on ties.
    static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in 1 ..< logits.count where logits[i] > logits[best] { best = i }
        return best
    }
}
