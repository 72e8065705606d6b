import ArgumentParser
import Attestation
import AttestedProxy
import Foundation
import Logging
import NodeService
import ServiceLifecycle
import UnixSignals

/// `securenode proxy`: the client's attested channel to a node (see ``AttestedNode``).
struct ProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Client side (no TPM): an OpenAI-compatible endpoint on loopback that forwards only to an attested node.",
        discussion: """
            Before a request leaves this machine the node must have been attested over the very connection it \
            takes: evidence for a fresh nonce, appraised exactly as `securenode verify` does (--profile, --enrolled), \
            binding the key of the TLS certificate the node presented (tls-key-bound); later connections are pinned \
            to that key in the handshake (any other certificate is refused, even one a CA signed). Every \
            completion's receipt is verified against that evidence before the client has the response (streams: \
            at the final event, which is replaced by an error event if it fails). The node is attested again on \
            every new connection and every --reattest-seconds. Any failure: 503 in OpenAI's error shape naming \
            the check, until an attestation passes again. GET /metrics (Prometheus), /healthz, /readyz.
            """
    )

    @Option(help: "The node's base URL: https://HOST:PORT.")
    var node: String
    @Option(help: "Firmware profile JSON the node must satisfy.")
    var profile: String
    @Option(help: "Enrollment record(s) from `securenode enroll`: the AKs to trust.")
    var enrolled: [String] = []
    @Option(help: "Loopback address and port to serve on.")
    var listen: String = "127.0.0.1:8443"
    @Option(name: .customLong("api-key-file"), help: "File holding the node's API key (sent as Authorization: Bearer); without it, the client's Authorization header is passed on.")
    var apiKeyFile: String?
    @Option(name: .customLong("reattest-seconds"), help: "Attest the node again this often (seconds), besides on every new connection.")
    var reattestSeconds: Int = 60
    @Option(name: .customLong("max-body-bytes"), help: "Largest request body accepted (bytes), as the node's limits.max_body_bytes.")
    var maxBodyBytes: Int = 1 << 20
    @Flag(name: .customLong("insecure-http-for-development"),
          help: "Development only: allow an http:// node, and only with a development profile (one that allows local signers).")
    var insecureHTTPForDevelopment = false

    func run() async throws {
        try await reportingFailures {
            guard let url = URL(string: node), let scheme = url.scheme, url.host != nil else { throw CLIFailure("--node must be a URL, e.g. https://node:8443") }
            let profile = try FirmwareProfile.load(path: self.profile)
            switch scheme {
            case "https": break
            case "http":
                guard insecureHTTPForDevelopment else {
                    throw CLIFailure("--node is plain HTTP: the proxy binds the node's TLS key to its evidence and never downgrades (development only: --insecure-http-for-development)")
                }
                guard profile.allowLocalSigners else {
                    throw CLIFailure("--insecure-http-for-development needs a development profile (allowLocalSigners: true); profile \(profile.id) is not one")
                }
            default: throw CLIFailure("--node must be an https:// URL")
            }
            guard reattestSeconds >= 1 else { throw CLIFailure("--reattest-seconds must be at least 1") }
            guard maxBodyBytes >= 1024 else { throw CLIFailure("--max-body-bytes must be at least 1024") }
            let (host, port) = try Self.loopback(listen)
            let records = try enrolled.map { path throws(AttestationError) in try EnrollmentRecord.load(path: path) }
            let vendorCAs = try EvidenceVerifier.loadVendorCAs(profile: profile, profilePath: self.profile)
            let apiKey = try apiKeyFile.map { path throws in
                let key = try FileText.read(path, what: "API key file").trimmingCharacters(in: .whitespacesAndNewlines)
                guard !key.isEmpty, !key.contains(where: \.isNewline) else { throw CLIFailure("\(path): expected one API key on one line") }
                return key
            }
            var logger = Logger(label: "securenode-proxy")
            logger.logLevel = .info
            let metrics = ProxyMetrics()
            let log = logger
            let attested = AttestedNode(configuration: .init(node: url, verifier: EvidenceVerifier(profile: profile, enrolled: records, vendorCAs: vendorCAs),
                                                             plaintext: scheme == "http")) { event in
                metrics.observe(event)
                switch event {
                case .attested(let a):
                    log.info("node attested", metadata: ["model": .string(a.appraisal.model?.manifestRoot ?? "-"), "receipt_key": .string(a.receiptKeySHA256),
                                                         "tls_key": .string(a.tlsKeySHA256 ?? "none (plain HTTP)")])
                case .refused(let failure):
                    log.warning("node refused", metadata: ["check": .string(failure.check), "reason": .string(failure.reason)])
                }
            }
            // Fail closed from the start: until an attestation passes, requests get 503.
            if case .failure(let failure) = await attested.reattest() {
                StandardError.write("securenode proxy: the node is not attested yet (\(failure)); requests are refused until it is\n")
            }
            let routes = ProxyRoutes(node: attested, metrics: metrics, apiKey: apiKey, maxBodyBytes: maxBodyBytes,
                                     receipts: ReceiptCheck(measurementPCR: profile.measurementPCR), logger: logger)
            let app = try ProxyServer.make(routes: routes, host: host, port: port, reattestEvery: .seconds(reattestSeconds), logger: logger) { port in
                StandardError.write("securenode proxy: http://\(host):\(port)/v1 -> \(url.absoluteString) (profile \(profile.id), re-attesting every \(reattestSeconds) s)\n")
            }
            let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        }
    }

    /// `HOST:PORT` on a loopback address (the proxy has no authentication of its own).
    static func loopback(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw CLIFailure("--listen must be HOST:PORT, e.g. 127.0.0.1:8443")
        }
        let host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        guard host == "127.0.0.1" || host == "::1" || host == "localhost" else {
            throw CLIFailure("--listen \(text): the proxy serves loopback only (127.0.0.1, ::1 or localhost): it forwards with the node's API key")
        }
        return (host, port)
    }
}
