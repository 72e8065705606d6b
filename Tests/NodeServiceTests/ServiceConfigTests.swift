import Attestation
import Crypto
import Foundation
import Inference
import ServerHardening
import Testing
@testable import NodeService

@Suite struct ServiceConfigTests {
    static let example = """
        profile: /etc/securenode/profiles/p.json
        tcti: device:/dev/tpmrm0
        state_dir: /var/lib/securenode
        model:
          id: smollm2
          path: /models/m
          signature: /models/m.sig
          public_key: /etc/securenode/publisher.pub.pem
        server:
          host: 0.0.0.0
          port: 8443
          tls:
            certificate: /tls/server.crt
            private_key: /tls/server.key
            client_ca: /tls/ca.pem
        auth:
          api_key_sha256: ["\(String(repeating: "ab", count: 32))"]
          open_health: true
          open_metrics: false
        limits:
          max_body_bytes: 4096
          max_prompt_tokens: 100
          max_tokens: 50
          context_length: 512
          parallel: 3
          queue_depth: 7
          drain_seconds: 5
        """

    @Test func theDeployExampleShapeParsesAndApplies() throws {
        let config = try ServiceConfig(yaml: Self.example)
        #expect(config.model?.id == "smollm2" && config.server?.tls?.clientCA == "/tls/ca.pem")
        var settings = ServiceSettings(modelID: "default")
        try settings.apply(config)
        #expect(settings.modelID == "smollm2" && settings.host == "0.0.0.0" && settings.port == 8443)
        #expect(settings.apiKeyDigests == [[UInt8](repeating: 0xab, count: 32)])
        #expect(!settings.openMetrics && settings.openHealth)
        #expect(settings.parallel == 3 && settings.queueDepth == 7 && settings.contextLength == 512 && settings.drainSeconds == 5)
    }

