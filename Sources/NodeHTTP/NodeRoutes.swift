import Attestation
import Foundation
import Hummingbird
import ModelSigning
import NIOConcurrencyHelpers
import NodeCore
import TPM

/// The node's attestation, enrollment and health endpoints (the OpenAI-compatible API joins them
/// in the service stage). Formats are documented in firmware-profiles/README.md.
///
/// The endpoints that cause TPM work are open (an orchestrator must reach them), so they check
/// their input first and then pass `gate`: a bounded number run, a bounded number wait, the rest get
/// 429 at once. `/healthz` and `/readyz` never touch the TPM: `/readyz` reads the background
/// `TPMHealth` check.
public struct NodeRoutes: Sendable {
    public let attestor: Attestor
    public let readiness: Readiness
    public let gate: TPMGate
    public let health: TPMHealth?
    /// Credential activations are TPM work a client triggers: at most this many per minute.
    public let activations: ActivationLimiter

    public init(attestor: Attestor, readiness: Readiness, gate: TPMGate = TPMGate(), health: TPMHealth? = nil,
                activationsPerMinute: Int = 10) {
        self.attestor = attestor
        self.readiness = readiness
        self.gate = gate
        self.health = health
        self.activations = ActivationLimiter(perMinute: activationsPerMinute)
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        router.get("/healthz") { _, _ in Self.json(["status": "alive"]) }
        router.get("/readyz") { _, _ in await readinessResponse() }
        router.get("/v1/attestation") { request, _ in await attestation(request) }
        router.get("/v1/enrollment") { _, _ in await gated { await enrollmentIdentity() } }
        router.post("/v1/enrollment/activate") { request, _ in await activate(request) }
    }

    func readinessResponse() async -> Response {
        let state = await readiness.state
        guard state.ready else { return Self.json(["status": "not ready", "reason": state.reason], status: .serviceUnavailable) }
        if let status = health?.status, !status.healthy {
            return Self.json(["status": "not ready", "reason": status.reason], status: .serviceUnavailable)
        }
        return Self.json(["status": "ready", "profile": attestor.profile.id, "model": state.reason])
    }

    /// Runs TPM work through the gate; 429 with `Retry-After` when it is full.
    /// A refused caller's 429 is held back for `refusalDelay` (its `Retry-After`), up to
    /// `heldRefusals` at a time: a client that floods back to back is slowed to a request a second
    /// without the node spending anything on it meanwhile (answering thousands of 429s a second took
    /// most of a core from inference); beyond that many, refusals are answered at once, so held
    /// answers cannot fill the connection slots.
    func gated(_ work: @Sendable () async -> Response) async -> Response {
        do {
            return try await gate.run { await work() }
        } catch {
            var response = Self.error("\(error)", status: .tooManyRequests)
            response.headers[.retryAfter] = "1"
            if Self.heldRefusals.withLockedValue({ held in held < Self.maxHeldRefusals ? { held += 1; return true }() : false }) {
                try? await Task.sleep(for: Self.refusalDelay)
                Self.heldRefusals.withLockedValue { $0 -= 1 }
            }
            return response
        }
    }

    static let refusalDelay = Duration.seconds(1)
    static let maxHeldRefusals = 64
    static let heldRefusals = NIOLockedValueBox(0)

    func attestation(_ request: Request) async -> Response {
        guard let text = request.uri.queryParameters.get("nonce"), let nonce = ModelSigning.bytes(fromHex: text),
              (8...64).contains(nonce.count) else {
            return Self.error("nonce must be 16 to 128 hex digits (?nonce=HEX)", status: .badRequest)
        }
        return await gated {
            do {
                let evidence = try await attestor.evidence(nonce: nonce)
                return Self.body(evidence.jsonData())
            } catch {
                return Self.error("cannot produce evidence: \(error)", status: .serviceUnavailable)
            }
        }
    }

