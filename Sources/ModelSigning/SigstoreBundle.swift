import Foundation

/// A sigstore bundle v0.3 as written by OpenSSF model-signing (key and certificate methods):
/// `{"mediaType", "verificationMaterial": {publicKey | x509CertificateChain, tlogEntries}, "dsseEnvelope"}`.
///
/// Parsing is strict about what verification depends on and names the field at fault; it never
/// trusts anything in here until ``ModelVerifier`` has checked the signature.
public struct SigstoreBundle: Sendable, Equatable {
    public static let mediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
    public static let inTotoPayloadType = "application/vnd.in-toto+json"

    public enum VerificationMaterial: Sendable, Equatable {
        /// Key method: the key itself is not in the bundle, only a hint (hex SHA-256 of its PEM text).
        case publicKey(hint: String?)
        /// Certificate method: DER certificates, leaf first.
        case certificateChain([[UInt8]])
    }

    public var verificationMaterial: VerificationMaterial
    /// The exact payload bytes that were signed (the in-toto statement JSON).
    public var payload: [UInt8]
    public var payloadType: String
    /// DER-encoded ECDSA signature (signatures[0]).
    public var signature: [UInt8]

    public init(verificationMaterial: VerificationMaterial, payload: [UInt8], payloadType: String, signature: [UInt8]) {
        self.verificationMaterial = verificationMaterial
        self.payload = payload
        self.payloadType = payloadType
        self.signature = signature
    }

    /// Largest bundle accepted: a manifest of a million files fits comfortably; a bigger "bundle" is an attack.
    public static let maximumSize = 64 << 20

    public init(json data: [UInt8]) throws(ModelSigningError) {
        guard data.count <= Self.maximumSize else {
            throw ModelSigningError(.malformedBundle, "bundle is \(data.count) bytes, more than the \(Self.maximumSize) accepted")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(data), options: [])
        } catch {
            throw ModelSigningError(.malformedBundle, "bundle is not valid JSON")
        }
        let root = try JSONField.object(object, "bundle")
        let mediaType = try JSONField.string(root["mediaType"], "mediaType")
        guard mediaType == Self.mediaType else {
            throw ModelSigningError(.unsupportedMediaType,
                "bundle mediaType is \"\(mediaType)\"; only \"\(Self.mediaType)\" is accepted")
        }
        let material = try JSONField.object(root["verificationMaterial"], "verificationMaterial")
        if let chain = material["x509CertificateChain"] {
            let chainObject = try JSONField.object(chain, "verificationMaterial.x509CertificateChain")
            let certs = try JSONField.array(chainObject["certificates"], "verificationMaterial.x509CertificateChain.certificates")
            guard !certs.isEmpty else {
                throw ModelSigningError(.malformedBundle, "verificationMaterial.x509CertificateChain.certificates is empty")
            }
            var ders: [[UInt8]] = []
            for (i, cert) in certs.enumerated() {
                let field = "verificationMaterial.x509CertificateChain.certificates[\(i)].rawBytes"
                let entry = try JSONField.object(cert, "verificationMaterial.x509CertificateChain.certificates[\(i)]")
                ders.append(try Base64.decode(try JSONField.string(entry["rawBytes"], field), field))
            }
            verificationMaterial = .certificateChain(ders)
        } else if let key = material["publicKey"] {
            let keyObject = try JSONField.object(key, "verificationMaterial.publicKey")
            var hint: String?
            if let h = keyObject["hint"] {
                let text = try JSONField.string(h, "verificationMaterial.publicKey.hint")
                hint = text.isEmpty ? nil : text
            }
            verificationMaterial = .publicKey(hint: hint)
        } else if material["certificate"] != nil {
            throw ModelSigningError(.unsupportedMediaType,
                "bundle uses the Sigstore keyless method (a Fulcio certificate and Rekor entry); only key and certificate-chain bundles are accepted")
        } else {
            throw ModelSigningError(.malformedBundle, "verificationMaterial has neither publicKey nor x509CertificateChain")
        }
        let envelope = try JSONField.object(root["dsseEnvelope"], "dsseEnvelope")
        payloadType = try JSONField.string(envelope["payloadType"], "dsseEnvelope.payloadType")
        payload = try Base64.decode(try JSONField.string(envelope["payload"], "dsseEnvelope.payload"), "dsseEnvelope.payload")
        let signatures = try JSONField.array(envelope["signatures"], "dsseEnvelope.signatures")
        guard let first = signatures.first else {
            throw ModelSigningError(.malformedBundle, "dsseEnvelope.signatures is empty")
        }
        let sigObject = try JSONField.object(first, "dsseEnvelope.signatures[0]")
        signature = try Base64.decode(try JSONField.string(sigObject["sig"], "dsseEnvelope.signatures[0].sig"),
                                      "dsseEnvelope.signatures[0].sig")
        guard !signature.isEmpty else {
            throw ModelSigningError(.malformedBundle, "dsseEnvelope.signatures[0].sig is empty")
        }
    }

    /// The bundle as model-signing writes it: compact JSON on one line, no trailing newline.
    public func jsonBytes() -> [UInt8] {
        let materialJSON: String
        switch verificationMaterial {
        case .publicKey(let hint):
            materialJSON = "\"publicKey\":{\"hint\":\(JSONText.quote(hint ?? ""))}"
        case .certificateChain(let ders):
            let certs = ders.map { "{\"rawBytes\":\"\(Data($0).base64EncodedString())\"}" }.joined(separator: ",")
            materialJSON = "\"x509CertificateChain\":{\"certificates\":[\(certs)]}"
        }
        let text = "{\"mediaType\":\(JSONText.quote(Self.mediaType)),"
            + "\"verificationMaterial\":{\(materialJSON),\"tlogEntries\":[]},"
            + "\"dsseEnvelope\":{\"payload\":\"\(Data(payload).base64EncodedString())\","
            + "\"payloadType\":\(JSONText.quote(payloadType)),"
            + "\"signatures\":[{\"sig\":\"\(Data(signature).base64EncodedString())\",\"keyid\":\"\"}]}}"
        return Array(text.utf8)
    }
}

