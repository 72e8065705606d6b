import Foundation
import Hummingbird
import HTTPTypes
import Logging
import ModelSigning
import TPM

/// The Keylime agent API (pull mode, 2.x) that Keylime's verifier and tenant call: version, agent
/// info, identity and integrity quotes, the U/V key exchange, key verification and revocation
/// notices. It runs on its own listener with its own router: nothing here reaches the OpenAI API,
/// its keys or the model. Every answer, errors included, is Keylime's JSON envelope.
public struct KeylimeAgentRoutes: Sendable {
    public let uuid: String
    public let quoter: KeylimeQuoter
    public let keys: KeylimeKeys
    public let revocations: RevocationPolicy
    /// Called with the reason when a verifier's revocation notice names this agent.
    public let onRevoked: @Sendable (String) async -> Void
    /// Called with K's payload, when one was delivered and decrypted.
    public let onPayload: @Sendable ([UInt8]) async -> Void
    /// Called when the verifier delivers V: Keylime's verifier sends it only after a quote of this
    /// node passed its policy (PROVIDE_V), so it means "attested again".
    public let onVerifierKey: @Sendable () async -> Void
    /// Notices already believed (replays are refused) and the freshness rule; nil: no such memory.
    public let noticeLog: RevocationNoticeLog?
    public let logger: Logger

    public init(uuid: String, quoter: KeylimeQuoter, keys: KeylimeKeys, revocations: RevocationPolicy,
                logger: Logger, onRevoked: @escaping @Sendable (String) async -> Void,
                onPayload: @escaping @Sendable ([UInt8]) async -> Void = { _ in },
                onVerifierKey: @escaping @Sendable () async -> Void = {},
                noticeLog: RevocationNoticeLog? = nil) {
        self.onVerifierKey = onVerifierKey
        self.noticeLog = noticeLog
        self.uuid = uuid
        self.quoter = quoter
        self.keys = keys
        self.revocations = revocations
        self.logger = logger
        self.onRevoked = onRevoked
        self.onPayload = onPayload
    }

