import BigInt
import Crypto
import CryptoExtras
import Foundation
import ModelSigning
import SwiftASN1
import X509

/// A revocation notice from Keylime's verifier (cloud_verifier_common.prepare_error): a body
/// `{"msg": JSON text, "signature": base64}` whose message names the failed agent and why.
public struct RevocationNotice: Sendable, Equatable {
    /// SHA-256 (hex) of the notice's `msg` text: what the verifier signed, so what a replay repeats.
    public var messageSHA256: String = ""
    public var agentID: String
    public var type: String
    public var eventID: String?
    public var eventTime: String?
    /// The verifier's context for the event (JSON text, cut to 512 characters).
    public var context: String?

    /// What `/readyz` and the completions API say.
    public var reason: String {
        var text = "revoked by the Keylime verifier (\(type)"
        if let eventID { text += ", event \(eventID)" }
        text += ")"
        if let context, !context.isEmpty { text += ": \(context)" }
        if let eventTime { text += " at \(eventTime)" }
        return text
    }
}

/// Which revocation notices the node believes. Over mutual TLS only Keylime's own components (with
/// certificates from Keylime's CA) can send one; with a revocation certificate configured, the
/// notice must also carry the verifier's RSA-PSS (SHA-256, MGF1-SHA-256, any salt length) signature
/// over the message text, as keylime/crypto.py `rsa_sign` makes it.
public struct RevocationPolicy: Sendable {
    let modulus: BigUInt?
    let exponent: BigUInt?
    let modulusBits: Int

    /// Accepts notices without a signature (the agent API must then be behind mutual TLS).
    public static let mutualTLSOnly = RevocationPolicy(modulus: nil, exponent: nil, modulusBits: 0)

    init(modulus: BigUInt?, exponent: BigUInt?, modulusBits: Int) {
        self.modulus = modulus
        self.exponent = exponent
        self.modulusBits = modulusBits
    }

    /// Requires signatures from the RSA key of the certificate at `path` (PEM).
    public init(certificatePEMFile path: String) throws(KeylimeError) {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw KeylimeError("cannot read keylime.revocation_certificate \(path)")
        }
        do {
            let certificate = try Certificate(pemEncoded: text)
            guard let key = _RSA.Signing.PublicKey(certificate.publicKey) else {
                throw KeylimeError("keylime.revocation_certificate \(path) does not hold an RSA key")
            }
            let primitives = try key.getKeyPrimitives()
            self.init(modulus: BigUInt(primitives.modulus), exponent: BigUInt(primitives.publicExponent), modulusBits: key.keySizeInBits)
        } catch let error as KeylimeError {
            throw error
        } catch {
            throw KeylimeError("keylime.revocation_certificate \(path) is not a PEM certificate: \(error)")
        }
    }

    public var requiresSignature: Bool { modulus != nil }

    /// Parses and, when required, authenticates a notice body.
    public func accept(_ body: [UInt8]) throws(KeylimeError) -> RevocationNotice {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw KeylimeError("a revocation notice is JSON {\"msg\": ..., \"signature\": ...}")
        }
        guard let message = object["msg"] as? String else { throw KeylimeError("the revocation notice has no msg") }
        if requiresSignature {
            guard let signatureText = object["signature"] as? String, let signature = Data(base64Encoded: signatureText),
                  !signature.isEmpty else {
                throw KeylimeError("the revocation notice is not signed, and keylime.revocation_certificate requires a signature")
            }
            guard verifyPSS(message: Array(message.utf8), signature: Array(signature)) else {
                throw KeylimeError("the revocation notice's signature does not verify with keylime.revocation_certificate")
            }
        }
        guard let fields = try? JSONSerialization.jsonObject(with: Data(message.utf8)) as? [String: Any] else {
            throw KeylimeError("the revocation notice's msg is not a JSON object")
        }
        guard let agentID = fields["agent_id"] as? String else { throw KeylimeError("the revocation notice's msg has no agent_id") }
        var context: String?
        if let value = fields["context"], !(value is NSNull) {
            if let text = value as? String {
                context = text
            } else if JSONSerialization.isValidJSONObject(value),
                      let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]) {
                context = String(decoding: data, as: UTF8.self)
            }
        }
        return RevocationNotice(messageSHA256: hexString(Array(SHA256.hash(data: Array(message.utf8)))),
                                agentID: agentID, type: fields["type"] as? String ?? "revocation",
                                eventID: fields["event_id"] as? String, eventTime: fields["event_time"] as? String,
                                context: context.map { String($0.prefix(512)) })
    }

    /// RSASSA-PSS verification (RFC 8017 9.1.2) with SHA-256 and MGF1-SHA-256, recovering the salt
    /// length (Keylime signs with the maximum salt length, which swift-crypto's verifier does not take).
    func verifyPSS(message: [UInt8], signature: [UInt8]) -> Bool {
        guard let n = modulus, let e = exponent else { return false }
        let k = (modulusBits + 7) / 8
        guard signature.count == k else { return false }
        let s = BigUInt(Data(signature))
        guard s < n else { return false }
        let m = s.power(e, modulus: n)
        let emBits = modulusBits - 1
        let emLen = (emBits + 7) / 8
        var serialized = Array(m.serialize())
        guard serialized.count <= emLen else { return false }
        serialized = [UInt8](repeating: 0, count: emLen - serialized.count) + serialized
        let em = serialized
        let hLen = 32
        guard emLen >= hLen + 2, em[emLen - 1] == 0xBC else { return false }
        let maskedDB = Array(em[0..<(emLen - hLen - 1)])
        let h = Array(em[(emLen - hLen - 1)..<(emLen - 1)])
        let unusedBits = 8 * emLen - emBits
        let topMask: UInt8 = unusedBits == 0 ? 0xFF : UInt8(0xFF >> unusedBits)
        guard maskedDB[0] & ~topMask == 0 else { return false }
        var db = zip(maskedDB, Self.mgf1(seed: h, length: maskedDB.count)).map { $0 ^ $1 }
        db[0] &= topMask
        guard let one = db.firstIndex(where: { $0 != 0 }), db[one] == 0x01 else { return false }
        let salt = db[(one + 1)...]
        let mHash = Array(SHA256.hash(data: message))
        let hPrime = Array(SHA256.hash(data: [UInt8](repeating: 0, count: 8) + mHash + salt))
        return constantTimeEquals(h, hPrime)
    }

    static func mgf1(seed: [UInt8], length: Int) -> [UInt8] {
        var out: [UInt8] = []
        var counter: UInt32 = 0
        while out.count < length {
            out += SHA256.hash(data: seed + withUnsafeBytes(of: counter.bigEndian) { Array($0) })
            counter += 1
        }
        return Array(out.prefix(length))
    }
}

