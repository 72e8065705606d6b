import Attestation
import Foundation
import ModelSigning
import NIOCore
import NIOHTTP1
import NodeHTTP

/// Why the channel to the node is refused: the check that failed and its reason (no prompt text).
public struct ChannelFailure: Error, CustomStringConvertible, Sendable, Equatable {
    /// `connect`, `tls-pin`, `evidence`, an appraisal check (`evidence:tls-key-bound`, ...), or a receipt check (`receipt:...`).
    public let check: String
    public let reason: String
    public init(_ check: String, _ reason: String) {
        self.check = check
        self.reason = reason
    }
    public var description: String { "\(check): \(reason)" }
}

/// The one owner of the client's view of a node: which node process is attested (its evidence,
/// receipt key and TLS key) and the open connections to it.
///
/// A connection is used only after the node was attested over it: every new connection first
/// fetches evidence for a fresh nonce on itself and appraises it exactly as `securenode verify` does
/// (``EvidenceVerifier/appraiseWithDevices(json:nonce:)``), with the key of the certificate this
/// connection presented as the key the evidence must bind (`tls-key-bound`). The first connection
/// records the certificate's key (nothing but the evidence request is sent on it before the
/// appraisal); once a key is attested, later connections are pinned to it in the TLS handshake: a
/// certificate with another key, whoever signed it, is refused before any request is written.
/// ``reattest()`` (on a schedule) does the same on a new connection and replaces the attested state;
/// a failure refuses every request (``connection()`` throws) until an attestation passes again.
public actor AttestedNode {
    public struct Configuration: Sendable {
        public var node: URL
        /// The profile, enrolled AKs and vendor CAs, as `securenode verify` is given them.
        public var verifier: EvidenceVerifier
        /// Plain HTTP (only with a development profile and the flag that allows it).
        public var plaintext: Bool
        /// Idle connections kept open for reuse.
        public var maxIdleConnections: Int
        public var connectTimeout: Duration

        public init(node: URL, verifier: EvidenceVerifier, plaintext: Bool = false, maxIdleConnections: Int = 16,
                    connectTimeout: Duration = .seconds(10)) {
            self.node = node
            self.verifier = verifier
            self.plaintext = plaintext
            self.maxIdleConnections = maxIdleConnections
            self.connectTimeout = connectTimeout
        }
    }

    /// What an appraisal that passed established.
    public struct Attested: Sendable {
        public let evidence: Evidence
        public let appraisal: Appraisal
        /// The serving process: its receipt key, and its TLS key (nil over plain HTTP).
        public let receiptKeySHA256: String
        public let tlsKeySHA256: String?
        public let at: ContinuousClock.Instant
    }

    public enum Event: Sendable {
        case attested(Attested)
        case refused(ChannelFailure)
    }

    public let configuration: Configuration
    private let observe: @Sendable (Event) -> Void
    private var attested: Attested?
    private var failure: ChannelFailure?
    private var idle: [NodeConnection] = []

    /// `observe` hears every attestation's outcome (metrics, logs).
    public init(configuration: Configuration, observe: @escaping @Sendable (Event) -> Void = { _ in }) {
        self.configuration = configuration
        self.observe = observe
    }

    /// The attested state, if the last attestation passed.
    public var current: Attested? { failure == nil ? attested : nil }
    public var lastFailure: ChannelFailure? { failure }

    /// A connection to the attested node: an idle one, or a new one attested over itself.
    public func connection() async throws(ChannelFailure) -> (NodeConnection, Attested) {
        if failure == nil, let attested {
            while let c = idle.popLast() {
                if c.isReusable { return (c, attested) }
                c.close()
            }
        }
        return try await openAttested()
    }

    /// Gives a connection back after a response that ended cleanly.
    public func release(_ connection: NodeConnection) {
        guard connection.isReusable, failure == nil, idle.count < configuration.maxIdleConnections,
              connection.peerKeySHA256 == attested?.tlsKeySHA256 else {
            connection.close()
            return
        }
        idle.append(connection)
    }

    /// Attests the node again on a new connection; a failure refuses requests until one passes.
    @discardableResult
    public func reattest() async -> Result<Attested, ChannelFailure> {
        do throws(ChannelFailure) {
            let (c, a) = try await openAttested()
            release(c)
            return .success(a)
        } catch {
            return .failure(error)
        }
    }

    /// Refuses every request until the next attestation passes (e.g. a response's receipt did not verify).
    public func refuse(_ failure: ChannelFailure) {
        self.failure = failure
        for c in idle { c.close() }
        idle.removeAll()
        observe(.refused(failure))
    }

    private func openAttested() async throws(ChannelFailure) -> (NodeConnection, Attested) {
        let trust: NodeConnection.Trust
        if configuration.plaintext {
            trust = .plaintext
        } else if let pin = attested?.tlsKeySHA256 {
            trust = .pinned(pin)
        } else {
            trust = .recordOnly
        }
        let connection: NodeConnection
        do {
            connection = try await NodeConnection.open(url: configuration.node, trust: trust, timeout: configuration.connectTimeout)
        } catch {
            let failure = ChannelFailure(trust.isPinned ? "tls-pin" : "connect", "\(error)")
            // A refused pin can be a rotated certificate: the next attempt records the key again and
            // the evidence decides.
            if trust.isPinned { attested = nil }
            refuse(failure)
            throw failure
        }
        do throws(ChannelFailure) {
            let a = try await attest(over: connection)
            guard connection.isReusable else {
                throw ChannelFailure("connect", "the node closed the connection after its evidence: a connection is used only after it was attested")
            }
            attested = a
            failure = nil
            observe(.attested(a))
            return (connection, a)
        } catch {
            connection.close()
            if trust.isPinned { attested = nil }
            refuse(error)
            throw error
        }
    }

    /// Fetches evidence for a fresh nonce over `connection` and appraises it with the key that
    /// connection's certificate carries as the key the evidence must bind.
    func attest(over connection: NodeConnection) async throws(ChannelFailure) -> Attested {
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let fetched: (head: HTTPResponseHead, body: [UInt8])
        do {
            fetched = try await connection.fetch(.init(method: .GET, path: "/v1/attestation?nonce=\(hexString(nonce))",
                                                            headers: [("Accept", "application/json")]),
                                                      limit: Evidence.maximumSize)
        } catch {
            throw ChannelFailure("evidence", "cannot fetch evidence: \(error)")
        }
        let (head, body) = fetched
        guard head.status == .ok else {
            throw ChannelFailure("evidence", "the node answered \(head.status.code) for its evidence: \(String(decoding: body.prefix(300), as: UTF8.self))")
        }
        var verifier = configuration.verifier
        if !configuration.plaintext {
            guard let presented = connection.peerKeySHA256 else { throw ChannelFailure("tls-pin", "the node presented no certificate key") }
            verifier.presentedTLSKeySHA256 = presented
        }
        let appraisal = await verifier.appraiseWithDevices(json: body, nonce: nonce)
        if let failed = appraisal.checks.first(where: { $0.result == .fail }) {
            throw ChannelFailure("evidence:\(failed.check)", failed.detail)
        }
        guard let receiptKey = appraisal.receiptKeySHA256, let evidence = try? Evidence(json: Data(body)) else {
            throw ChannelFailure("evidence:model-bound", "the evidence names no serving process (receiptKeySHA256): it cannot vouch for receipts")
        }
        return Attested(evidence: evidence, appraisal: appraisal, receiptKeySHA256: receiptKey,
                        tlsKeySHA256: configuration.plaintext ? nil : appraisal.tlsKeySHA256, at: .now)
    }
}

extension NodeConnection.Trust {
    var isPinned: Bool {
        if case .pinned = self { return true }
        return false
    }
}
