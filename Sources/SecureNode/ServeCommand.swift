import ArgumentParser
import Attestation
import Foundation
import Hummingbird
import ModelSigning
import NodeCore
import NodeHTTP
import NodeService
import Generation
import Inference
import Accelerators
import Crypto
import Logging
import ModelFormat
import KeylimeAgent
import ServerHardening
import ServiceLifecycle
import UnixSignals
import TPM

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the node: verify, measure and load the model, then serve the OpenAI-compatible and attestation APIs.",
        discussion: """
            Settings come from --config (or $SECURENODE_CONFIG; YAML, see deploy/securenode.yaml.example), \
            then the environment ($SECURENODE_TCTI, $SECURENODE_STATE_DIR), then these flags, each overriding \
            the one before. Order at start: load the profile; verify the model's signature (local signers given \
            here are accepted only where the profile allows local additions); parse the verified bytes as GGUF; \
            extend the model's measurement, then a fresh per-boot receipt key's digest, into the TPM; start the \
            scheduler; serve. /readyz answers 200 only once all of that succeeded and while the TPM answers. \
            SIGTERM (or SIGINT) stops accepting requests, lets running ones finish for limits.drain_seconds, then stops.
            """
    )

    @Option(help: "Configuration file (YAML).")
    var config: String?
    @Option(help: "Firmware profile (firmware-profiles/*.json).")
    var profile: String?
    @Option(help: "TPM TCTI: device:/dev/tpmrm0 in production, swtpm:host=127.0.0.1,port=N with a software TPM.")
    var tcti: String?
    @Option(name: .customLong("state-dir"), help: "Where the node keeps its event log (default /var/lib/securenode).")
    var stateDirectory: String?
    @Option(help: "The model directory, or a single model file.")
    var model: String?
    @Option(help: "The model's signature bundle.")
    var signature: String?
    @Option(name: .customLong("public-key"), help: "PEM public key of the model's signer.")
    var publicKey: String?
    @Option(name: .customLong("certificate-chain"), parsing: .upToNextOption, help: "PEM trust anchors of the model's signer.")
    var certificateChain: [String] = []
    @Option(name: .customLong("model-id"), help: "The model name API clients send (default: the model directory's name).")
    var modelID: String?
    @Option(help: "Address to bind (default 127.0.0.1: loopback only).")
    var host: String?
    @Option(help: "TCP port (0: any free port; the chosen one is printed).")
    var port: Int?
    @Option(help: "Engine threads (default: 2, or limits.threads).")
    var threads: Int?
    @Option(name: .customLong("model-key-sealed"),
            help: "An encrypted model's data key, sealed with `securenode seal` (model.key.sealed): unsealed into memory at start.")
    var modelKeySealed: String?
    @Option(name: .customLong("model-key-approval"), help: "A publisher approval for the sealed model key (model.key.approvals; repeat).")
    var modelKeyApprovals: [String] = []
    @Option(name: .customLong("model-key-policy-key"), help: "The policy-authorization public key of the sealed model key (model.key.policy_key; default: the profile's).")
    var modelKeyPolicyKey: String?
    @Option(name: .customLong("chat-template-file"),
            help: "A Jinja chat template file used instead of the model's tokenizer.chat_template (model.chat_template).")
    var chatTemplateFile: String?
    @Flag(help: "Bit-exact kernels for prompts too, never BLAS (or limits.exact: true).")
    var exact = false
    @Flag(name: .customLong("keylime-lab-unauthenticated-revocations"),
          help: "Lab only: allow keylime.mtls: false without keylime.revocation_certificate (anyone who reaches the agent API can revoke the node).")
    var keylimeLabUnauthenticatedRevocations = false

    func run() async throws {
        try await reportingFailures {
            let environment = ProcessInfo.processInfo.environment
            let file = try (config ?? environment["SECURENODE_CONFIG"]).map { path throws(ServiceError) in try ServiceConfig.load(path: path) }
                ?? ServiceConfig()
            guard let profilePath = profile ?? file.profile else { throw CLIFailure("no profile: give --profile or set profile: in the configuration") }
            guard let modelPath = model ?? file.model?.path else { throw CLIFailure("no model: give --model or set model.path") }
            guard let signaturePath = signature ?? file.model?.signature else { throw CLIFailure("no signature: give --signature or set model.signature") }
            let trustKey = publicKey ?? (certificateChain.isEmpty ? file.model?.publicKey : nil)
            let trustChain = certificateChain.isEmpty && publicKey == nil ? (file.model?.certificateChain ?? []) : certificateChain
            guard (trustKey == nil) != trustChain.isEmpty else {
                throw CLIFailure("give exactly one of a public key or a certificate chain for the model's signer (flags or model.public_key / model.certificate_chain)")
            }
            let defaultID = URL(fileURLWithPath: modelPath).deletingPathExtension().lastPathComponent
            var settings = ServiceSettings(modelID: defaultID)
            try settings.apply(file)
            if let modelID { settings.modelID = modelID }
            if let host { settings.host = host }
            if let port { settings.port = port }
            if let threads { settings.threads = threads }
            if exact { settings.exact = true }
            if !settings.exact { OpenBLASCoreType.reexecIfMisdetected() }
            try settings.validate()
            // Every listener may hold server.max_connections connections: the open-file limit must allow them.
            let listeners = file.keylime == nil ? 1 : 2
            do {
                try FileDescriptorLimit.ensure(settings.connections.fileDescriptorsNeeded(listeners: listeners),
                                               for: "server.max_connections \(settings.connections.maxConnections) on \(listeners) listener(s)")
            } catch {
                throw CLIFailure("\(error)")
            }

            let unboundAttestor = try TPMOptions.attestor(profile: profilePath,
                                                   tcti: tcti ?? environment["SECURENODE_TCTI"] ?? file.tcti ?? "device:/dev/tpmrm0",
                                                   stateDirectory: stateDirectory ?? environment["SECURENODE_STATE_DIR"] ?? file.stateDir)
            // The process will hold unsealed private keys: no core dumps, no ptrace by the same user.
            ServedKeys.hardenProcess()
            var logger = Logger(label: "securenode")
            logger.logLevel = .info

            // A revocation outlives the process (<state-dir>/revocation.json): a revoked node that restarts stays revoked.
            let readiness = Readiness(store: RevocationStore(directory: unboundAttestor.store.directory))
            if let revoked = await readiness.revocation {
                StandardError.write("securenode: starting revoked, completions are refused: \(revoked)\n")
            }
            // The node keys (README "Node keys"): refused here, before the model, when they do not unseal.
            let servedKeys = try await ServedKeys.open(file: file, settings: settings, attestor: unboundAttestor, profilePath: profilePath)
            guard let akHandle = unboundAttestor.profile.akHandle, let akType = AttestationKeyType(rawValue: unboundAttestor.profile.attestationKey.type) else {
                throw CLIFailure("profile \(unboundAttestor.profile.id) has no usable attestation key")
            }
            // The Keylime agent: started here when it must deliver the model's key (before the model loads), else with the API.
            let keylime = try file.keylime.map { section in
                try Self.keylimeConfiguration(section, stateDirectory: unboundAttestor.store.directory.path,
                                              labUnauthenticatedRevocations: keylimeLabUnauthenticatedRevocations,
                                              connections: settings.connections)
            }
            let makeKeylimeServices = { (keylime: KeylimeAgentConfiguration, onPayload: (@Sendable ([UInt8]) async -> Void)?) async throws -> [any Service] in
                guard let agentKeys = servedKeys.agent else { throw CLIFailure("the Keylime agent's node keys are not open") }
                return try await KeylimeAgent.services(
                    configuration: keylime, tpm: unboundAttestor.tpm, attestationKeyHandle: akHandle, attestationKeyType: akType,
                    keys: agentKeys, logger: logger, onRevoked: { reason in await readiness.revoke(reason: reason) },
                    onRunning: { [keylime] port in
                        StandardError.write("securenode: keylime agent \(keylime.uuid) on \(keylime.mtls ? "https" : "http")://\(keylime.host):\(port) (registrar \(keylime.registrar.absoluteString))\n")
                    },
                    onAttested: {
                        // Keylime's verifier sends V only after this node's quote passed its policy.
                        if await readiness.reinstate(reason: "the Keylime verifier attested the node again") {
                            StandardError.write("securenode: the Keylime verifier attested the node again; the revocation is cleared\n")
                        }
                    },
                    onPayload: onPayload)
            }

            // An encrypted model: its data key is released into memory only (README "Confidential models").
            let keySource = try ModelKeySource.resolve(file.model?.key, sealedFlag: modelKeySealed, approvalFlags: modelKeyApprovals,
                                                       policyKeyFlag: modelKeyPolicyKey, keylimeConfigured: keylime != nil)
            var dataKey: DataKey?
            var earlyKeylime: (group: ServiceGroup, task: Task<Void, any Error>)?
            switch keySource {
            case .sealed(let path, let approvals, let policyKeyPath)?:
                dataKey = try await ModelKeyRelease.unseal(path: path, approvals: approvals, policyKeyPath: policyKeyPath,
                                                           profilePath: profilePath, attestor: unboundAttestor, readiness: readiness)
            case .keylime(let seconds)?:
                guard let keylime else { throw CLIFailure("model.key.keylime needs the keylime: section") }
                let mailbox = KeylimeKeyMailbox()
                let services = try await makeKeylimeServices(keylime) { payload in mailbox.deliver(payload) }
                let group = ServiceGroup(configuration: .init(services: services, logger: logger))
                earlyKeylime = (group, Task {
                    do {
                        try await group.run()
                    } catch {
                        mailbox.fail("\(error)")
                        throw error
                    }
                })
                StandardError.write("securenode: waiting up to \(seconds) s for Keylime to release the model's data key (keylime_tenant -c add ... -f KEYFILE)\n")
                dataKey = try await ModelKeyRelease.awaitKeylime(mailbox: mailbox, readiness: readiness, seconds: seconds)
            case nil:
                break
            }
            let loaded: LoadedModel
            do {
                defer { dataKey?.wipe() }
                loaded = try await LoadedModel.open(model: modelPath, signature: signaturePath,
                                                    trust: try TrustOptions.anchor(publicKey: trustKey, certificateChain: trustChain), key: dataKey)
            }
            dataKey = nil
            try await unboundAttestor.measure(loaded.verified, localSigners: [loaded.verified.signer.fingerprint])
            let llama = try LlamaModel(file: loaded.gguf)
            let tokenizer = try Tokenizer(file: loaded.gguf)
            guard settings.contextLength <= llama.config.contextLength else {
                throw CLIFailure("limits.context_length \(settings.contextLength) is longer than the model's context (\(llama.config.contextLength))")
            }
            // The chat template: --chat-template-file / model.chat_template, else the model's own. An
            // operator's file that does not parse stops the start with its line named; a model's own
            // template that does not parse is a warning naming its line, and the node serves the model
            // without chat (chat requests get a 400 naming /v1/completions), as for a model without one.
            let templateFile = (chatTemplateFile ?? file.model?.chatTemplate).flatMap { $0.isEmpty ? nil : $0 }
            let template: ChatTemplate?
            // An operator's template is measured with the receipt key (the model's own is covered by its signature).
            let templateSource = try templateFile.map { try FileText.read($0, what: "chat template") }
            let chatTemplateSHA256 = templateSource.map { hexString(Array(SHA256.hash(data: Array($0.utf8)))) }
            if let templateSource {
                template = try ChatTemplate.forModel(source: templateSource, tokenizer: tokenizer)
            } else {
                do {
                    template = try ChatTemplate.forModel(source: loaded.gguf.string("tokenizer.chat_template"), tokenizer: tokenizer)
                } catch {
                    StandardError.write("warning: the model's chat template is not served (\(error)); /v1/chat/completions refuses, /v1/completions serves; model.chat_template can give one\n")
                    template = nil
                }
            }
            let metrics = NodeMetrics()
            // The profile picks the backend: the CPU, or a modeled device (computes on the host, accounts the device's time).
            let backend = try BackendFactory.backend(for: unboundAttestor.profile.backend, threads: settings.threads)
            let engine = LlamaEngine(model: llama, backend: backend, contextCapacity: settings.contextLength,
                                     batchCapacity: max(64, settings.parallel), prefill: settings.exact ? .exact : .default)
            let scheduler = try InferenceScheduler(
                engine: engine, tokenizer: tokenizer,
                limits: .init(parallel: settings.parallel, queueDepth: settings.queueDepth, perKeyLimit: settings.perKeyConcurrency,
                              batchTokens: engine.batchCapacity, promptCache: settings.promptCache,
                              keepsAnswers: settings.keepsAnswers, decodesAsPromptRows: settings.resolvedDecoding == .promptRows),
                contextLength: settings.contextLength, drainTimeout: .seconds(settings.drainSeconds), observer: metrics)

            // The per-boot receipt key: its digest goes into the TPM after the model's measurement.
            let receiptKey = P256.Signing.PrivateKey()
            let keyDigest = Receipt.keyDigest(receiptKey.publicKey)
            try await unboundAttestor.measureReceiptKey(sha256: keyDigest, chatTemplateSHA256: chatTemplateSHA256,
                                                        decodesAsPromptRows: settings.resolvedDecoding == .promptRows)
            // The key of the certificate the API serves is bound to this process too (after the receipt key), so that a
            // client (`securenode proxy`, `enroll`) accepts that certificate only from the node its evidence attests.
            // Whichever path serves TLS (the node's sealed api-tls key, or the operator's files), this is its certificate.
            let tlsKeyDigest = try servedKeys.apiCertificatePEM.map { pem throws in
                try TLSKeyMeasurement.keyDigest(certificatePEM: pem, source: "the API's TLS certificate")
            }
            let measureTLSKey = { @Sendable (attestor: Attestor) async throws in
                if let tlsKeyDigest { try await attestor.measureTLSKey(sha256: tlsKeyDigest, receiptKeySHA256: keyDigest) }
            }
            try await measureTLSKey(unboundAttestor)
            // This process's evidence names its own model and keys, whatever else shares the TPM.
            let attestor = unboundAttestor.serving(model: ModelMeasurement(verified: loaded.verified, profile: unboundAttestor.profile.id),
                                                   receiptKeySHA256: keyDigest, tlsKeySHA256: tlsKeyDigest)
            let ak = try await attestor.tpm.attestationKey(akType, persistentHandle: akHandle)
            let akName = hexString(try TPMPublicKey(marshaled: ak.publicArea).name)
            let scheme = settings.tls == nil ? "http" : "https"
            let receipts = ReceiptIssuer(key: receiptKey,
                                         reference: .init(akName: akName, pcr: attestor.profile.receiptPCR, receiptKeySHA256: keyDigest,
                                                          evidenceURL: "\(scheme)://\(settings.host):\(settings.port)/v1/attestation"),
                                         modelID: settings.modelID, manifestRoot: loaded.verified.rootDigestHex, profile: attestor.profile.id,
                                         chatTemplateSHA256: chatTemplateSHA256)
            let parser = CompletionRequestParser(settings: settings, tokenizer: tokenizer, chatTemplate: template)
            let worker = RequestWorker(threads: 2, queueDepth: settings.parallel + settings.queueDepth)
            let openAI = OpenAIRoutes(settings: settings, parser: parser, scheduler: scheduler, worker: worker, metrics: metrics,
                                      receipts: receipts, readiness: readiness)
            // A revoked node (Keylime's verifier found its quote wrong) refuses completions and cuts running streams.
            await readiness.onRevocation { [scheduler, metrics] _ in
                scheduler.cancelAll()
                metrics.setReady(false)
            }
            var keylimeServices: [any Service] = []
            if let keylime, earlyKeylime == nil {
                keylimeServices = try await makeKeylimeServices(keylime, nil)
            }
            await readiness.onReinstatement { [metrics] _ in metrics.setReady(true) }
            await readiness.set(ready: true, reason: "\(loaded.verified.manifest.subjectName) (\(loaded.verified.rootDigestHex))")
            metrics.setReady(await readiness.state.ready)
            let final = settings
            // The TPM is checked in the background (`/readyz` never waits on it); after a TPM reset the node measures
            // what it serves again, as at start.
            let verified = loaded.verified
            let health = TPMHealth(attestor: attestor, remeasure: {
                try await attestor.measure(verified, localSigners: [verified.signer.fingerprint])
                try await attestor.measureReceiptKey(sha256: keyDigest, chatTemplateSHA256: chatTemplateSHA256,
                                                     decodesAsPromptRows: final.resolvedDecoding == .promptRows)
                try await measureTLSKey(attestor)
            }, onChange: { healthy in
                Task {
                    let ready = await readiness.state.ready
                    metrics.setReady(healthy && ready)
                }
            })
            await health.check()
            let routes = NodeRoutes(attestor: attestor, readiness: readiness, gate: TPMGate(concurrent: 2, waiting: 8, perSecond: 10, burst: 20), health: health)
            let app = try ServiceApplication.make(nodeRoutes: routes, openAI: openAI,
                                                  settings: settings, logger: logger, additionalServices: keylimeServices,
                                                  tls: servedKeys.apiTLS) { port in
                StandardError.write("securenode: serving model \(final.modelID) on \(scheme)://\(final.host):\(port) (profile \(attestor.profile.id), \(final.parallel) parallel, receipt key \(keyDigest.prefix(16))\(servedKeys.apiSPKISHA256.map { ", TLS key spki-sha256 \($0.prefix(16))" } ?? ""))\n")
            }
            // Graceful shutdown runs in reverse order: the scheduler drains first (new completions get 503, running
            // ones finish until limits.drain_seconds, the rest fail), then the HTTP server closes its connections.
            let group = ServiceGroup(configuration: .init(services: [app, health, scheduler],
                                                          gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            worker.stop()
            if let earlyKeylime {
                await earlyKeylime.group.triggerGracefulShutdown()
                _ = await earlyKeylime.task.result
            }
        }
    }
}

extension ServeCommand {
    /// The `keylime:` section as the agent's configuration.
    static func keylimeConfiguration(_ section: ServiceConfig.Keylime, stateDirectory: String,
                                     labUnauthenticatedRevocations: Bool = false,
                                     connections: ServerLimits = ServerLimits()) throws -> KeylimeAgentConfiguration {
        guard let registrar = URL(string: section.registrar) else { throw CLIFailure("keylime.registrar is not a URL: \(section.registrar)") }
        var configuration = KeylimeAgentConfiguration(
            uuid: section.uuid, registrar: registrar, host: section.host ?? "127.0.0.1", port: section.port ?? 9002,
            contactIP: section.contactIP, contactPort: section.contactPort, mtls: section.mtls ?? true,
            trustedClientCA: section.trustedClientCA, serverCertificate: section.serverCertificate, serverKey: section.serverKey,
            revocationCertificate: section.revocationCertificate, stateDirectory: stateDirectory,
            connections: connections)
        configuration.allowUnauthenticatedRevocations = labUnauthenticatedRevocations
        do {
            try configuration.validate()
        } catch {
            throw CLIFailure(error.reason)
        }
        return configuration
    }
}

struct EnrollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Orchestrator side (no TPM needed): enroll a node's attestation key.",
        discussion: """
            Fetches the node's EK and AK (GET /v1/enrollment), checks the EK certificate against the profile's \
            ekCAs (and --ek-ca), challenges the AK with MakeCredential against that EK, and requires the node to \
            answer it with TPM2_ActivateCredential (POST /v1/enrollment/activate). Writes the enrollment record \
            that `securenode verify --enrolled` trusts. Over https, a certificate that no trusted CA signed (a \
            self-signed one) is accepted only if the node's evidence, fetched for a fresh nonce after the AK is \
            activated and appraised as `securenode verify` does, binds its key.
            """
    )

    @Option(help: "The node's base URL, e.g. http://127.0.0.1:8080.")
    var node: String
    @Option(help: "Firmware profile JSON.")
    var profile: String
    @Option(name: .customLong("ek-ca"), help: "Additional trusted EK CA certificates (PEM).")
    var ekCA: [String] = []
    @Option(name: .customLong("out"), help: "Where to write the enrollment record (JSON).")
    var output: String

    func run() async throws {
        try await reportingFailures {
            guard let url = URL(string: node), url.scheme == "http" || url.scheme == "https" else {
                throw CLIFailure("--node must be an http(s) URL")
            }
            let profile = try FirmwareProfile.load(path: self.profile)
            let base = URL(fileURLWithPath: self.profile).deletingLastPathComponent()
            // The profile's ekCAs resolve against its folder (a leading ${VAR} with a relative value, against
            // the current directory); --ek-ca paths, typed here, against the current directory.
            let fromProfile = try EnrollmentVerifier.loadCAs(profile.ekCAs, relativeTo: base)
            let fromFlags = try EnrollmentVerifier.loadCAs(ekCA, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true))
            let cas = fromProfile.certificates + fromFlags.certificates
            for path in fromProfile.missing + fromFlags.missing { StandardError.write("warning: EK CA \(path) does not exist; not trusted\n") }
            guard !cas.isEmpty else {
                throw CLIFailure("no EK CA to trust: none of the profile's ekCAs exist (\((fromProfile.missing + fromFlags.missing).joined(separator: ", "))); give --ek-ca")
            }
            // Over https, a certificate no CA vouches for is accepted only if the node's appraised evidence binds its key.
            let (record, certificate) = try await EnrollmentClient(node: url, profile: profile, verifier: EnrollmentVerifier(trustedCAs: cas),
                                                                   vendorCAs: try EvidenceVerifier.loadVendorCAs(profile: profile, profilePath: self.profile))
                .enrollReportingCertificate()
            if case .boundByEvidence(let key) = certificate { print("the node's TLS certificate (key \(key)) is the one its evidence binds") }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try FileText.writeAtomically(Array(try encoder.encode(record)), to: output)
            print("enrolled AK \(record.akName) of \(node) (EK certificate \"\(record.ekCertificateSubject)\") -> \(output)")
        }
    }
}
