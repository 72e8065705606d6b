import Foundation
@testable import ModelSigning

/// A temporary directory removed when the test ends.
final class Scratch {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("securenode-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func file(_ relative: String) -> String { url.appendingPathComponent(relative).path }

    @discardableResult
    func write(_ relative: String, _ contents: String) throws -> String {
        try write(relative, Array(contents.utf8))
    }

    @discardableResult
    func write(_ relative: String, _ bytes: [UInt8]) throws -> String {
        let target = url.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: target)
        return target.path
    }

    /// A small model directory with nested files, an empty file and a non-ASCII name.
    func makeModel(_ name: String = "model") throws -> String {
        try write("\(name)/config.json", "{\"architecture\": \"llama\"}\n")
        try write("\(name)/weights/part-0.bin", (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try write("\(name)/weights/part-1.bin", (0..<777).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try write("\(name)/tokenizer é.txt", "bonjour\n")
        try write("\(name)/empty", [])
        return file(name)
    }
}

/// Signs an arbitrary statement, for tests that need a validly signed but malicious manifest.
func signedBundle(statement: String, key: ECDSAPrivateKey, payloadType: String = SigstoreBundle.inTotoPayloadType) throws -> SigstoreBundle {
    let payload = Array(statement.utf8)
    return SigstoreBundle(verificationMaterial: .publicKey(hint: key.publicKey.hint), payload: payload,
                          payloadType: payloadType,
                          signature: try key.signature(over: DSSE.preAuthenticationEncoding(payload: payload)))
}

/// A statement in model-signing's shape with the given resources and subjects.
func statementJSON(resources: [(String, [UInt8])], subjects: Int = 1, rootDigest: [UInt8]? = nil,
                   predicateType: String = ModelManifest.predicateType, type: String = ModelManifest.statementType,
                   method: String = "files") -> String {
    let root = rootDigest ?? ModelManifest.rootDigest(of: resources.map { .init(name: $0.0, sha256: $0.1) })
    let subject = "{\"name\": \"m\", \"digest\": {\"sha256\": \"\(hexString(root))\"}}"
    let list = resources.map { "{\"name\": \(JSONText.quote($0.0)), \"algorithm\": \"sha256\", \"digest\": \"\(hexString($0.1))\"}" }
    return """
        {"_type": "\(type)", "subject": [\(Array(repeating: subject, count: subjects).joined(separator: ", "))],
         "predicateType": "\(predicateType)",
         "predicate": {"serialization": {"method": "\(method)", "hash_type": "sha256", "allow_symlinks": false},
                       "resources": [\(list.joined(separator: ", "))]}}
        """
}
