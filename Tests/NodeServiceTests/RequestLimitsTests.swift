import Foundation
import Testing
@testable import NodeService

/// The pre-checks and the worker that keep a request's cost bounded before it is paid.
@Suite struct RequestLimitsTests {
    @Test func refusesDeeplyNestedJSONBeforeDecoding() {
        let deep = Array((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8)
        #expect(throws: APIError.self) { try JSONShape.check(deep) }
        do {
            try JSONShape.check(deep)
        } catch {
            #expect(error.status == 400 && error.code == "json_too_deep" && error.message.contains("at byte 32"))
        }
    }

    @Test func refusesHugeTokenIDArrays() {
        let body = Array(("{\"prompt\": [" + Array(repeating: "1", count: 300_000).joined(separator: ",") + "]}").utf8)
        do {
            try JSONShape.check(body)
            Issue.record("a body of 300,000 values was accepted")
        } catch {
            #expect(error.code == "json_too_large")
        }
    }

    @Test func acceptsOrdinaryBodiesAndBracketsInsideStrings() throws {
        let text = #"{"model": "m", "messages": [{"role": "user", "content": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ \"\\\" {{{{"}]}"#
        try JSONShape.check(Array(text.utf8))
        #expect(try JSONSerialization.jsonObject(with: Data(text.utf8)) is [String: Any])
    }

    /// Random bytes and mutated bodies: the check returns or throws, in one pass, never crashes.
    @Test func survivesRandomBytes() {
        var rng = SplitMix64(seed: 42)
        let seedBody = Array(#"{"model": "m", "prompt": [1, 2, 3], "stop": ["\n", "]"], "x": {"y": [true, null, 1.5e3]}}"#.utf8)
        for _ in 0 ..< 2000 {
            var body = seedBody
            for _ in 0 ..< Int.random(in: 1 ... 8, using: &rng) {
                let i = Int.random(in: 0 ..< body.count, using: &rng)
                body[i] = UInt8.random(in: 0 ... 255, using: &rng)
            }
            _ = try? JSONShape.check(body)
            _ = try? JSONShape.check(Array(body.prefix(Int.random(in: 0 ... body.count, using: &rng))))
        }
    }

    @Test func workerRunsOffTheCooperativePool() async throws {
        let worker = RequestWorker(threads: 1, queueDepth: 4)
        defer { worker.stop() }
        let thread = try await worker.run { () -> UInt in UInt(bitPattern: Int(bitPattern: pthread_self())) }
        #expect(worker.threadIDs.contains(thread))
    }

    @Test func workerRefusesAFloodBeyondItsQueue() async throws {
        let worker = RequestWorker(threads: 1, queueDepth: 2, deadline: .seconds(60))
        defer { worker.stop() }
        let gate = DispatchSemaphore(value: 0)
        // One job blocks the only thread; two may wait; the rest are refused at once.
        let results = await withTaskGroup(of: Bool.self) { group in
            for _ in 0 ..< 8 {
                group.addTask {
                    do {
                        _ = try await worker.run { () -> Int in gate.wait(); return 1 }
                        return true
                    } catch {
                        return false
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(300))
            for _ in 0 ..< 8 { gate.signal() }
            var outcomes: [Bool] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        #expect(results.filter { $0 }.count == 3)
        #expect(results.filter { !$0 }.count == 5)
    }

    @Test func workerDoesNotStartJobsThatWaitedPastTheDeadline() async throws {
        let worker = RequestWorker(threads: 1, queueDepth: 4, deadline: .milliseconds(50))
        defer { worker.stop() }
        // The only thread is held until the second job has waited 100 ms in the queue, however late
        // the test's own tasks get a cooperative thread (the suite keeps the pool busy).
        let begun = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        async let blocker: Int = worker.run { () -> Int in begun.signal(); _ = release.wait(timeout: .now() + 10); return 1 }
        while begun.wait(timeout: .now()) == .timedOut { try await Task.sleep(for: .milliseconds(2)) }
        async let second: Int = worker.run { () -> Int in 2 }
        while worker.waiting == 0 { try await Task.sleep(for: .milliseconds(2)) }
        try await Task.sleep(for: .milliseconds(100))
        release.signal()
        do {
            _ = try await second
            Issue.record("a job that waited past the deadline ran")
        } catch let refusal as RequestWorker.Refusal {
            #expect(refusal == .timedOut(.milliseconds(50)))
        }
        #expect(try await blocker == 1)
    }
}