    /// The largest request body (a U with a tenant payload).
    static let maxBody = 8 << 20

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: KeylimeEnvelopeMiddleware<BasicRequestContext>(logger: logger))
        router.get("/version") { _, _ in
            Self.respond(200, "Success", ["supported_version": .string(KeylimeAPI.current),
                                          "supported_versions": .strings(KeylimeAPI.supportedVersions)])
        }
        router.get("/:version/agent/info") { _, context in versioned(context) { v in info(version: v) } }
        router.get("/:version/quotes/identity") { request, context in
            await versionedAsync(context) { v in await identityQuote(request, version: v) }
        }
        router.get("/:version/quotes/integrity") { request, context in
            await versionedAsync(context) { v in await integrityQuote(request, version: v) }
        }
        router.get("/:version/keys/pubkey") { _, context in
            versioned(context) { _ in Self.respond(200, "Success", ["pubkey": .string(keys.publicKeyPEM)]) }
        }
        router.post("/:version/keys/ukey") { request, context in
            await versionedAsync(context) { _ in await receiveKey(request, half: .u) }
        }
        router.post("/:version/keys/vkey") { request, context in
            await versionedAsync(context) { _ in await receiveKey(request, half: .v) }
        }
        router.get("/:version/keys/verify") { request, context in
            await versionedAsync(context) { _ in await verify(request) }
        }
        router.post("/:version/notifications/revocation") { request, context in
            await versionedAsync(context) { _ in await revocation(request) }
        }
        return router
    }

    // MARK: - handlers

    func info(version: String) -> Response {
        Self.respond(200, "Success", ["agent_uuid": .string(uuid), "tpm_hash_alg": .string("sha256"),
                                      "tpm_enc_alg": .string(KeylimeAPI.encryptionAlgorithm(version: version)),
                                      "tpm_sign_alg": .string(quoter.signAlgorithm)])
    }

    /// Nonces are what Keylime sends: 1 to 64 ASCII letters and digits (TPM qualifying data is at most 64 bytes).
    static func nonce(_ request: Request) -> String? {
        guard let nonce = request.uri.queryParameters.get("nonce"), (1...64).contains(nonce.utf8.count),
              nonce.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }) else {
            return nil
        }
        return nonce
    }

    func identityQuote(_ request: Request, version: String) async -> Response {
        guard let nonce = Self.nonce(request) else {
            return Self.respond(400, "Bad Request: nonce must be 1 to 64 letters or digits (?nonce=...)")
        }
        do {
            let quote = try await quoter.quote(nonce: nonce, pcrs: [KeylimeQuoter.dataPCR])
            logger.debug("keylime identity quote", metadata: ["pcrs": "16"])
            return Self.respond(200, "Success", ["quote": .string(quote), "hash_alg": .string("sha256"),
                                                 "enc_alg": .string(KeylimeAPI.encryptionAlgorithm(version: version)),
                                                 "sign_alg": .string(quoter.signAlgorithm), "pubkey": .string(keys.publicKeyPEM),
                                                 "boottime": .int(HostLogs.bootTime())])
        } catch let busy as TPMGate.Busy {
            return Self.respond(429, "Too Many Requests: \(busy)")
        } catch {
            logger.error("keylime identity quote failed", metadata: ["error": "\(error)"])
            return Self.respond(500, "Internal Server Error: the TPM could not quote: \(error)")
        }
    }

    func integrityQuote(_ request: Request, version: String) async -> Response {
        guard let nonce = Self.nonce(request) else {
            return Self.respond(400, "Bad Request: nonce must be 1 to 64 letters or digits (?nonce=...)")
        }
        let query = request.uri.queryParameters
        guard let maskText = query.get("mask"), let mask = Self.mask(maskText) else {
            return Self.respond(400, "Bad Request: mask must be a PCR bit mask of PCRs 0-23, e.g. mask=0x8000")
        }
        let partialText = query.get("partial") ?? "1"
        guard partialText == "0" || partialText == "1" else { return Self.respond(400, "Bad Request: partial must be 0 or 1") }
        let imaEntryText = query.get("ima_ml_entry") ?? "0"
        guard let imaEntry = Int(imaEntryText), imaEntry >= 0 else {
            return Self.respond(400, "Bad Request: ima_ml_entry must be a non-negative integer")
        }
        let pcrs = KeylimeQuoter.pcrs(mask: mask)
        do {
            let quote = try await quoter.quote(nonce: nonce, pcrs: pcrs)
            var results: [String: KeylimeValue] = [
                "quote": .string(quote), "hash_alg": .string("sha256"),
                "enc_alg": .string(KeylimeAPI.encryptionAlgorithm(version: version)),
                "sign_alg": .string(quoter.signAlgorithm), "boottime": .int(HostLogs.bootTime()),
            ]
            if partialText == "0" { results["pubkey"] = .string(keys.publicKeyPEM) }
            if pcrs.contains(10), let ima = HostLogs.imaList(from: imaEntry) {
                results["ima_measurement_list"] = .string(ima.text)
                results["ima_measurement_list_entry"] = .int(ima.entry)
            }
            if pcrs.contains(0), let log = HostLogs.bootLog() { results["mb_measurement_list"] = .string(log) }
            logger.debug("keylime integrity quote", metadata: ["pcrs": "\(pcrs.map(String.init).joined(separator: ","))",
                                                              "partial": .string(partialText)])
            return Self.respond(200, "Success", results)
        } catch let busy as TPMGate.Busy {
            return Self.respond(429, "Too Many Requests: \(busy)")
        } catch {
            logger.error("keylime integrity quote failed", metadata: ["error": "\(error)"])
            return Self.respond(500, "Internal Server Error: the TPM could not quote: \(error)")
        }
    }

    /// "0x8000", "8000" (hex, as the verifier sends it) within PCRs 0-23.
    static func mask(_ text: String) -> UInt32? {
        let digits = text.hasPrefix("0x") || text.hasPrefix("0X") ? text.dropFirst(2) : Substring(text)
        guard !digits.isEmpty, digits.count <= 6, let value = UInt32(digits, radix: 16), value < (1 << 24) else { return nil }
        return value
    }

    struct KeyBody: Decodable {
        let encrypted_key: String
        let auth_tag: String?
        let payload: String?
    }

    func receiveKey(_ request: Request, half: KeylimeKeys.Half) async -> Response {
        let name = half == .u ? "ukey" : "vkey"
        guard let body = await Self.body(request, limit: Self.maxBody) else {
            return Self.respond(413, "Payload Too Large: the body is larger than \(Self.maxBody) bytes")
        }
        guard let parsed = try? JSONDecoder().decode(KeyBody.self, from: Data(body)) else {
            return Self.respond(400, "Bad Request: body must be JSON {\"encrypted_key\": base64\(half == .u ? ", \"auth_tag\": hex, \"payload\": base64 (optional)" : "")}")
        }
        guard let encrypted = Data(base64Encoded: parsed.encrypted_key) else {
            return Self.respond(400, "Bad Request: encrypted_key is not base64")
        }
        var payload: [UInt8]?
        if half == .u, let text = parsed.payload, !text.isEmpty {
            guard let data = Data(base64Encoded: text) else { return Self.respond(400, "Bad Request: payload is not base64") }
            payload = Array(data)
        }
        do {
            let complete = try await keys.receive(half, encryptedKey: Array(encrypted), authTag: parsed.auth_tag, payload: payload)
            logger.info("keylime \(name) received", metadata: ["key_derived": .stringConvertible(complete)])
            if complete, let delivered = await keys.payload { await onPayload(delivered) }
            if half == .v { await onVerifierKey() }
            return Self.respond(200, "Success")
        } catch {
            logger.warning("keylime \(name) refused", metadata: ["reason": .string(error.reason)])
            return Self.respond(400, "Bad Request: \(error.reason)")
        }
    }

    func verify(_ request: Request) async -> Response {
        guard let challenge = request.uri.queryParameters.get("challenge"), (1...1024).contains(challenge.utf8.count) else {
            return Self.respond(400, "Bad Request: challenge is required (?challenge=...)")
        }
        guard let hmac = await keys.verify(challenge: String(challenge)) else {
            return Self.respond(400, "Bad Request: the bootstrap key K is not derived yet (U and V are needed)")
        }
        return Self.respond(200, "Success", ["hmac": .string(hmac)])
    }

    func revocation(_ request: Request) async -> Response {
        guard let body = await Self.body(request, limit: 1 << 20) else {
            return Self.respond(413, "Payload Too Large: a revocation notice is at most 1 MiB")
        }
        let notice: RevocationNotice
        do {
            notice = try revocations.accept(body)
        } catch {
            logger.warning("keylime revocation notice refused", metadata: ["reason": .string(error.reason)])
            return Self.respond(400, "Bad Request: \(error.reason)")
        }
        guard notice.agentID == uuid else {
            logger.info("keylime revocation notice for another agent", metadata: ["agent": .string(notice.agentID)])
            return Self.respond(200, "Success")
        }
        if let noticeLog {
            do {
                try await noticeLog.admit(notice)
            } catch {
                logger.warning("keylime revocation notice refused", metadata: ["reason": .string(error.reason)])
                return Self.respond(409, "Conflict: \(error.reason)")
            }
        }
        logger.critical("revoked by the Keylime verifier: completions are refused from now on",
                        metadata: ["event": .string(notice.eventID ?? "none"), "type": .string(notice.type)])
        await onRevoked(notice.reason)
        return Self.respond(200, "Success")
    }

    // MARK: - helpers

    func versioned(_ context: BasicRequestContext, _ body: (String) -> Response) -> Response {
        switch Self.checkVersion(context) {
        case .success(let v): return body(v)
        case .failure(let response): return response.response
        }
    }

    func versionedAsync(_ context: BasicRequestContext, _ body: (String) async -> Response) async -> Response {
        switch Self.checkVersion(context) {
        case .success(let v): return await body(v)
        case .failure(let response): return response.response
        }
    }

    struct Refusal: Error { let response: Response }

    /// The path's API version; an unknown one gets 400 "API version not supported", which is what
    /// makes Keylime's verifier re-read `/version`. A path that is not a version is a 404.
    static func checkVersion(_ context: BasicRequestContext) -> Result<String, Refusal> {
        let component = context.parameters.get("version") ?? ""
        guard let version = KeylimeAPI.version(ofPathComponent: Substring(component)) else {
            return .failure(Refusal(response: respond(404, "Not Found: no such endpoint")))
        }
        guard KeylimeAPI.supportedVersions.contains(version) else {
            return .failure(Refusal(response: respond(400, "API version not supported: v\(version) (supported: \(KeylimeAPI.supportedVersions.joined(separator: ", ")))")))
        }
        return .success(version)
    }

    static func body(_ request: Request, limit: Int) async -> [UInt8]? {
        guard let buffer = try? await request.body.collect(upTo: limit) else { return nil }
        return Array(buffer.readableBytesView)
    }

    static func respond(_ code: Int, _ status: String, _ results: [String: KeylimeValue] = [:]) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(KeylimeEnvelope(code: code, status: status, results: results))) ?? Data()
        return Response(status: .init(code: code), headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Turns whatever the router throws (unknown path, wrong method, ...) into Keylime's envelope.
struct KeylimeEnvelopeMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let status = error.status
            let message = status == .notFound ? "Not Found: no such endpoint \(request.method) \(request.uri.path)"
                : "\(status.reasonPhrase): \(error.body ?? "")"
            return KeylimeAgentRoutes.respond(status.code, message)
        } catch {
            logger.error("keylime agent request failed", metadata: ["path": .string(request.uri.path), "error": "\(error)"])
            return KeylimeAgentRoutes.respond(500, "Internal Server Error")
        }
    }
}
