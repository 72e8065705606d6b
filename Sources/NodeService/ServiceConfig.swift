import Foundation
import Generation
import Inference
import ModelSigning
import ServerHardening
import Yams

/// The node's configuration file (YAML; see deploy/securenode.yaml.example), with every field
/// optional: command-line flags and environment variables override it, and defaults fill the rest.
/// Unknown keys are refused (a misspelled `api_key_sha256` must not silently leave the API open).
public struct ServiceConfig: Sendable, Equatable, Decodable {
    public struct Model: Sendable, Equatable, Decodable {
        public var id: String?
        public var path: String?
        public var signature: String?
        public var publicKey: String?
        public var certificateChain: [String]?
        /// A Jinja chat template file used instead of the GGUF's `tokenizer.chat_template`.
        public var chatTemplate: String?
        /// Where the data key of an encrypted model (`securenode model encrypt`) comes from.
        public var key: Key?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, path, signature, publicKey = "public_key", certificateChain = "certificate_chain", chatTemplate = "chat_template", key
        }
    }

    /// `model.key`: the release of an encrypted model's data key (README "Confidential models").
    public struct Key: Sendable, Equatable, Decodable {
        /// The data key sealed with `securenode seal` (unsealed into memory at start).
        public var sealed: String?
        /// Publisher approvals for a key sealed to a policy-authorization key (as `unseal --approval`).
        public var approvals: [String]?
        /// The policy-authorization public key (as `unseal --policy-key`; default: the profile's).
        public var policyKey: String?
        /// Wait for the key as Keylime's secure payload (`keylime_tenant -c add ... -f KEY`).
        public var keylime: Bool?
        /// How long `serve` waits for Keylime to deliver the key before it gives up.
        public var waitSeconds: Int?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case sealed, approvals, policyKey = "policy_key", keylime, waitSeconds = "wait_seconds"
        }
    }

    /// `server.tls`. Without `certificate` and `private_key` (`tls: {}`) the node serves with its
    /// own `api-tls` key, sealed by the TPM and held in memory, and a self-signed certificate for
    /// it; with both, the operator's files (bring your own certificate: weaker, the key is a file).
    public struct TLS: Sendable, Equatable, Decodable {
        public var certificate: String?
        public var privateKey: String?
        /// Whether the node's own `api-tls` key serves (no certificate/key files given).
        public var usesNodeKey: Bool { certificate == nil && privateKey == nil }
        /// Clients must present a certificate from this CA (mutual TLS) when set.
        public var clientCA: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case certificate, privateKey = "private_key", clientCA = "client_ca"
        }
    }

    /// The listener; the connection limits apply to the Keylime agent's listener too.
    public struct Server: Sendable, Equatable, Decodable {
        public var host: String?
        public var port: Int?
        public var tls: TLS?
        public var maxConnections: Int?
        public var headerTimeoutSeconds: Int?
        public var bodyTimeoutSeconds: Int?
        public var idleTimeoutSeconds: Int?
        public var tlsHandshakeTimeoutSeconds: Int?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case host, port, tls, maxConnections = "max_connections", headerTimeoutSeconds = "header_timeout_seconds"
            case bodyTimeoutSeconds = "body_timeout_seconds", idleTimeoutSeconds = "idle_timeout_seconds"
            case tlsHandshakeTimeoutSeconds = "tls_handshake_timeout_seconds"
        }
    }

    public struct Auth: Sendable, Equatable, Decodable {
        /// Hex SHA-256 digests of the accepted bearer keys.
        public var apiKeySHA256: [String]?
        public var openHealth: Bool?
        public var openMetrics: Bool?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case apiKeySHA256 = "api_key_sha256", openHealth = "open_health", openMetrics = "open_metrics"
        }
    }

    public struct Limits: Sendable, Equatable, Decodable {
        public var maxBodyBytes: Int?
        public var maxPromptTokens: Int?
        public var maxTokens: Int?
        public var contextLength: Int?
        public var parallel: Int?
        public var queueDepth: Int?
        public var drainSeconds: Int?
        public var threads: Int?
        public var perKeyConcurrency: Int?
        public var maxWordBytes: Int?
        public var promptCache: Bool?
        public var promptCacheAnswers: Bool?
        public var decoding: String?
        public var maxN: Int?
        public var exact: Bool?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case maxBodyBytes = "max_body_bytes", maxPromptTokens = "max_prompt_tokens", maxTokens = "max_tokens"
            case contextLength = "context_length", parallel, queueDepth = "queue_depth", drainSeconds = "drain_seconds", threads
            case perKeyConcurrency = "per_key_concurrency", maxWordBytes = "max_word_bytes", promptCache = "prompt_cache"
            case promptCacheAnswers = "prompt_cache_answers", decoding, maxN = "max_n", exact
        }
    }

    /// Keylime agent (pull mode): see deploy/keylime/README.md.
    public struct Keylime: Sendable, Equatable, Decodable {
        public var uuid: String
        public var registrar: String
        public var host: String?
        public var port: Int?
        public var contactIP: String?
        public var contactPort: Int?
        public var mtls: Bool?
        public var trustedClientCA: String?
        public var serverCertificate: String?
        public var serverKey: String?
        public var revocationCertificate: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case uuid, registrar, host, port, contactIP = "contact_ip", contactPort = "contact_port", mtls
            case trustedClientCA = "trusted_client_ca", serverCertificate = "server_certificate", serverKey = "server_key"
            case revocationCertificate = "revocation_certificate"
        }
    }

    /// The node's long-term keys (README "Node keys"; `securenode keys`).
    public struct Keys: Sendable, Equatable, Decodable {
        /// PEM P-256 public key allowed to approve seal-PCR values for the node keys (PolicyAuthorize),
        /// used when `serve` makes the keys on first start (default: the profile's seal.policyAuthorizationKey).
        public var policyKey: String?
        /// `securenode approve-policy --node-keys` approvals (JSON) to unseal the node keys with.
        public var approvals: [String]?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case policyKey = "policy_key", approvals
        }
    }

    public var profile: String?
    public var tcti: String?
    public var stateDir: String?
    public var model: Model?
    public var server: Server?
    public var auth: Auth?
    public var limits: Limits?
    public var keylime: Keylime?
    public var keys: Keys?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case profile, tcti, stateDir = "state_dir", model, server, auth, limits, keylime, keys
    }

    public init() {}

    /// Parses YAML text, refusing unknown keys and wrong types with the path of the field at fault.
    public init(yaml text: String, source: String = "configuration") throws(ServiceError) {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ServiceError("\(source) is not valid YAML: \(error)")
        }
        guard let node else { self.init(); return }
        try Self.checkKeys(node, allowed: CodingKeys.allCases.map(\.rawValue), path: "", source: source)
        if let m = node.mapping {
            try Self.checkKeys(m["model"], allowed: Model.CodingKeys.allCases.map(\.rawValue), path: "model.", source: source)
            try Self.checkKeys(m["model"]?.mapping?["key"], allowed: Key.CodingKeys.allCases.map(\.rawValue), path: "model.key.", source: source)
            try Self.checkKeys(m["server"], allowed: Server.CodingKeys.allCases.map(\.rawValue), path: "server.", source: source)
            try Self.checkKeys(m["server"]?.mapping?["tls"], allowed: TLS.CodingKeys.allCases.map(\.rawValue), path: "server.tls.", source: source)
            try Self.checkKeys(m["auth"], allowed: Auth.CodingKeys.allCases.map(\.rawValue), path: "auth.", source: source)
            try Self.checkKeys(m["limits"], allowed: Limits.CodingKeys.allCases.map(\.rawValue), path: "limits.", source: source)
            try Self.checkKeys(m["keylime"], allowed: Keylime.CodingKeys.allCases.map(\.rawValue), path: "keylime.", source: source)
            try Self.checkKeys(m["keys"], allowed: Keys.CodingKeys.allCases.map(\.rawValue), path: "keys.", source: source)
        }
        do {
            self = try YAMLDecoder().decode(ServiceConfig.self, from: node)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw ServiceError("\(source): \(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type (\(context.debugDescription))")
        } catch let DecodingError.keyNotFound(key, context) {
            throw ServiceError("\(source): \((context.codingPath + [key]).map(\.stringValue).joined(separator: ".")) is required")
        } catch {
            throw ServiceError("\(source): \(error)")
        }
    }

    /// Reads `path`. The file may hold API key digests: warn-worthy if others can read it.
    public static func load(path: String) throws(ServiceError) -> ServiceConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ServiceError("cannot read the configuration file \(path)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw ServiceError("\(path) is not UTF-8 text") }
        return try ServiceConfig(yaml: text, source: path)
    }

    private static func checkKeys(_ node: Node?, allowed: [String], path: String, source: String) throws(ServiceError) {
        guard let node else { return }
        guard let mapping = node.mapping else {
            if case .scalar = node, node.null != nil { return }
            throw ServiceError("\(source): \(path.isEmpty ? "the top level" : String(path.dropLast())) must be a mapping")
        }
        for key in mapping.keys {
            guard let name = key.string, allowed.contains(name) else {
                throw ServiceError("\(source): unknown key \(path)\(key.string ?? "?") (known: \(allowed.joined(separator: ", ")))")
            }
        }
    }
}

