import Crypto
import CryptoExtras
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import ServerHardening
import ServiceLifecycle
import TPM

/// The agent's long-term keys, from the node's key store (``AgentTLSIdentity``, ``KeylimeKeys``):
/// unsealed by the TPM, held in memory only. Immutable (swift-crypto's RSA key is not yet marked
/// Sendable), hence `@unchecked`.
public struct AgentKeyMaterial: @unchecked Sendable {
    public let tlsKey: P256.Signing.PrivateKey
    public let payloadKey: _RSA.Encryption.PrivateKey
    public init(tlsKey: P256.Signing.PrivateKey, payloadKey: _RSA.Encryption.PrivateKey) {
        self.tlsKey = tlsKey
        self.payloadKey = payloadKey
    }
}

/// The node's Keylime agent: binds its payload key into PCR 16, serves the agent API on its own
/// listener (mutual TLS by default), and registers with the registrar in the background, retrying
/// with backoff until it succeeds or the node stops.
public enum KeylimeAgent {
    /// The services to run beside the node's own (the agent API server and the registration loop).
    public static func services(configuration: KeylimeAgentConfiguration, tpm: TPM, attestationKeyHandle: UInt32,
                                attestationKeyType: AttestationKeyType, keys nodeKeys: AgentKeyMaterial, logger: Logger,
                                onRevoked: @escaping @Sendable (String) async -> Void,
                                onRunning: @escaping @Sendable (Int) async -> Void = { _ in },
                                onAttested: @escaping @Sendable () async -> Void = {},
                                onPayload: (@Sendable ([UInt8]) async -> Void)? = nil) async throws(KeylimeError) -> [any Service] {
        try configuration.validate()
        let keys = try KeylimeKeys(uuid: configuration.uuid, privateKey: nodeKeys.payloadKey)
        let quoter = KeylimeQuoter(tpm: tpm, attestationKeyHandle: attestationKeyHandle, attestationKeyType: attestationKeyType)
        do {
            try await quoter.bind(publicKeyPEM: keys.publicKeyPEM)
        } catch {
            throw KeylimeError("cannot bind the agent key into PCR 16 (TPM2_PCR_Reset / Extend): \(error)")
        }
        let revocations = try configuration.revocationCertificate.map { path throws(KeylimeError) in try RevocationPolicy(certificatePEMFile: path) }
            ?? .mutualTLSOnly
        if !configuration.mtls && !revocations.requiresSignature {
            // validate() refused this unless the lab flag was given.
            logger.warning("LAB ONLY: keylime agent API without mutual TLS and without a revocation certificate: anyone who reaches it can revoke the node")
        }
        let noticeLog = RevocationNoticeLog(file: URL(fileURLWithPath: configuration.stateDirectory).appendingPathComponent("keylime/revocation-notices.json"),
                                            maximumAge: TimeInterval(configuration.revocationMaxAgeSeconds))
        let identity = configuration.mtls ? try AgentTLSIdentity.load(configuration: configuration, nodeKey: nodeKeys.tlsKey) : nil
        let payloadPath = URL(fileURLWithPath: configuration.stateDirectory).appendingPathComponent("keylime/payload.zip").path
        let routes = KeylimeAgentRoutes(uuid: configuration.uuid, quoter: quoter, keys: keys, revocations: revocations, logger: logger,
                                        onRevoked: onRevoked, onPayload: { payload in
            if let onPayload {
                // A secret for the node itself (an encrypted model's data key): handed over in memory, never written.
                await onPayload(payload)
                await keys.discardPayload()
                logger.info("keylime payload delivered in memory", metadata: ["bytes": .stringConvertible(payload.count)])
                return
            }
            // Kept for the operator (e.g. certificates a tenant delivers); never executed.
            let directory = (payloadPath as NSString).deletingLastPathComponent
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            if FileManager.default.createFile(atPath: payloadPath, contents: Data(payload), attributes: [.posixPermissions: 0o600]) {
                logger.info("keylime payload stored", metadata: ["path": .string(payloadPath), "bytes": .stringConvertible(payload.count)])
            }
        }, onVerifierKey: onAttested, noticeLog: noticeLog)
        // The same connection limits as the node's own listener (server.* in the configuration).
        let hardened = HardenedServer(limits: configuration.connections)
        let refusal = BodyLimitHandler.Refusal(contentType: "application/json") { limit in
            let data = (try? JSONEncoder().encode(KeylimeEnvelope(code: 413, status: "Payload Too Large: the body is larger than \(limit) bytes",
                                                                  results: [:]))) ?? Data()
            return String(decoding: data, as: UTF8.self)
        }
        let server: HTTPServerBuilder
        do {
            server = try hardened.builder(maxBodyBytes: KeylimeAgentRoutes.maxBody, refusal: refusal,
                                          tls: try identity?.serverTLS(clientCA: configuration.trustedClientCA))
        } catch let error as KeylimeError {
            throw error
        } catch {
            throw KeylimeError("cannot set up the agent API's TLS: \(error)")
        }
        let app = Application(router: routes.router(), server: server,
                              configuration: hardened.configuration(address: .hostname(configuration.host, port: configuration.port),
                                                                    serverName: "securenode-keylime-agent"),
                              onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? configuration.port) },
                              logger: logger)
        let registration = KeylimeRegistration(configuration: configuration, tpm: tpm, attestationKeyHandle: attestationKeyHandle,
                                               attestationKeyType: attestationKeyType, mtlsCertificatePEM: identity?.certificatePEM)
        return [app, RegistrationService(registration: registration, logger: logger)]
    }
}

/// Registers with the registrar, retrying (1 s doubling to 60 s) until it succeeds, then waits for shutdown.
struct RegistrationService: Service {
    let registration: KeylimeRegistration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var delay = 1.0
            while !Task.isCancelled {
                do {
                    let version = try await registration.run()
                    logger.info("registered and activated with the Keylime registrar",
                                metadata: ["uuid": .string(registration.configuration.uuid), "api": .string(version),
                                           "registrar": .string(registration.configuration.registrar.absoluteString)])
                    return
                } catch {
                    logger.error("Keylime registration failed; retrying", metadata: ["reason": .string("\(error)"),
                                                                                   "retry_seconds": .stringConvertible(delay)])
                    try? await Task.sleep(for: .seconds(delay))
                    delay = min(delay * 2, 60)
                }
            }
        }
        try? await gracefulShutdown()
    }
}
