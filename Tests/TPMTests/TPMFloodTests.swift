import Attestation
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NodeCore
import NodeHTTP
import Testing
import TPM
import TPMTestSupport

/// The TPM-backed endpoints under a flood: bounded work, the rest refused at once, health untouched.
@Suite struct TPMFloodTests {
    /// Two run, two wait, the rest are refused without waiting (no TPM needed).
    @Test func gateRefusesWorkBeyondItsQueue() async throws {
        let gate = TPMGate(concurrent: 2, waiting: 2)
        let release = AsyncStream<Void>.makeStream()
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for _ in 0 ..< 10 {
                group.addTask {
                    do {
                        try await gate.run { for await _ in release.stream { break } }
                        return true
                    } catch {
                        return false
                    }
                }
            }
            // Let every caller arrive, then release the held ones.
            while await gate.refused < 6 { try? await Task.sleep(for: .milliseconds(5)) }
            for _ in 0 ..< 10 { release.continuation.yield() }
            release.continuation.finish()
            var all: [Bool] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        #expect(outcomes.filter { $0 }.count == 4)
        #expect(outcomes.filter { !$0 }.count == 6)
    }

    /// A flood that never waits for anything is still held to the rate: a burst, then refusals.
    @Test func gateRateLimitsAFlood() async throws {
        let gate = TPMGate(concurrent: 4, waiting: 100, perSecond: 1, burst: 3)
        var admitted = 0, refused = 0
        for _ in 0 ..< 10 {
            do {
                try await gate.run {}
                admitted += 1
            } catch is TPMGate.Busy {
                refused += 1
            }
        }
        #expect(admitted == 3 && refused == 7)
    }

    /// Fifty concurrent attestation requests on a real swtpm: every one is answered (evidence or
    /// 429), some are refused, and /readyz and /healthz answer meanwhile.
    @Test(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
    func survivesAttestationFlood() async throws {
        let (t, attestor, _) = try await EnrollmentTests().node()
        defer { withExtendedLifetime(t) {} }
        try await EnrollmentTests.withNode(attestor) { url in
            // One connection per request (URLSession otherwise queues them on a few).
            let configuration = URLSessionConfiguration.ephemeral
            configuration.httpMaximumConnectionsPerHost = 100
            let session = URLSession(configuration: configuration)
            let statuses = await withTaskGroup(of: Int.self) { group in
                for _ in 0 ..< 50 {
                    group.addTask {
                        let nonce = (0 ..< 16).map { _ in String(format: "%02x", UInt8.random(in: 0 ... 255)) }.joined()
                        let request = URLRequest(url: URL(string: url.absoluteString + "/v1/attestation?nonce=\(nonce)")!)
                        guard let (_, response) = try? await session.data(for: request) else { return -1 }
                        return (response as? HTTPURLResponse)?.statusCode ?? -1
                    }
                }
                group.addTask {
                    let request = URLRequest(url: url.appendingPathComponent("/healthz"))
                    guard let (_, response) = try? await session.data(for: request) else { return -1 }
                    return 1000 + ((response as? HTTPURLResponse)?.statusCode ?? -1)
                }
                var all: [Int] = []
                for await status in group { all.append(status) }
                return all
            }
            #expect(statuses.contains(1200), "/healthz answered during the flood")
            let answers = statuses.filter { $0 < 1000 }
            #expect(answers.allSatisfy { $0 == 200 || $0 == 429 }, "\(answers)")
            #expect(answers.contains(200) && answers.contains(429))
        }
    }
}