/// A refused configuration or request, with the reason.
public struct ServiceError: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The settings the service runs with, after the file, the environment and flags were merged and
/// checked.
public struct ServiceSettings: Sendable {
    public var modelID: String
    public var host = "127.0.0.1"
    public var port = 8080
    public var tls: ServiceConfig.TLS?
    /// Connection limits of every listener (server.max_connections and the server.*_timeout_seconds).
    public var connections = ServerLimits()
    public var apiKeyDigests: [[UInt8]] = []
    public var openHealth = true
    public var openMetrics = true
    public var maxBodyBytes = 1 << 20
    public var maxPromptTokens = 2048
    public var maxTokens = 1024
    public var contextLength = 4096
    public var parallel = 4
    public var queueDepth = 64
    public var drainSeconds = 30
    public var threads = 2
    /// Requests (running or queued) one API key may hold at once; nil: no limit beyond `parallel + queueDepth`.
    public var perKeyConcurrency: Int?
    /// Longest word (pre-token) of request text, in UTF-8 bytes: a longer one is refused before BPE.
    public var maxWordBytes = Tokenizer.defaultMaxWordBytes
    /// Reuse a shared prompt prefix's KV rows kept in idle sequence slots (same API key only).
    public var promptCache = true
    /// Kept answers: the prompt cache keeps a slot's last answer after its prompt, so a chat's next
    /// turn reuses it (needs `promptCache` and decoding as prompt rows). nil (the default): kept
    /// whenever the node decodes as prompt rows (`resolvedDecoding`); false also makes the default
    /// decoding one-token (the setting's meaning before `limits.decoding`).
    public var promptCacheAnswers: Bool?
    /// How decoding rows are computed (`limits.decoding`); nil: `resolvedDecoding`'s default.
    public var decoding: Decoding?
    /// Most choices (`n`) one completion request may ask for; each runs as its own sequence.
    public var maxN = 4
    /// Prompts through the bit-exact kernels too, never BLAS (`PrefillMode.exact`); default false:
    /// prompt batches of `PrefillMode.measuredMinimumRows`+ tokens run in F32 through OpenBLAS.
    public var exact = false