    /// GET /v1/enrollment: the EK (public area and certificate) and the AK an orchestrator enrolls.
    func enrollmentIdentity() async -> Response {
        do {
            guard let handle = attestor.profile.akHandle, let type = AttestationKeyType(rawValue: attestor.profile.attestationKey.type) else {
                return Self.error("the profile has no attestation key", status: .internalServerError)
            }
            let ek = try await attestor.tpm.endorsementKey()
            let ak = try await attestor.tpm.attestationKey(type, persistentHandle: handle)
            let identity = EnrollmentIdentity(profile: attestor.profile.id,
                                              ekPublic: Data(ek.publicArea).base64EncodedString(),
                                              ekCertificate: ek.certificateDER.map { Data($0).base64EncodedString() },
                                              akPublic: Data(ak.publicArea).base64EncodedString(),
                                              akName: hexString(try TPMPublicKey(marshaled: ak.publicArea).name))
            return Self.body(try JSONEncoder().encode(identity))
        } catch {
            return Self.error("cannot read the TPM's identity: \(error)", status: .serviceUnavailable)
        }
    }

    /// POST /v1/enrollment/activate: the node proves its AK and EK share a TPM by activating the
    /// orchestrator's MakeCredential challenge, and answers with a proof bound to the challenger's
    /// nonce and the AK (``CredentialChallenge/enrollmentProof(secret:nonce:akName:)``), never the
    /// recovered secret: a blob made for another protocol (a Keylime registrar's, for another agent
    /// id) yields nothing usable there. Rate-limited (429).
    func activate(_ request: Request) async -> Response {
        do {
            let body = try await request.body.collect(upTo: 16 << 10)
            guard let challenge = try? JSONDecoder().decode(EnrollmentChallenge.self, from: Data(body.readableBytesView)),
                  let blob = Data(base64Encoded: challenge.credentialBlob), let secret = Data(base64Encoded: challenge.encryptedSecret) else {
                return Self.error("body must be {\"credentialBlob\": base64, \"encryptedSecret\": base64, \"nonce\": hex}", status: .badRequest)
            }
            guard let nonce = ModelSigning.bytes(fromHex: challenge.nonce), (16...64).contains(nonce.count) else {
                return Self.error("nonce must be 32 to 128 hex digits: the proof is bound to the challenger's nonce", status: .badRequest)
            }
            guard await activations.admit() else {
                var response = Self.error("too many credential activations; try again in a minute", status: .tooManyRequests)
                response.headers[.retryAfter] = "60"
                return response
            }
            guard let handle = attestor.profile.akHandle, let type = AttestationKeyType(rawValue: attestor.profile.attestationKey.type) else {
                return Self.error("no attestation key", status: .internalServerError)
            }
            let proof = try await gate.run {
                let ak = try await attestor.tpm.attestationKey(type, persistentHandle: handle)
                let akName = try TPMPublicKey(marshaled: ak.publicArea).name
                var recovered = try await attestor.tpm.activateCredential(attestationKeyHandle: handle, credentialBlob: Array(blob),
                                                                          encryptedSecret: Array(secret))
                defer { for i in recovered.indices { recovered[i] = 0 } }
                return CredentialChallenge.enrollmentProof(secret: recovered, nonce: nonce, akName: akName)
            }
            return Self.body(try JSONEncoder().encode(EnrollmentProof(proof: hexString(proof))))
        } catch let error as TPMGate.Busy {
            var response = Self.error("\(error)", status: .tooManyRequests)
            response.headers[.retryAfter] = "1"
            return response
        } catch let error as TPMError where error.kind == .command {
            return Self.error("credential activation refused: \(error)", status: .unprocessableContent)
        } catch {
            return Self.error("credential activation failed: \(error)", status: .badRequest)
        }
    }

