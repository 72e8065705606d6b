import Hummingbird
import NIOCore

/// The per-request context of the node's API: Hummingbird's core storage, the connection the request
/// came on (to notice a client that hung up), and which API key authenticated it (a label such as
/// `key-2`, never the key), for the per-key limit and the logs.
public struct NodeRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    /// Set by `AccessMiddleware` when API keys are configured.
    public var apiKey: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
