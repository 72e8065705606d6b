import Foundation
import Prometheus

/// The node's Prometheus metrics (`GET /metrics`, text exposition format). Names are prefixed
/// `securenode_`; durations are histograms in seconds.
public final class NodeMetrics: SchedulerObserver, Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let queueDepth: Gauge
    private let running: Gauge
    private let ttft: DurationHistogram
    private let promptTokens: Counter
    private let completionTokens: Counter
    private let attestationReady: Gauge
    private let cancellations: Counter
    private let promptCacheTokens: Counter
    private let promptCacheWarmedTokens: Counter

    static let latencyBuckets: [Duration] = [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                                             .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                                             .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60)]

    public init() {
        queueDepth = registry.makeGauge(descriptor: .init(namespace: "securenode", metricName: "queue_depth",
                                                          helpText: "Requests waiting for a free sequence slot"))
        running = registry.makeGauge(descriptor: .init(namespace: "securenode", metricName: "running_sequences",
                                                       helpText: "Requests being generated"))
        ttft = registry.makeDurationHistogram(descriptor: .init(namespace: "securenode", metricName: "time_to_first_token", unitName: "seconds",
                                                                helpText: "From request accepted to first generated text"),
                                              buckets: Self.latencyBuckets)
        promptTokens = registry.makeCounter(descriptor: .init(namespace: "securenode", metricName: "prompt_tokens", unitName: "total",
                                                              helpText: "Prompt tokens of finished requests"))
        completionTokens = registry.makeCounter(descriptor: .init(namespace: "securenode", metricName: "completion_tokens", unitName: "total",
                                                                  helpText: "Generated tokens of finished requests"))
        cancellations = registry.makeCounter(descriptor: .init(namespace: "securenode", metricName: "cancelled_requests", unitName: "total",
                                                               helpText: "Requests dropped because the client disconnected"))
        promptCacheTokens = registry.makeCounter(descriptor: .init(namespace: "securenode", metricName: "prompt_cache_tokens", unitName: "total",
                                                                   helpText: "Prompt tokens reused from the prompt cache instead of evaluated"))
        promptCacheWarmedTokens = registry.makeCounter(descriptor: .init(namespace: "securenode", metricName: "prompt_cache_warmed_tokens", unitName: "total",
                                                                         helpText: "Generated tokens an idle slot evaluated again as prompt rows for the next turn"))
        attestationReady = registry.makeGauge(descriptor: .init(namespace: "securenode", metricName: "attestation_ready",
                                                                helpText: "1 while the model is verified, measured and loaded and the TPM answers"))
    }

    public func queue(waiting: Int, running: Int) {
        queueDepth.set(to: Double(waiting))
        self.running.set(to: Double(running))
    }

    public func firstToken(after duration: Duration) { ttft.record(duration) }

    public func completed(promptTokens: Int, completionTokens: Int) {
        self.promptTokens.increment(by: Int64(promptTokens))
        self.completionTokens.increment(by: Int64(completionTokens))
    }

    public func cancelled() { cancellations.increment() }

    public func promptCacheHit(tokens: Int) { promptCacheTokens.increment(by: Int64(tokens)) }

    public func promptCacheWarmed(tokens: Int) { promptCacheWarmedTokens.increment(by: Int64(tokens)) }

    public func setReady(_ ready: Bool) { attestationReady.set(to: ready ? 1.0 : 0.0) }

    /// One HTTP request: counted by route and status, timed by route.
    public func request(route: String, status: Int, duration: Duration) {
        registry.makeCounter(descriptor: .init(namespace: "securenode", metricName: "http_requests", unitName: "total",
                                               helpText: "HTTP requests by route and status"),
                             labels: [("route", route), ("status", String(status))]).increment()
        registry.makeDurationHistogram(descriptor: .init(namespace: "securenode", metricName: "http_request_duration", unitName: "seconds",
                                                         helpText: "HTTP request latency by route (streams: until the last byte)"),
                                       labels: [("route", route)], buckets: Self.latencyBuckets).record(duration)
    }

    /// The text exposition.
    public func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
