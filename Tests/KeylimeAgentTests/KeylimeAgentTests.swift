@testable import KeylimeAgent
import Attestation
import Crypto
import CryptoExtras
import Foundation
import ModelSigning
import Testing
import TPM
import TPMTestSupport

/// Runs openssl (an independent implementation) with `input` on standard input; returns stdout.
private func openssl(_ arguments: [String], input: [UInt8] = []) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = arguments
    let stdin = Pipe(), stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = FileHandle.nullDevice
    try process.run()
    stdin.fileHandleForWriting.write(Data(input))
    try stdin.fileHandleForWriting.close()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw KeylimeError("openssl \(arguments.joined(separator: " ")) failed") }
    return Array(out)
}

private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("keylime-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// HMAC-SHA384 by openssl, hex.
private func opensslHMAC(key: [UInt8], message: String) throws -> String {
    let out = try openssl(["mac", "-digest", "SHA384", "-macopt", "hexkey:\(hexString(key))", "HMAC"], input: Array(message.utf8))
    return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
}

@Suite struct KeylimeFormatTests {
    @Test func versionsAndMasksParseStrictly() {
        #expect(KeylimeAPI.version(ofPathComponent: "v2.5") == "2.5")
        for bad in ["2.5", "v2", "v2.", "v.5", "v2.5.1", "vx.y", "v1234.5", "v٢.٥"] {
            #expect(KeylimeAPI.version(ofPathComponent: Substring(bad)) == nil, "\(bad)")
        }
        #expect(KeylimeAgentRoutes.mask("0x8000") == 0x8000)
        #expect(KeylimeAgentRoutes.mask("408000") == 0x408000)
        for bad in ["", "0x", "zz", "0x1000000", "-1", "0x8000000000"] { #expect(KeylimeAgentRoutes.mask(bad) == nil, "\(bad)") }
        #expect(KeylimeQuoter.pcrs(mask: 0x8000) == [15, 16])
        #expect(KeylimeQuoter.pcrs(mask: 0x1_0001) == [0, 16])
        #expect(KeylimeAPI.encryptionAlgorithm(version: "2.4") == "rsa")
        #expect(KeylimeAPI.encryptionAlgorithm(version: "2.5") == "rsa2048")
    }

    /// Keylime's parser (tpm_util.__get_pcrs_from_blob) expects 132 bytes of selection, then 532 per list of eight.
    @Test func pcrFileHasKeylimesLayout() {
        let value = [UInt8](repeating: 0xAB, count: 32)
        let nine = Dictionary(uniqueKeysWithValues: (0..<9).map { ($0, value) })
        let file = PCRFile.serialize(sha256: nine)
        #expect(file.count == 4 + 16 * 8 + 4 + 2 * 532)
        #expect(Array(file[4..<12]) == [0x0B, 0x00, 3, 0xFF, 0x01, 0x00, 0, 0])
        #expect(Array(file[132..<136]) == [2, 0, 0, 0])  // two TPML_DIGEST lists
        #expect(Array(file[136..<140]) == [8, 0, 0, 0])
        #expect(Array(file[(136 + 532)..<(140 + 532)]) == [1, 0, 0, 0])
    }

    @Test func credentialBlobIsParsedAndMalformedOnesRefused() throws {
        let credential: [UInt8] = [0, 3, 1, 2, 3]
        let secret: [UInt8] = [0, 2, 9, 9]
        let blob: [UInt8] = [0xBA, 0xDC, 0xC0, 0xDE, 0, 0, 0, 1] + credential + secret
        let parsed = try KeylimeRegistration.parseCredentialBlob(blob)
        #expect(parsed.credential == credential && parsed.secret == secret)
        #expect(throws: KeylimeError.self) { try KeylimeRegistration.parseCredentialBlob(Array(blob.dropLast())) }
        #expect(throws: KeylimeError.self) { try KeylimeRegistration.parseCredentialBlob([0xBA, 0xDC, 0xC0, 0xDF] + blob.dropFirst(4)) }
        #expect(throws: KeylimeError.self) { try KeylimeRegistration.parseCredentialBlob(blob + [0]) }
    }

    /// The registrar checks HMAC-SHA384(key: base64(secret) as text, uuid); computed here by openssl.
    @Test func authTagMatchesAnIndependentHMAC() throws {
        let secret = Array("abcdefghijklmnopqrstuvwxyz012345".utf8)
        let uuid = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"
        let expected = try opensslHMAC(key: Array(Data(secret).base64EncodedString().utf8), message: uuid)
        #expect(KeylimeRegistration.authTag(secret: secret, uuid: uuid) == expected)
    }

    /// Random input to every parser of untrusted bytes: errors, never a crash.
    @Test func parsersSurviveRandomInput() {
        var generator = SystemRandomNumberGenerator()
        let policy = RevocationPolicy.mutualTLSOnly
        for round in 0..<4000 {
            let count = Int.random(in: 0...80, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if round % 4 == 0 { bytes = [0xBA, 0xDC, 0xC0, 0xDE, 0, 0, 0, 1] + bytes }
            _ = try? KeylimeRegistration.parseCredentialBlob(bytes)
            _ = try? policy.accept(bytes)
            let text = String(decoding: bytes, as: UTF8.self)
            _ = try? policy.accept(Array("{\"msg\": \(String(decoding: (try? JSONEncoder().encode(text)) ?? Data(), as: UTF8.self))}".utf8))
            _ = KeylimeAgentRoutes.mask(text)
            _ = KeylimeAPI.version(ofPathComponent: Substring(text))
        }
    }
}

@Suite struct KeylimeKeyExchangeTests {
    /// U and V encrypted by openssl (RSA-OAEP, SHA-1, as keylime's crypto.rsa_encrypt) to the agent's key.
    func encrypt(_ plain: [UInt8], to keys: KeylimeKeys, in directory: URL) throws -> [UInt8] {
        let pub = directory.appendingPathComponent("agent.pub.pem")
        try Data(keys.publicKeyPEM.utf8).write(to: pub)
        return try openssl(["pkeyutl", "-encrypt", "-pubin", "-inkey", pub.path, "-pkeyopt", "rsa_padding_mode:oaep",
                            "-pkeyopt", "rsa_oaep_md:sha1"], input: plain)
    }

    @Test func kIsDerivedOnlyWithTheTenantsAuthTag() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let uuid = "agent-1"
        let keys = try KeylimeKeys(uuid: uuid)
        let u = (0..<32).map { _ in UInt8.random(in: 0...255) }, v = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let k = zip(u, v).map { $0 ^ $1 }
        let tag = try opensslHMAC(key: k, message: uuid)
        // The payload as keylime's crypto.encrypt makes it: IV (16) | ciphertext | tag, AES-256-GCM under K.
        let plain = Array("payload for agent-1".utf8)
        let iv = (0..<16).map { _ in UInt8.random(in: 0...255) }
        let box = try AES.GCM.seal(plain, using: SymmetricKey(data: k), nonce: AES.GCM.Nonce(data: iv))
        let payload = iv + Array(box.ciphertext) + Array(box.tag)

        // A V that does not match the tag (a stale or forged half) gives no K.
        #expect(try await keys.receive(.v, encryptedKey: try encrypt(u, to: keys, in: directory), authTag: nil, payload: nil) == false)
        #expect(try await keys.receive(.u, encryptedKey: try encrypt(u, to: keys, in: directory), authTag: tag, payload: payload) == false)
        #expect(await keys.key == nil)
        #expect(await keys.verify(challenge: "c") == nil)
        // The right V completes it.
        #expect(try await keys.receive(.v, encryptedKey: try encrypt(v, to: keys, in: directory), authTag: nil, payload: nil))
        #expect(await keys.key == k)
        #expect(await keys.payload == plain)
        #expect(await keys.verify(challenge: "challenge-123") == (try opensslHMAC(key: k, message: "challenge-123")))
    }

    @Test func malformedHalvesAreRefused() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let keys = try KeylimeKeys(uuid: "agent-2")
        await #expect(throws: KeylimeError.self) { try await keys.receive(.v, encryptedKey: [1, 2, 3], authTag: nil, payload: nil) }
        let short = try encrypt([1, 2, 3], to: keys, in: directory)
        await #expect(throws: KeylimeError.self) { try await keys.receive(.v, encryptedKey: short, authTag: nil, payload: nil) }
        let u = try encrypt([UInt8](repeating: 7, count: 32), to: keys, in: directory)
        await #expect(throws: KeylimeError.self) { try await keys.receive(.u, encryptedKey: u, authTag: "zz", payload: nil) }
    }

    @Test func usesTheNodesPayloadKeyAndWritesNoFile() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // The node key store hands the same keylime-payload key to every start: PCR 16 stays as the verifier knows it.
        let der = try _RSA.Encryption.PrivateKey(keySize: .bits2048).derRepresentation
        let first = try KeylimeKeys(uuid: "a", privateKey: try _RSA.Encryption.PrivateKey(derRepresentation: der))
        let second = try KeylimeKeys(uuid: "a", privateKey: try _RSA.Encryption.PrivateKey(derRepresentation: der))
        #expect(first.publicKeyPEM == second.publicKeyPEM)
        #expect(first.publicKeyPEM == (try _RSA.Encryption.PrivateKey(derRepresentation: der)).publicKey.pemRepresentation + "\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }
}

@Suite struct RevocationTests {
    /// An RSA key and certificate made by openssl, and notices signed as keylime's crypto.rsa_sign
    /// does (RSA-PSS, SHA-256, MGF1-SHA-256, maximum salt length).
    struct Signer {
        let directory: URL
        var certificate: String { directory.appendingPathComponent("rev.crt").path }
        init() throws {
            directory = try temporaryDirectory()
            let key = directory.appendingPathComponent("rev.key").path
            _ = try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate,
                             "-subj", "/CN=RevocationNotifier-test-only", "-days", "1"])
        }
        func sign(_ message: String) throws -> String {
            let key = directory.appendingPathComponent("rev.key").path
            return Data(try openssl(["dgst", "-sha256", "-sign", key, "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max"],
                                    input: Array(message.utf8))).base64EncodedString()
        }
    }

    func body(_ message: String, signature: String?) -> [UInt8] {
        var object: [String: String] = ["msg": message]
        object["signature"] = signature
        return Array(try! JSONSerialization.data(withJSONObject: object))
    }

    let message = #"{"type": "revocation", "ip": "127.0.0.1", "agent_id": "agent-9", "port": 9002, "tpm_policy": "{}", "meta_data": "{}", "event_time": "Sun Nov 22 10:00:00 2026", "event_id": "pcr_validation.invalid_pcr_15", "severity_label": "emergency", "context": {"message": "PCR value is not in allowlist", "got": "ab"}}"#

    @Test func signedNoticeIsAcceptedAndTamperedOnesRefused() throws {
        let signer = try Signer()
        defer { try? FileManager.default.removeItem(at: signer.directory) }
        let policy = try RevocationPolicy(certificatePEMFile: signer.certificate)
        let signature = try signer.sign(message)
        let notice = try policy.accept(body(message, signature: signature))
        #expect(notice.agentID == "agent-9" && notice.eventID == "pcr_validation.invalid_pcr_15")
        #expect(notice.reason.contains("invalid_pcr_15") && notice.reason.contains("not in allowlist"))
        let tampered = message.replacingOccurrences(of: "agent-9", with: "agent-8")
        #expect(throws: KeylimeError.self) { try policy.accept(body(tampered, signature: signature)) }
        #expect(throws: KeylimeError.self) { try policy.accept(body(message, signature: nil)) }
        #expect(throws: KeylimeError.self) { try policy.accept(body(message, signature: "")) }
        let other = try signer.sign(message + " ")
        #expect(throws: KeylimeError.self) { try policy.accept(body(message, signature: other)) }
    }

    /// Keylime's event_time for `date`: time.asctime() in local time, day padded with a space.
    static func asctime(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone.current
        formatter.dateFormat = "EEE MMM"
        let day = Calendar.current.component(.day, from: date)
        let head = formatter.string(from: date)
        formatter.dateFormat = "HH:mm:ss yyyy"
        return "\(head) \(day < 10 ? " " : "")\(day) \(formatter.string(from: date))"
    }

    @Test func refusesReplayedRevocationNotice() async throws {
        let signer = try Signer()
        defer { try? FileManager.default.removeItem(at: signer.directory) }
        let policy = try RevocationPolicy(certificatePEMFile: signer.certificate)
        let fresh = message.replacingOccurrences(of: "Sun Nov 22 10:00:00 2026", with: Self.asctime(Date()))
        let notice = try policy.accept(body(fresh, signature: try signer.sign(fresh)))
        let file = signer.directory.appendingPathComponent("keylime/revocation-notices.json")
        let log = RevocationNoticeLog(file: file, maximumAge: 600)
        try await log.admit(notice)
        // The same signed notice again: refused, and still refused by the next process (persisted).
        await #expect(throws: KeylimeError.self) { try await log.admit(notice) }
        await #expect(throws: KeylimeError.self) { try await RevocationNoticeLog(file: file, maximumAge: 600).admit(notice) }
        let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
    }

    @Test func refusesStaleRevocationNotice() async throws {
        let signer = try Signer()
        defer { try? FileManager.default.removeItem(at: signer.directory) }
        let policy = try RevocationPolicy(certificatePEMFile: signer.certificate)
        let log = RevocationNoticeLog(file: signer.directory.appendingPathComponent("notices.json"), maximumAge: 600)
        // Signed by the verifier, but an hour old (captured and held back), or without a time.
        let old = message.replacingOccurrences(of: "Sun Nov 22 10:00:00 2026", with: Self.asctime(Date().addingTimeInterval(-3600)))
        await #expect(throws: KeylimeError.self) { try await log.admit(try policy.accept(body(old, signature: try signer.sign(old)))) }
        let future = message.replacingOccurrences(of: "Sun Nov 22 10:00:00 2026", with: Self.asctime(Date().addingTimeInterval(3600)))
        await #expect(throws: KeylimeError.self) { try await log.admit(try policy.accept(body(future, signature: try signer.sign(future)))) }
        let timeless = message.replacingOccurrences(of: #""event_time": "Sun Nov 22 10:00:00 2026", "#, with: "")
        await #expect(throws: KeylimeError.self) { try await log.admit(try policy.accept(body(timeless, signature: try signer.sign(timeless)))) }
    }

    @Test func refusesUnauthenticatedRevocationsWithoutTheLabFlag() throws {
        var configuration = KeylimeAgentConfiguration(uuid: "agent-9", registrar: URL(string: "http://127.0.0.1:8890")!, mtls: false,
                                                      stateDirectory: "/tmp/unused")
        #expect { try configuration.validate() } throws: { ($0 as? KeylimeError)?.reason.contains("--keylime-lab-unauthenticated-revocations") == true }
        configuration.allowUnauthenticatedRevocations = true
        try configuration.validate()
        configuration.allowUnauthenticatedRevocations = false
        configuration.revocationCertificate = "/etc/keylime/revocation.crt"
        try configuration.validate()
    }

    @Test func withoutACertificateUnsignedNoticesAreTakenAsMutualTLSVouchesForThem() throws {
        let notice = try RevocationPolicy.mutualTLSOnly.accept(body(message, signature: ""))
        #expect(notice.agentID == "agent-9")
        #expect(throws: KeylimeError.self) { try RevocationPolicy.mutualTLSOnly.accept(body("{\"no_agent\": 1}", signature: nil)) }
    }
}