    public init(modelID: String) { self.modelID = modelID }

    /// How the node computes decoding rows: `limits.decoding` when given; else prompt rows
    /// (`Decoding.promptRows`: concurrent decoding rows take the prompt rows' faster products, a
    /// slot keeps its answer for the chat's next turn, an answer depends only on its text) on a node
    /// that batches (`parallel` > 1), and llama.cpp's one-token kernels, as `generate` by default, on
    /// a single-slot node (one stream: nothing to batch, and `serve` keeps `generate`'s speed and
    /// bits), on an exact one (`exact`), or with `prompt_cache_answers: false`.
    public var resolvedDecoding: Decoding {
        if let decoding { return decoding }
        if let answers = promptCacheAnswers { return answers ? .promptRows : .oneToken }
        return exact || parallel == 1 ? .oneToken : .promptRows
    }

    /// Whether a free slot keeps its last answer's rows (`promptCacheAnswers`): with the prompt
    /// cache, when the node decodes as prompt rows, unless `prompt_cache_answers: false`.
    public var keepsAnswers: Bool { promptCache && resolvedDecoding == .promptRows && promptCacheAnswers != false }

    /// Applies the file's values over the defaults and checks every limit.
    public mutating func apply(_ config: ServiceConfig) throws(ServiceError) {
        if let id = config.model?.id { modelID = id }
        if let s = config.server {
            if let h = s.host { host = h }
            if let p = s.port { port = p }
            tls = s.tls
            if let v = s.maxConnections { connections.maxConnections = v }
            if let v = s.headerTimeoutSeconds { connections.headerTimeout = .seconds(v) }
            if let v = s.bodyTimeoutSeconds { connections.bodyTimeout = .seconds(v) }
            if let v = s.idleTimeoutSeconds { connections.idleTimeout = .seconds(v) }
            if let v = s.tlsHandshakeTimeoutSeconds { connections.tlsHandshakeTimeout = .seconds(v) }
        }
        if let t = tls, (t.certificate == nil) != (t.privateKey == nil) {
            throw ServiceError("server.tls needs both certificate and private_key (your own files), or neither (tls: {} serves with the node's TPM-sealed api-tls key)")
        }
        if let a = config.auth {
            apiKeyDigests = []
            for (i, hex) in (a.apiKeySHA256 ?? []).enumerated() {
                guard hex.count == 64, let bytes = ModelSigning.bytes(fromHex: hex) else {
                    throw ServiceError("auth.api_key_sha256[\(i)] must be 64 hex digits (the SHA-256 of a key), not a key")
                }
                apiKeyDigests.append(bytes)
            }
            if let o = a.openHealth { openHealth = o }
            if let o = a.openMetrics { openMetrics = o }
        }
        if let l = config.limits {
            if let v = l.maxBodyBytes { maxBodyBytes = v }
            if let v = l.maxPromptTokens { maxPromptTokens = v }
            if let v = l.maxTokens { maxTokens = v }
            if let v = l.contextLength { contextLength = v }
            if let v = l.parallel { parallel = v }
            if let v = l.queueDepth { queueDepth = v }
            if let v = l.drainSeconds { drainSeconds = v }
            if let v = l.threads { threads = v }
            if let v = l.perKeyConcurrency { perKeyConcurrency = v }
            if let v = l.maxWordBytes { maxWordBytes = v }
            if let v = l.promptCache { promptCache = v }
            if let v = l.promptCacheAnswers { promptCacheAnswers = v }
            if let v = l.decoding {
                guard let d = Decoding(rawValue: v) else {
                    throw ServiceError("limits.decoding must be \(Decoding.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: " or ")), not \(String(reflecting: String(v.prefix(64))))")
                }
                decoding = d
            }
            if let v = l.maxN { maxN = v }
            if let v = l.exact { exact = v }
        }
        try validate()
    }