    @Test func theCommittedExampleFileParses() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../deploy/securenode.yaml.example")
        let config = try ServiceConfig.load(path: url.standardized.path)
        var settings = ServiceSettings(modelID: "x")
        try settings.apply(config)
        #expect(settings.host == "127.0.0.1")
        #expect(settings.maxN == 4)
    }

    @Test func tlsWithoutFilesServesWithTheNodeKey() throws {
        var settings = ServiceSettings(modelID: "m")
        let config = try ServiceConfig(yaml: "server:\n  tls: {}\nkeys:\n  policy_key: /k.pem\n  approvals: [/a.json]\n")
        try settings.apply(config)
        #expect(settings.tls?.usesNodeKey == true)
        #expect(config.keys?.approvals == ["/a.json"] && config.keys?.policyKey == "/k.pem")
    }

    @Test func refusesTLSWithOnlyOneOfCertificateAndKey() throws {
        var settings = ServiceSettings(modelID: "m")
        let config = try ServiceConfig(yaml: "server:\n  tls:\n    certificate: /c.pem\n")
        #expect(throws: ServiceError.self) { try settings.apply(config) }
        #expect(throws: ServiceError.self) { try ServiceConfig(yaml: "keys:\n  policy_keys: /k.pem\n") }
    }

    @Test func anEmptyFileMeansDefaults() throws {
        var settings = ServiceSettings(modelID: "m")
        try settings.apply(try ServiceConfig(yaml: ""))
        #expect(settings.host == "127.0.0.1" && settings.port == 8080 && settings.apiKeyDigests.isEmpty)
    }

    @Test func aMisspelledKeyIsRefusedByName() {
        let text = Self.example.replacingOccurrences(of: "api_key_sha256", with: "api_keys_sha256")
        #expect { try ServiceConfig(yaml: text) } throws: { ($0 as? ServiceError)?.reason.contains("auth.api_keys_sha256") == true }
        #expect { try ServiceConfig(yaml: "prot: 1") } throws: { ($0 as? ServiceError)?.reason.contains("unknown key prot") == true }
    }

    @Test func theModelKeySectionParsesAndRefusesMisspelledKeys() throws {
        let sealed = Self.example.replacingOccurrences(of: "  public_key: /etc/securenode/publisher.pub.pem\n",
            with: "  public_key: /etc/securenode/publisher.pub.pem\n  key:\n    sealed: /s/key.sealed.json\n    approvals: [/a/1.json]\n    policy_key:\n    keylime: false\n    wait_seconds: 60\n")
        let config = try ServiceConfig(yaml: sealed)
        #expect(config.model?.key == .init(sealed: "/s/key.sealed.json", approvals: ["/a/1.json"], policyKey: nil, keylime: false, waitSeconds: 60))
        let misspelled = sealed.replacingOccurrences(of: "sealed: /s", with: "seal: /s")
        #expect { try ServiceConfig(yaml: misspelled) } throws: { ($0 as? ServiceError)?.reason.contains("unknown key model.key.seal") == true }
        let committed = try ServiceConfig.load(path: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../deploy/securenode.yaml.example").standardized.path)
        #expect(committed.model?.key?.sealed == nil && committed.model?.key?.keylime == false, "the example serves a plaintext model")
    }

    @Test func aWrongTypeIsRefusedWithItsPath() {
        let text = Self.example.replacingOccurrences(of: "port: 8443", with: "port: eighty")
        #expect { try ServiceConfig(yaml: text) } throws: { ($0 as? ServiceError)?.reason.contains("server.port") == true }
    }

    @Test func aKeyInsteadOfItsDigestIsRefused() throws {
        var settings = ServiceSettings(modelID: "m")
        let config = try ServiceConfig(yaml: "auth:\n  api_key_sha256: [\"sk-live-123\"]\n")
        #expect { try settings.apply(config) } throws: { ($0 as? ServiceError)?.reason.contains("not a key") == true }
    }

    @Test func outOfRangeLimitsAreRefused() throws {
        for bad in ["limits:\n  parallel: 0", "limits:\n  max_body_bytes: 10", "server:\n  port: 70000", "limits:\n  queue_depth: -1",
                    "limits:\n  max_n: 0", "limits:\n  max_n: 17"] {
            var settings = ServiceSettings(modelID: "m")
            #expect(throws: ServiceError.self) { try settings.apply(try ServiceConfig(yaml: bad)) }
        }
    }

    /// A node with several slots decodes as prompt rows and keeps answers by default; a single-slot
    /// or exact node decodes one token at a time (llama.cpp's kernels); `limits.decoding` and
    /// `prompt_cache_answers` override; kept answers are refused by name without the prompt cache
    /// or with one-token decoding.
    @Test func promptCacheAnswersNeedThePromptCache() throws {
        func settings(_ yaml: String) throws -> ServiceSettings {
            var s = ServiceSettings(modelID: "m")
            if !yaml.isEmpty { try s.apply(try ServiceConfig(yaml: "limits:\n" + yaml)) }
            return s
        }
        let defaults = try settings("")
        #expect(defaults.parallel > 1 && defaults.resolvedDecoding == .promptRows && defaults.keepsAnswers)
        let single = try settings("  parallel: 1\n")
        #expect(single.resolvedDecoding == .oneToken && !single.keepsAnswers)
        #expect(try settings("  parallel: 1\n  decoding: prompt-rows\n").keepsAnswers)
        #expect(try settings("  exact: true\n").resolvedDecoding == .oneToken)
        #expect(try settings("  exact: true\n  decoding: prompt-rows\n").resolvedDecoding == .promptRows)
        let legacy = try settings("  prompt_cache_answers: false\n")
        #expect(legacy.resolvedDecoding == .oneToken && !legacy.keepsAnswers)
        let noCache = try settings("  prompt_cache: false\n")
        #expect(noCache.resolvedDecoding == .promptRows && !noCache.keepsAnswers)
        let decodingOnly = try settings("  decoding: prompt-rows\n  prompt_cache_answers: false\n")
        #expect(decodingOnly.resolvedDecoding == .promptRows && !decodingOnly.keepsAnswers)
        let exactAnswers = try settings("  exact: true\n  prompt_cache_answers: true\n")
        #expect(exactAnswers.resolvedDecoding == .promptRows && exactAnswers.keepsAnswers)
        #expect {
            _ = try settings("  prompt_cache: false\n  prompt_cache_answers: true\n")
        } throws: { ($0 as? ServiceError)?.reason.contains("limits.prompt_cache_answers needs limits.prompt_cache") == true }
        #expect {
            _ = try settings("  decoding: one-token\n  prompt_cache_answers: true\n")
        } throws: { ($0 as? ServiceError)?.reason.contains("limits.prompt_cache_answers needs limits.decoding") == true }
    }

    /// An unknown decoding is refused by name, the value quoted and cut short.
    @Test func refusesUnknownDecoding() throws {
        for bad in ["fast", "", "PROMPT-ROWS", String(repeating: "x", count: 10_000)] {
            var s = ServiceSettings(modelID: "m")
            #expect {
                try s.apply(try ServiceConfig(yaml: "limits:\n  decoding: \"\(bad)\"\n"))
            } throws: { error in
                guard let reason = (error as? ServiceError)?.reason else { return false }
                return reason.contains("limits.decoding must be \"one-token\" or \"prompt-rows\"") && reason.count < 200
            }
        }
    }

    @Test func connectionLimitsParseWithDefaultsForTheRest() throws {
        var settings = ServiceSettings(modelID: "m")
        #expect(settings.connections == ServerLimits())
        #expect(settings.connections.maxConnections == 512 && settings.connections.headerTimeout == .seconds(10))
        let text = "server:\n  max_connections: 32\n  header_timeout_seconds: 3\n  tls_handshake_timeout_seconds: 4\n"
        try settings.apply(try ServiceConfig(yaml: text))
        #expect(settings.connections == ServerLimits(maxConnections: 32, headerTimeout: .seconds(3), tlsHandshakeTimeout: .seconds(4)))
    }

    @Test func outOfRangeConnectionLimitsAreRefusedByName() throws {
        for (bad, name) in [("max_connections: 0", "server.max_connections"), ("header_timeout_seconds: 0", "server.header_timeout_seconds"),
                            ("body_timeout_seconds: 4000", "server.body_timeout_seconds"),
                            ("idle_timeout_seconds: -1", "server.idle_timeout_seconds"),
                            ("tls_handshake_timeout_seconds: 0", "server.tls_handshake_timeout_seconds")] {
            var settings = ServiceSettings(modelID: "m")
            #expect { try settings.apply(try ServiceConfig(yaml: "server:\n  \(bad)\n")) } throws: {
                ($0 as? ServiceError)?.reason.contains(name) == true
            }
        }
        #expect { try ServiceConfig(yaml: "server:\n  header_timeout: 3\n") } throws: {
            ($0 as? ServiceError)?.reason.contains("unknown key server.header_timeout") == true
        }
    }

    @Test func invalidYAMLIsRefused() {
        #expect(throws: ServiceError.self) { try ServiceConfig(yaml: "model: [unclosed") }
    }
}

