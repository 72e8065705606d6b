import Foundation
import NIOConcurrencyHelpers
import NodeCore
import ServiceLifecycle

/// Whether the TPM answers and still holds the node's measurements, checked in the background so
/// that `/readyz` never waits behind TPM work (a flood of quotes, or a TPM that hangs).
///
/// Every `interval` the monitor replays the event log against the TPM (`Attestor.currentLog`).
/// The TPM unreachable: not healthy, with the error. PCRs back at zero (the TPM restarted and lost
/// its volatile state): the node measures what it is serving again through `remeasure` — exactly what
/// it did at start — and is healthy once that succeeded, without a restart. A PCR value the log does
/// not explain: not healthy (fail closed). A check that has not come back for `stale` is reported too.
public final class TPMHealth: Service, Sendable {
    public struct Status: Sendable, Equatable {
        public var healthy: Bool
        public var reason: String
        public var checkedAt: ContinuousClock.Instant?
    }

    public let attestor: Attestor
    public let interval: Duration
    public let stale: Duration
    private let remeasure: @Sendable () async throws -> Void
    private let onChange: @Sendable (Bool) -> Void
    private let state = NIOLockedValueBox(Status(healthy: true, reason: "not checked yet", checkedAt: nil))

    /// `remeasure` extends the node's measurements again after a TPM reset; `onChange` hears every
    /// change of health (metrics).
    public init(attestor: Attestor, interval: Duration = .seconds(2), stale: Duration = .seconds(10),
                remeasure: @escaping @Sendable () async throws -> Void, onChange: @escaping @Sendable (Bool) -> Void = { _ in }) {
        self.attestor = attestor
        self.interval = interval
        self.stale = stale
        self.remeasure = remeasure
        self.onChange = onChange
    }

    /// The last result; a check older than `stale` counts as a TPM that does not answer.
    public var status: Status {
        var s = state.withLockedValue { $0 }
        if let at = s.checkedAt, ContinuousClock.now - at > stale {
            s.healthy = false
            s.reason = "the TPM has not answered for \((ContinuousClock.now - at).components.seconds) s"
        }
        return s
    }

    /// One check now.
    public func check() async {
        let result: (Bool, String)
        do {
            let log = try await attestor.currentLog()
            if log.isEmpty {
                try await remeasure()
                result = (true, "the TPM was reset; the model, receipt key and TLS key were measured again")
            } else {
                result = (true, "the TPM answers")
            }
        } catch {
            result = (false, "the TPM does not answer or does not hold the node's measurements: \(error)")
        }
        let changed = state.withLockedValue { s -> Bool in
            let changed = s.healthy != result.0 || s.checkedAt == nil
            s = Status(healthy: result.0, reason: result.1, checkedAt: .now)
            return changed
        }
        if changed { onChange(result.0) }
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await check()
            try? await Task.sleep(for: interval)
        }
    }
}
