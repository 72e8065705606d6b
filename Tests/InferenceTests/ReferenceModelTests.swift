import Foundation
import Testing
import Generation
@testable import Inference

/// The forward pass against llama.cpp's own outputs on the real model (see `TestPaths`).
@Suite("SmolLM2-135M against llama.cpp", .enabled(if: TestPaths.runReferenceTests, TestPaths.referenceMissing))
struct ReferenceModelTests {
    /// Final-position logits within 0.05 of llama.cpp's for its top 10 (and the same top token).
    @Test func finalLogitsMatchLlamaCpp() throws {
        let model = try RealModel.model()
        let reference: LogitsReference = try loadJSON(TestPaths.referenceFile("smollm2-135m-q4_1-logits-top10.json"))
        var worst: Float = 0
        for result in reference.results {
            let session = try model.makeSession(contextLength: 64)
            let logits = try session.evaluate(result.prompt_ids)
            for entry in result.top10 {
                worst = max(worst, abs(logits[entry.id] - entry.logit))
            }
            let argmax = logits.indices.max { logits[$0] < logits[$1] }
            #expect(argmax == result.top10[0].id, "prompt \(result.prompt)")
        }
        print("final logits: max |ours - llama.cpp| over the top 10 of \(reference.results.count) prompts = \(worst)")
        #expect(worst < 0.05)
    }

    /// The tokenizer gives llama.cpp's prompt ids, and greedy decoding gives llama.cpp's output ids
    /// for at least the first 32 tokens of every reference prompt (reported: how many match).
    @Test func greedyOutputsMatchLlamaCpp() throws {
        let model = try RealModel.model()
        let tokenizer = try RealModel.tokenizer()
        let reference: GreedyReference = try loadJSON(TestPaths.referenceFile("smollm2-135m-q4_1-greedy.json"))
        #expect(!reference.results.isEmpty)
        for result in reference.results {
            let ids = try tokenizer.encode(result.prompt, addSpecial: true, parseSpecial: false, maxWordBytes: Tokenizer.defaultMaxWordBytes)
            #expect(ids == result.prompt_ids, "prompt ids of \(result.prompt)")
            let session = try model.makeSession(contextLength: result.prompt_ids.count + reference.n_gen)
            var logits = try session.evaluate(result.prompt_ids)
            var output: [Int] = []
            for _ in 0 ..< reference.n_gen {
                let next = Sampler.argmax(logits)
                output.append(next)
                logits = try session.evaluate([next])
            }
            let agreeing = zip(output, result.output_ids).prefix { $0 == $1 }.count
            print("greedy \(result.prompt.debugDescription): \(agreeing) of \(reference.n_gen) tokens equal llama.cpp's")
            #expect(agreeing >= 32, "prompt \(result.prompt.debugDescription): only \(agreeing) tokens agree")
        }
    }

    /// Each prompt in its own session: the logits after the prompt, then after each of `steps`
    /// greedy tokens decoded one at a time.
    static func decodedAlone(_ model: LlamaModel, _ prompts: [[Int]], steps: Int, prefill: PrefillMode = .exact) throws -> [[[Float]]] {
        try prompts.map { prompt in
            let session = try model.makeSession(contextLength: 64, prefill: prefill)
            var logits = try session.evaluate(prompt)
            var trace = [logits]
            for _ in 0 ..< steps {
                logits = try session.evaluate([Sampler.argmax(logits)])
                trace.append(logits)
            }
            return trace
        }
    }