/// Receipts: signed over every field, refused when anything the signature covers or the digests
/// name is changed (the TPM-bound checks run against real evidence in the service e2e tests).
@Suite struct ReceiptTests {
    static let key = P256.Signing.PrivateKey()
    static let request = Array(#"{"model":"m","prompt":"hi"}"#.utf8)

    func receipt() throws -> Receipt {
        let issuer = ReceiptIssuer(key: Self.key,
                                   reference: .init(akName: "000b" + String(repeating: "1", count: 64), pcr: 15,
                                                    receiptKeySHA256: Receipt.keyDigest(Self.key.publicKey), evidenceURL: "http://n/v1/attestation"),
                                   modelID: "m", manifestRoot: String(repeating: "2", count: 64), profile: "swtpm-dev")
        return try issuer.issue(id: "cmpl-1", created: 1_700_000_000, request: Self.request, responseText: "hello")
    }

    func firstFailure(_ r: Receipt, request: [UInt8] = request, text: String = "hello") -> String? {
        let evidence = Evidence(nonce: "00", quote: .init(attest: "", signature: ""), ak: .init(public: "", pem: "", name: ""),
                                pcrs: .init(bank: "sha256", values: [:]), eventLog: [], ekCertificate: nil, model: nil, profile: "swtpm-dev")
        return ReceiptVerifier.verify(receipt: r, request: request, responseText: text, evidence: evidence).first { $0.result == .fail }?.check
    }

    @Test func anIntactReceiptPassesTheSignatureAndDigestChecks() throws {
        // With placeholder evidence the first failure is the evidence's quote, after the receipt's own checks.
        #expect(firstFailure(try receipt()) == "evidence-quote")
    }

    @Test func aChangedResponseIsRefused() throws { #expect(firstFailure(try receipt(), text: "hello!") == "response-digest") }

    @Test func aChangedRequestIsRefused() throws {
        #expect(firstFailure(try receipt(), request: Array(#"{"model":"m","prompt":"ho"}"#.utf8)) == "request-digest")
    }

    @Test func aChangedFieldBreaksTheSignature() throws {
        var r = try receipt()
        r.modelManifestRoot = String(repeating: "3", count: 64)
        #expect(firstFailure(r) == "receipt-signature")
        r = try receipt()
        r.responseSHA256 = String(repeating: "0", count: 64)
        #expect(firstFailure(r) == "receipt-signature")
    }

    @Test func anotherKeysSignatureIsRefused() throws {
        var r = try receipt()
        try r.sign(with: P256.Signing.PrivateKey())
        #expect(firstFailure(r) == "receipt-signature")
    }

    @Test func theKeyDigestMustNameTheReceiptKey() throws {
        var r = try receipt()
        r.attestation.receiptKeySHA256 = String(repeating: "f", count: 64)
        try r.sign(with: Self.key)
        #expect(firstFailure(r) == "receipt-signature")
    }
}