/// DSSE v1 pre-authentication encoding: `"DSSEv1" SP len(type) SP type SP len(body) SP body`.
/// The type is always the in-toto one: model-signing does not take it from the envelope.
enum DSSE {
    static func preAuthenticationEncoding(payload: [UInt8]) -> [UInt8] {
        let type = SigstoreBundle.inTotoPayloadType
        var out = Array("DSSEv1 \(type.utf8.count) \(type) \(payload.count) ".utf8)
        out.append(contentsOf: payload)
        return out
    }
}

/// Typed access to JSONSerialization output that names the field at fault.
enum JSONField {
    static func object(_ value: Any?, _ field: String) throws(ModelSigningError) -> [String: Any] {
        guard let value else { throw ModelSigningError(.malformedBundle, "\(field) is missing") }
        guard let object = value as? [String: Any] else {
            throw ModelSigningError(.malformedBundle, "\(field) must be a JSON object")
        }
        return object
    }

    static func array(_ value: Any?, _ field: String) throws(ModelSigningError) -> [Any] {
        guard let value else { throw ModelSigningError(.malformedBundle, "\(field) is missing") }
        guard let array = value as? [Any] else {
            throw ModelSigningError(.malformedBundle, "\(field) must be a JSON array")
        }
        return array
    }

    static func string(_ value: Any?, _ field: String) throws(ModelSigningError) -> String {
        guard let value else { throw ModelSigningError(.malformedBundle, "\(field) is missing") }
        guard let string = value as? String else {
            throw ModelSigningError(.malformedBundle, "\(field) must be a JSON string")
        }
        return string
    }
}

/// Writes JSON string literals: ASCII only (non-ASCII as \uXXXX, like protobuf's JSON output).
enum JSONText {
    static func quote(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
            default:
                let hex = String(unit, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        }
        return out + "\""
    }
}

/// Base64 (standard or URL-safe alphabet, padding optional, as protobuf JSON accepts) with errors naming the field.
enum Base64 {
    static func decode(_ text: String, _ field: String) throws(ModelSigningError) -> [UInt8] {
        var normalized = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        switch normalized.utf8.count % 4 {
        case 2: normalized += "=="
        case 3: normalized += "="
        case 1: throw ModelSigningError(.malformedBundle, "\(field) is not valid base64 (impossible length)")
        default: break
        }
        guard let data = Data(base64Encoded: normalized) else {
            throw ModelSigningError(.malformedBundle, "\(field) is not valid base64")
        }
        return Array(data)
    }
}
