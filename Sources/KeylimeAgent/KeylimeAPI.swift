import Foundation

/// The agent API versions this node answers (Keylime's pull-mode agent API, 2.x). The tenant picks
/// the highest version both sides know below 3.0 and hands it to the verifier.
public enum KeylimeAPI {
    public static let supportedVersions = ["2.1", "2.2", "2.3", "2.4", "2.5"]
    public static var current: String { supportedVersions.last! }

    /// The version part of a path such as `/v2.5/quotes/integrity` ("2.5"), if it is one.
    static func version(ofPathComponent component: Substring) -> String? {
        guard component.first == "v" else { return nil }
        let text = component.dropFirst()
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }) else {
            return nil
        }
        return String(text)
    }

    /// "rsa2048" from 2.5 on, "rsa" before (Keylime's normalisation accepts both for its version).
    static func encryptionAlgorithm(version: String) -> String {
        let parts = version.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 2 else { return "rsa2048" }
        return (parts[0], parts[1]) >= (2, 5) ? "rsa2048" : "rsa"
    }
}

/// Keylime's response envelope: `{"code": N, "status": "...", "results": {...}}`, for successes and
/// errors alike (Keylime's clients read `status` on errors).
struct KeylimeEnvelope: Encodable {
    let code: Int
    let status: String
    let results: [String: KeylimeValue]
}

/// The JSON values the agent API sends.
enum KeylimeValue: Encodable, Equatable {
    case string(String)
    case int(Int)
    case strings([String])

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let s): try container.encode(s)
        case .int(let i): try container.encode(i)
        case .strings(let a): try container.encode(a)
        }
    }
}