/// Quotes in Keylime's format from a real swtpm, checked by tpm2-tools' tpm2_checkquote.
@Suite(.enabled(if: TPMTools.swtpm && TPMTools.tpm2Tools, "swtpm or tpm2-tools is not installed; run scripts/setup.sh"))
struct KeylimeQuoteTests {
    @Test func quoteStringIsAcceptedByTpm2CheckquoteAndBindsTheKey() async throws {
        let t = try await RunningTPM()
        let ak = try await t.tpm.attestationKey(.rsa2048, persistentHandle: 0x8101_0002)
        let quoter = KeylimeQuoter(tpm: t.tpm, attestationKeyHandle: ak.persistentHandle, attestationKeyType: .rsa2048)
        let pem = "-----BEGIN PUBLIC KEY-----\ntest-only\n-----END PUBLIC KEY-----\n"
        try await quoter.bind(publicKeyPEM: pem)
        try await quoter.bind(publicKeyPEM: pem)  // a second bind resets first: the value is the same
        let expected16 = Array(SHA256.hash(data: [UInt8](repeating: 0, count: 32) + Array(SHA256.hash(data: Array(pem.utf8)))))
        #expect(try await t.tpm.pcrValues([16])[16] == expected16)

        let nonce = "AbCdEfGhIj0123456789"
        let quote = try await quoter.quote(nonce: nonce, pcrs: KeylimeQuoter.pcrs(mask: 0x8001))
        #expect(quote.hasPrefix("r"))
        let parts = quote.dropFirst().split(separator: ":").map { Array(Data(base64Encoded: String($0)) ?? Data()) }
        #expect(parts.count == 3)
        try Data(parts[0]).write(to: URL(fileURLWithPath: t.file("attest")))
        try Data(parts[1]).write(to: URL(fileURLWithPath: t.file("sig")))
        try Data(parts[2]).write(to: URL(fileURLWithPath: t.file("pcrs")))
        try Data(try TPMPublicKey(marshaled: ak.publicArea).pem.utf8).write(to: URL(fileURLWithPath: t.file("ak.pem")))
        let arguments = ["-u", t.file("ak.pem"), "-m", t.file("attest"), "-s", t.file("sig"), "-f", t.file("pcrs"), "-g", "sha256",
                         "-q", hexString(Array(nonce.utf8))]
        let good = try TPMTools.run("tpm2_checkquote", arguments)
        #expect(good.status == 0, "\(good.output)")
        #expect(good.output.contains("16") && good.output.lowercased().contains(hexString(expected16)))

        // A PCR value changed in the blob: the quote's digest no longer matches.
        var forged = parts[2]
        forged[forged.count - 532 + 4 + 2] ^= 1
        try Data(forged).write(to: URL(fileURLWithPath: t.file("pcrs")))
        #expect(try TPMTools.run("tpm2_checkquote", arguments).status != 0)
    }
}