    static func body(_ data: Data, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func json(_ object: [String: String], status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return body((try? encoder.encode(object)) ?? Data(), status: status)
    }

    /// Errors in OpenAI's JSON shape, which the whole API uses.
    static func error(_ message: String, status: HTTPResponse.Status) -> Response {
        struct Envelope: Encodable { let error: Detail }
        struct Detail: Encodable { let message: String; let type: String; let code: Int }
        let data = (try? JSONEncoder().encode(Envelope(error: Detail(message: message, type: "securenode_error", code: status.code)))) ?? Data()
        return body(data, status: status)
    }
}

/// Whether the node has verified, measured and loaded its model, and has not been revoked.
/// A revocation (e.g. Keylime's verifier reporting a failed attestation) outlives the process when
/// the readiness has a ``RevocationStore``: it is written there before anyone is told, and a node
/// that starts with a persisted revocation starts revoked. Only ``reinstate(reason:)`` (the verifier
/// attested the node again) or `securenode revocation clear` (an operator) ends it.
public actor Readiness {
    private var current: (ready: Bool, reason: String) = (false, "starting: the model is not verified yet")
    /// Why the node was revoked, if it was.
    public private(set) var revocation: String?
    private var observers: [@Sendable (String) -> Void] = []
    /// Where the revocation is persisted (nil: in memory only, for tests and commands without a state directory).
    public nonisolated let store: RevocationStore?

    public init(store: RevocationStore? = nil) {
        self.store = store
        if let record = store?.load() {
            revocation = "\(record.reason) (revoked at \(record.revokedAt), persisted in \(store!.file.path); the verifier must attest "
                + "the node again, or an operator runs `securenode revocation clear`)"
        }
    }

    public var state: (ready: Bool, reason: String) {
        if let revocation { return (false, revocation) }
        return current
    }

    public func set(ready: Bool, reason: String) { current = (ready, reason) }

    /// Fails the node closed: completions are refused and `/readyz` answers 503 with `reason`.
    /// The first revocation's reason is kept and persisted before the observers run (once).
    public func revoke(reason: String) {
        guard revocation == nil else { return }
        revocation = reason
        do {
            try store?.save(RevocationRecord(reason: reason))
        } catch {
            // Still revoked for this process; the operator sees that a restart would forget it.
            revocation = reason + " (WARNING: not persisted: \(error))"
        }
        for observer in observers { observer(reason) }
    }

    /// Ends a revocation because the verifier attested the node again (`reason` says how); clears
    /// the persisted record. Returns whether the node was revoked.
    @discardableResult
    public func reinstate(reason: String) -> Bool {
        guard revocation != nil else { return false }
        do {
            try store?.clear()
        } catch {
            return false
        }
        revocation = nil
        for observer in reinstatementObservers { observer(reason) }
        return true
    }

    private var reinstatementObservers: [@Sendable (String) -> Void] = []

    /// Runs `observer` when a revocation ends (``reinstate(reason:)``).
    public func onReinstatement(_ observer: @escaping @Sendable (String) -> Void) {
        reinstatementObservers.append(observer)
    }

    /// Runs `observer` whenever the node is revoked (at once if it already is).
    public func onRevocation(_ observer: @escaping @Sendable (String) -> Void) {
        observers.append(observer)
        if let revocation { observer(revocation) }
    }
}

/// GET /v1/enrollment response.
public struct EnrollmentIdentity: Codable, Sendable {
    public var profile: String
    /// Marshaled TPM2B_PUBLIC of the EK (base64).
    public var ekPublic: String
    /// DER EK certificate (base64), when the TPM holds one.
    public var ekCertificate: String?
    /// Marshaled TPM2B_PUBLIC of the AK (base64).
    public var akPublic: String
    /// TPM name of the AK (hex).
    public var akName: String
}

/// POST /v1/enrollment/activate request and response.
public struct EnrollmentChallenge: Codable, Sendable {
    public var credentialBlob: String
    public var encryptedSecret: String
    /// The challenger's fresh nonce (hex, 16-64 bytes): the proof is bound to it.
    public var nonce: String
    public init(credentialBlob: String, encryptedSecret: String, nonce: String) {
        self.credentialBlob = credentialBlob
        self.encryptedSecret = encryptedSecret
        self.nonce = nonce
    }
}

public struct EnrollmentProof: Codable, Sendable {
    /// HMAC-SHA256 (hex) under the recovered secret (``CredentialChallenge/enrollmentProof(secret:nonce:akName:)``).
    public var proof: String
}

/// At most `perMinute` admissions in any 60-second window.
public actor ActivationLimiter {
    public let perMinute: Int
    private var recent: [ContinuousClock.Instant] = []

    public init(perMinute: Int) {
        self.perMinute = perMinute
    }

    public func admit() -> Bool {
        let now = ContinuousClock.now
        recent.removeAll { now - $0 > .seconds(60) }
        guard recent.count < perMinute else { return false }
        recent.append(now)
        return true
    }
}
