/// What one listener allows a client before it is cut off (configuration `server:`; the same values
/// apply to the OpenAI API listener and to the Keylime agent listener, each with its own cap).
///
/// - `maxConnections`: open connections at most. At the cap, a connection without a request being
///   answered (a slowloris first) is closed to accept the next (see ``ConnectionTable``).
/// - `headerTimeout`: a request head must be complete within this time of its first byte
///   (slowloris: a client trickling a header byte a second is cut although it is never idle).
/// - `bodyTimeout`: a request body must be complete within this time of its head.
/// - `idleTimeout`: a connection with no request in progress is closed after this time.
/// - `tlsHandshakeTimeout`: the TLS handshake must complete within this time of the connection.
public struct ServerLimits: Sendable, Equatable {
    public var maxConnections: Int
    public var headerTimeout: Duration
    public var bodyTimeout: Duration
    public var idleTimeout: Duration
    public var tlsHandshakeTimeout: Duration

    public init(maxConnections: Int = 512, headerTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(60),
                idleTimeout: Duration = .seconds(60), tlsHandshakeTimeout: Duration = .seconds(10)) {
        self.maxConnections = maxConnections
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.tlsHandshakeTimeout = tlsHandshakeTimeout
    }

    /// File descriptors a process needs for `listeners` listeners at the cap, plus room for the
    /// model, the TPM connection, state files, logs and outgoing connections.
    public func fileDescriptorsNeeded(listeners: Int) -> Int {
        listeners * maxConnections + 256
    }
}
