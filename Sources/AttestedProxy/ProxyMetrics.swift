import Foundation
import Prometheus

/// The proxy's Prometheus metrics (`GET /metrics` on the proxy's listener), prefixed `securenode_proxy_`.
public final class ProxyMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let attested: Gauge
    private let attestations: Counter
    private let lastAttestation: Gauge
    private let verifiedReceipts: Counter

    static let latencyBuckets: [Duration] = [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                             .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                                             .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60)]

    public init() {
        attested = registry.makeGauge(descriptor: .init(namespace: "securenode_proxy", metricName: "node_attested",
                                                        helpText: "1 while the node's last attestation passed (requests are forwarded), 0 while requests are refused"))
        attestations = registry.makeCounter(descriptor: .init(namespace: "securenode_proxy", metricName: "attestations", unitName: "total",
                                                              helpText: "Attestations of the node that passed (one per new connection and per scheduled re-attestation)"))
        lastAttestation = registry.makeGauge(descriptor: .init(namespace: "securenode_proxy", metricName: "last_attestation", unitName: "timestamp_seconds",
                                                               helpText: "Unix time of the last attestation that passed"))
        verifiedReceipts = registry.makeCounter(descriptor: .init(namespace: "securenode_proxy", metricName: "verified_receipts", unitName: "total",
                                                                  helpText: "Responses whose receipt verified"))
    }

    public func observe(_ event: AttestedNode.Event) {
        switch event {
        case .attested:
            attested.set(to: 1)
            attestations.increment()
            lastAttestation.set(to: Date().timeIntervalSince1970)
        case .refused(let failure):
            attested.set(to: 0)
            refusal(check: failure.check)
        }
    }

    /// A request refused (or a stream ended) because `check` failed.
    public func refusal(check: String) {
        registry.makeCounter(descriptor: .init(namespace: "securenode_proxy", metricName: "refusals", unitName: "total",
                                               helpText: "Attestations or responses refused, by the check that failed"),
                             labels: [("check", check)]).increment()
    }

    public func receiptVerified() { verifiedReceipts.increment() }

    /// One request through the proxy: counted by route and status, timed by route (streams: until the last byte).
    public func request(route: String, status: Int, duration: Duration) {
        registry.makeCounter(descriptor: .init(namespace: "securenode_proxy", metricName: "http_requests", unitName: "total",
                                               helpText: "Requests to the proxy by route and status"),
                             labels: [("route", route), ("status", String(status))]).increment()
        registry.makeDurationHistogram(descriptor: .init(namespace: "securenode_proxy", metricName: "http_request_duration", unitName: "seconds",
                                                         helpText: "Request latency through the proxy by route"),
                                       labels: [("route", route)], buckets: Self.latencyBuckets).record(duration)
    }

    public func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