/// The revocation notices this agent has believed (`<state-dir>/keylime/revocation-notices.json`,
/// owner-only), so that a captured notice cannot be played again, and the freshness rule: a notice
/// whose `event_time` (Keylime writes `time.asctime()`, the verifier's local time; the node reads it
/// in its own time zone, UTC on servers) is older than the maximum age, or later than a minute from
/// now, is refused as stale.
public actor RevocationNoticeLog {
    public let file: URL
    public let maximumAge: TimeInterval
    private var seen: [String]
    static let capacity = 1024

    public init(file: URL, maximumAge: TimeInterval) {
        self.file = file
        self.maximumAge = maximumAge
        seen = (FileManager.default.contents(atPath: file.path).flatMap { try? JSONDecoder().decode([String].self, from: $0) }) ?? []
    }

    /// Refuses a notice seen before or stale; otherwise remembers it (persisted before it counts).
    public func admit(_ notice: RevocationNotice, now: Date = Date()) throws(KeylimeError) {
        guard !seen.contains(notice.messageSHA256) else {
            throw KeylimeError("replayed revocation notice (the same signed message was received before, event \(notice.eventID ?? "none"))")
        }
        guard let text = notice.eventTime, let time = Self.parseEventTime(text) else {
            throw KeylimeError("the revocation notice has no readable event_time; its freshness cannot be judged")
        }
        guard now.timeIntervalSince(time) <= maximumAge else {
            throw KeylimeError("stale revocation notice: event_time \(text) is more than \(Int(maximumAge)) s old")
        }
        guard time.timeIntervalSince(now) <= 60 else {
            throw KeylimeError("revocation notice from the future: event_time \(text)")
        }
        seen.append(notice.messageSHA256)
        if seen.count > Self.capacity { seen.removeFirst(seen.count - Self.capacity) }
        do {
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let data = try JSONEncoder().encode(seen)
            let temporary = file.deletingLastPathComponent().appendingPathComponent(".\(file.lastPathComponent).\(getpid()).tmp")
            guard FileManager.default.createFile(atPath: temporary.path, contents: data, attributes: [.posixPermissions: 0o600]),
                  rename(temporary.path, file.path) == 0 else {
                throw KeylimeError("cannot write \(file.path)")
            }
        } catch let error as KeylimeError {
            throw error
        } catch {
            throw KeylimeError("cannot write \(file.path): \(error)")
        }
    }

    /// `time.asctime()`: "Wed Dec  2 05:17:13 2026" (day padded with a space).
    static func parseEventTime(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone.current
        formatter.dateFormat = "EEE MMM d HH:mm:ss yyyy"
        let squeezed = text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        return formatter.date(from: squeezed)
    }
}
