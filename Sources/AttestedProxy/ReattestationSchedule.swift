import ServiceLifecycle

/// Attests the node again every `interval` on a new connection (``AttestedNode/reattest()``), beside
/// the attestation every new connection gets anyway: a node that restarted with another model, or
/// whose TPM no longer quotes what the profile allows, is refused within `interval` even while
/// pooled connections stay open.
public struct ReattestationSchedule: Service {
    public let node: AttestedNode
    public let interval: Duration

    public init(node: AttestedNode, interval: Duration) {
        self.node = node
        self.interval = interval
    }

    public func run() async throws {
        // SIGTERM ends the wait at once (not after up to `interval`).
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                await node.reattest()
            }
        }
    }
}