    /// Continuous batching does not change anyone's answer: three sequences decoded together in
    /// one engine step after step give bit for bit the logits each gives alone.
    @Test func batchedDecodingEqualsDecodingAlone() throws {
        let model = try RealModel.model()
        let prompts = [[504, 3458, 282, 4649, 314], [1, 2, 3], [28, 905, 7, 42, 42, 42, 11]]
        let steps = 12
        // Alone: each in its own session and engine.
        let alone = try Self.decodedAlone(model, prompts, steps: steps)
        // Together: one engine, prompts evaluated one by one, then every step batched.
        let engine = LlamaEngine(model: model, backend: CPUBackend(threads: 2), contextCapacity: 64, batchCapacity: 8)
        let sessions = try prompts.map { _ in try engine.makeSession(contextLength: 64) }
        var last = try zip(sessions, prompts).map { session, prompt in try session.evaluate(prompt) }
        for (i, logits) in last.enumerated() { #expect(logits == alone[i][0], "prompt \(i)") }
        for step in 1 ... steps {
            last = try engine.decode(sessions, tokens: last.map(Sampler.argmax))
            for i in sessions.indices {
                #expect(last[i].map(\.bitPattern) == alone[i][step].map(\.bitPattern), "sequence \(i), step \(step)")
            }
        }
        #expect(zip(sessions, prompts).allSatisfy { $0.position == $1.count + steps })
        // A session may not appear twice in one step, nor a session of another engine.
        #expect(throws: InferenceError.self) { try engine.decode([sessions[0], sessions[0]], tokens: [1, 2]) }
        let foreign = try model.makeSession(contextLength: 8)
        #expect(throws: InferenceError.self) { try engine.decode([foreign], tokens: [1]) }
    }

    /// A serving step mixes decoding rows with chunks of a newly arrived prompt, at batch sizes where
    /// the per-row work (norms, RoPE, cache stores, activation quantization, SwiGLU) is spread over
    /// the pool: every sequence's logits still equal, bit for bit, those it gives alone. Four prompts
    /// are evaluated in one step, then decode together while a fifth prompt arrives in chunks of
    /// three tokens mixed into their steps, and then decodes with them. Also in a BLAS engine (the
    /// CLI's and the service's), whose prompt rows take `Q4_1Groups` where the CPU has them: a step
    /// computes its prompt rows apart from its decoding rows, whatever order the items come in (the
    /// prompt chunk is listed first on odd steps), and each row is still the one it gives alone.
    @Test(arguments: [PrefillMode.exact, .default]) func aMixedPromptAndDecodeStepEqualsSeparateSteps(prefill: PrefillMode) throws {
        let model = try RealModel.model()
        let prompts = [[504, 3458, 282, 4649, 314], [1, 2, 3], [28, 905, 7, 42, 42, 42, 11], [9, 8, 7, 6],
                       [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100]]
        let steps = 10
        let alone = try Self.decodedAlone(model, prompts, steps: steps, prefill: prefill)
        let engine = LlamaEngine(model: model, backend: CPUBackend(threads: 2), contextCapacity: 64, batchCapacity: 32, prefill: prefill)
        let sessions = try prompts.map { _ in try engine.makeSession(contextLength: 64) }
        // Sessions 0-3: their whole prompts in one step (19 rows).
        var last: [[Float]?] = try engine.step((0 ..< 4).map { i in
            .init(session: sessions[i], tokens: prompts[i], promptLength: prompts[i].count)
        })
        var seen = [Int](repeating: 0, count: prompts.count)  // entries of `alone[i]` matched so far
        for i in 0 ..< 4 {
            #expect(last[i]?.map(\.bitPattern) == alone[i][0].map(\.bitPattern), "prompt \(i) in a step of four prompts")
            seen[i] = 1
        }
        var logits = Array(last.prefix(4).map { $0! }) + [[]]
        var offset = 0  // of session 4's prompt
        for step in 1 ... steps {
            var items: [LlamaEngine.StepItem] = []
            var members: [Int] = []
            for i in 0 ..< 4 {
                items.append(.init(session: sessions[i], tokens: [Sampler.argmax(logits[i])]))
                members.append(i)
            }
            let prompt = prompts[4]
            if offset < prompt.count {
                let end = min(prompt.count, offset + 3)
                items.append(.init(session: sessions[4], tokens: Array(prompt[offset ..< end]), promptLength: prompt.count,
                                   wantsLogits: end == prompt.count))
                offset = end
            } else {
                items.append(.init(session: sessions[4], tokens: [Sampler.argmax(logits[4])]))
            }
            members.append(4)
            if step % 2 == 1 {
                items.insert(items.removeLast(), at: 0)
                members.insert(members.removeLast(), at: 0)
            }
            last = try engine.step(items)
            for (k, i) in members.enumerated() {
                guard let row = last[k] else { continue }
                #expect(row.map(\.bitPattern) == alone[i][seen[i]].map(\.bitPattern), "sequence \(i), mixed step \(step)")
                logits[i] = row
                seen[i] += 1
            }
        }
        #expect(seen[0 ..< 4].allSatisfy { $0 == steps + 1 } && seen[4] == steps + 1 - 4)
    }

    /// The serving step's F32 item: a whole prompt chunk evaluated alone through BLAS gives the bits
    /// the same chunk gives through a session's own BLAS pass; batched with anything else it is
    /// refused (its rows would depend on what it was batched with), and nothing is evaluated.
    @Test func anF32StepItemIsTheChunksOwnBLASPassAndMustBeAlone() throws {
        let model = try RealModel.model()
        let engine = LlamaEngine(model: model, backend: CPUBackend(threads: 2), contextCapacity: 1024, batchCapacity: 64,
                                 prefill: .blas(minimumRows: 64))
        let chunk = (0 ..< 64).map { 100 + ($0 * 37) % 5000 }
        let prefix = (0 ..< 512).map { 7 + ($0 * 13) % 4000 }
        // Positions 512..<576: past the exact attention's reach, so this chunk runs in F32 on every CPU.
        #expect(engine.promptChunkRunsInFloat(rows: 64, lastPosition: 575))
        #expect(!engine.promptChunkRunsInFloat(rows: 63, lastPosition: 575))  // below the BLAS threshold
        let prompt = prefix + chunk
        let own = try engine.makeSession(contextLength: 1024)
        for start in stride(from: 0, to: prefix.count, by: 64) {
            _ = try own.evaluate(Array(prefix[start ..< start + 64]), partOfPrompt: prompt.count)
        }
        let expected = try own.evaluate(chunk, partOfPrompt: prompt.count)
        let stepped = try engine.makeSession(contextLength: 1024)
        for start in stride(from: 0, to: prefix.count, by: 64) {
            _ = try stepped.evaluate(Array(prefix[start ..< start + 64]), partOfPrompt: prompt.count)
        }
        let other = try engine.makeSession(contextLength: 1024)
        _ = try other.evaluate([1, 2, 3])
        #expect(throws: InferenceError.self) {
            try engine.step([.init(session: stepped, tokens: Array(chunk[..<63]), promptLength: prompt.count, inFloat: true),
                             .init(session: other, tokens: [4])])
        }
        #expect(stepped.position == prefix.count && other.position == 3)
        let logits = try engine.step([.init(session: stepped, tokens: chunk, promptLength: prompt.count, inFloat: true)])
        #expect(logits[0]?.map(\.bitPattern) == expected.map(\.bitPattern))
        // The same chunk as exact rows: other bits (so the F32 item did run in F32).
        let exact = try engine.makeSession(contextLength: 1024)
        for start in stride(from: 0, to: prefix.count, by: 64) {
            _ = try engine.step([.init(session: exact, tokens: Array(prefix[start ..< start + 64]), promptLength: prompt.count, wantsLogits: false,
                                       inFloat: true)])
        }
        let exactLogits = try engine.step([.init(session: exact, tokens: chunk, promptLength: prompt.count)])
        #expect(exactLogits[0]?.map(\.bitPattern) != expected.map(\.bitPattern))
    }
}