    public func validate() throws(ServiceError) {
        guard (0 ... 65535).contains(port) else { throw ServiceError("server.port must be 0...65535, not \(port)") }
        guard (1 ... 1_000_000).contains(connections.maxConnections) else {
            throw ServiceError("server.max_connections must be 1...1000000, not \(connections.maxConnections)")
        }
        for (name, value) in [("header_timeout_seconds", connections.headerTimeout), ("body_timeout_seconds", connections.bodyTimeout),
                              ("idle_timeout_seconds", connections.idleTimeout),
                              ("tls_handshake_timeout_seconds", connections.tlsHandshakeTimeout)] {
            guard value >= .seconds(1), value <= .seconds(3600) else {
                throw ServiceError("server.\(name) must be 1...3600 seconds, not \(value.components.seconds)")
            }
        }
        guard maxBodyBytes >= 1024 else { throw ServiceError("limits.max_body_bytes must be at least 1024") }
        guard maxPromptTokens >= 1, maxTokens >= 1, contextLength >= 2 else {
            throw ServiceError("limits.max_prompt_tokens, max_tokens must be >= 1 and context_length >= 2")
        }
        guard (1 ... 64).contains(parallel) else { throw ServiceError("limits.parallel must be 1...64, not \(parallel)") }
        guard queueDepth >= 0 else { throw ServiceError("limits.queue_depth must be >= 0") }
        guard drainSeconds >= 0 else { throw ServiceError("limits.drain_seconds must be >= 0") }
        guard (1 ... 256).contains(threads) else { throw ServiceError("limits.threads must be 1...256") }
        guard (16 ... (1 << 20)).contains(maxWordBytes) else { throw ServiceError("limits.max_word_bytes must be 16...1048576, not \(maxWordBytes)") }
        guard (1 ... 16).contains(maxN) else { throw ServiceError("limits.max_n must be 1...16, not \(maxN)") }
        guard promptCache || promptCacheAnswers != true else {
            throw ServiceError("limits.prompt_cache_answers needs limits.prompt_cache: true (it keeps answers in the prompt cache)")
        }
        guard decoding != .oneToken || promptCacheAnswers != true else {
            throw ServiceError("limits.prompt_cache_answers needs limits.decoding: \"prompt-rows\" (an answer decoded one token at a time is not a prompt's rows)")
        }
        if let n = perKeyConcurrency, n < 1 { throw ServiceError("limits.per_key_concurrency must be >= 1, not \(n)") }
    }
}
