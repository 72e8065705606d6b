import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import TPM

/// Registration with Keylime's registrar (keylime/web/registrar/agents_controller.py): the node
/// sends its EK, EK certificate, AK, TLS certificate and contact address; the registrar answers with
/// a MakeCredential blob for the AK's name under the EK; the node recovers the 32-character secret
/// with TPM2_ActivateCredential, which only the TPM holding both keys can do, and proves it with
/// HMAC-SHA384(key: base64(secret), uuid).
public struct KeylimeRegistration: Sendable {
    public let configuration: KeylimeAgentConfiguration
    public let tpm: TPM
    public let attestationKeyHandle: UInt32
    public let attestationKeyType: AttestationKeyType
    /// The agent's TLS certificate (PEM), or nil when the agent API is plain HTTP ("disabled").
    public let mtlsCertificatePEM: String?

    public init(configuration: KeylimeAgentConfiguration, tpm: TPM, attestationKeyHandle: UInt32, attestationKeyType: AttestationKeyType,
                mtlsCertificatePEM: String?) {
        self.configuration = configuration
        self.tpm = tpm
        self.attestationKeyHandle = attestationKeyHandle
        self.attestationKeyType = attestationKeyType
        self.mtlsCertificatePEM = mtlsCertificatePEM
    }

    /// Registers and activates; returns the registrar API version used.
    public func run() async throws(KeylimeError) -> String {
        let version = try await negotiateVersion()
        let ek: EndorsementKey
        let ak: AttestationKey
        do {
            ek = try await tpm.endorsementKey()
            ak = try await tpm.attestationKey(attestationKeyType, persistentHandle: attestationKeyHandle)
        } catch {
            throw KeylimeError("cannot read the TPM's EK and AK: \(error)")
        }
        var body: [String: String] = [
            "ek_tpm": Data(ek.publicArea).base64EncodedString(),
            "aik_tpm": Data(ak.publicArea).base64EncodedString(),
            "mtls_cert": mtlsCertificatePEM ?? "disabled",
            "ip": configuration.contactIP ?? configuration.host,
            "port": String(configuration.contactPort ?? configuration.port),
        ]
        if let der = ek.certificateDER { body["ekcert"] = Self.pem(der, label: "CERTIFICATE") }
        let path = "/v\(version)/agents/\(configuration.uuid)"
        let registered = try await send("POST", path, body: body)
        guard let results = registered["results"] as? [String: Any], let blobText = results["blob"] as? String,
              let blob = Data(base64Encoded: blobText) else {
            throw KeylimeError("the registrar's answer to \(path) has no results.blob")
        }
        let (credential, secret) = try Self.parseCredentialBlob(Array(blob))
        let recovered: [UInt8]
        do {
            recovered = try await tpm.activateCredential(attestationKeyHandle: attestationKeyHandle, credentialBlob: credential,
                                                         encryptedSecret: secret)
        } catch {
            throw KeylimeError("TPM2_ActivateCredential refused the registrar's challenge (is this the TPM of that EK?): \(error)")
        }
        let tag = Self.authTag(secret: recovered, uuid: configuration.uuid)
        _ = try await send("PUT", path, body: ["auth_tag": tag])
        return version
    }

    /// HMAC-SHA384 keyed with the base64 text of the recovered secret, over the UUID (hex).
    static func authTag(secret: [UInt8], uuid: String) -> String {
        let key = SymmetricKey(data: Array(Data(secret).base64EncodedString().utf8))
        return HMAC<SHA384>.authenticationCode(for: Array(uuid.utf8), using: key).map { String(format: "%02x", $0) }.joined()
    }

    /// tpm2-tools' MakeCredential output: be32 0xBADCC0DE, be32 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
    /// Returns the two marshaled TPM2B structures.
    static func parseCredentialBlob(_ blob: [UInt8]) throws(KeylimeError) -> (credential: [UInt8], secret: [UInt8]) {
        func u32(_ at: Int) -> UInt32 { blob[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) } }
        func u16(_ at: Int) -> Int { Int(blob[at]) << 8 | Int(blob[at + 1]) }
        guard blob.count >= 12, u32(0) == 0xBADC_C0DE, u32(4) == 1 else {
            throw KeylimeError("the registrar's blob is not a tpm2-tools credential (magic 0xBADCC0DE, version 1)")
        }
        let idSize = u16(8)
        guard blob.count >= 10 + idSize + 2 else { throw KeylimeError("the registrar's credential blob is truncated") }
        let secretAt = 10 + idSize
        let secretSize = u16(secretAt)
        guard blob.count == secretAt + 2 + secretSize else { throw KeylimeError("the registrar's credential blob has the wrong length") }
        return (Array(blob[8..<secretAt]), Array(blob[secretAt...]))
    }

    static func pem(_ der: [UInt8], label: String) -> String {
        let b64 = Data(der).base64EncodedString()
        var lines: [String] = []
        var index = b64.startIndex
        while index < b64.endIndex {
            let next = b64.index(index, offsetBy: 64, limitedBy: b64.endIndex) ?? b64.endIndex
            lines.append(String(b64[index..<next]))
            index = next
        }
        return "-----BEGIN \(label)-----\n" + lines.joined(separator: "\n") + "\n-----END \(label)-----\n"
    }

    /// The highest 2.x version both the registrar and this agent know.
    func negotiateVersion() async throws(KeylimeError) -> String {
        let answer = try await send("GET", "/version", body: nil)
        guard let results = answer["results"] as? [String: Any] else { throw KeylimeError("the registrar's /version has no results") }
        let offered = (results["supported_versions"] as? [String]) ?? [(results["current_version"] as? String) ?? ""]
        let ours = ["2.0"] + KeylimeAPI.supportedVersions + ["2.6"]
        func key(_ v: String) -> [Int] { v.split(separator: ".").compactMap { Int($0) } }
        guard let best = offered.filter({ ours.contains($0) }).max(by: { key($0).lexicographicallyPrecedes(key($1)) }) else {
            throw KeylimeError("the registrar offers API versions \(offered), none of which this agent speaks (\(ours))")
        }
        return best
    }

    func send(_ method: String, _ path: String, body: [String: String]?) async throws(KeylimeError) -> [String: Any] {
        guard let url = URL(string: path, relativeTo: configuration.registrar) else { throw KeylimeError("bad registrar path \(path)") }
        var request = URLRequest(url: url, timeoutInterval: 30)
        request.httpMethod = method
        if let body {
            request.httpBody = try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw KeylimeError("the registrar at \(configuration.registrar.absoluteString) does not answer \(method) \(path): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard status == 200 else {
            let reason = object["status"] as? String ?? String(decoding: data.prefix(300), as: UTF8.self)
            throw KeylimeError("the registrar refused \(method) \(path) (HTTP \(status)): \(reason)")
        }
        return object
    }
}
