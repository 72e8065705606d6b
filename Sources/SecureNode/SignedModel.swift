import Foundation
import ModelSigning

/// The one way the node opens a model: read the bundle, verify the model against it, and keep the
/// verified bytes of the files it will use.
enum SignedModel {
    static func verify(model: String, signature: String, trust: ModelTrustAnchor, ignorePaths: [String] = [],
                       load: @escaping @Sendable (String) -> Bool = { _ in false }) async throws -> VerifiedModel {
        let bundle = try SigstoreBundle(json: try FileText.readBytes(signature, what: "signature bundle",
                                                                     limit: SigstoreBundle.maximumSize))
        var options = ModelVerifier.Options(signaturePath: signature)
        options.ignorePaths = ignorePaths
        options.load = load
        return try await ModelVerifier.verify(model: model, bundle: bundle, trust: trust, options: options)
    }

    /// An encrypted model (`model encrypt`): decrypted into private memory with `key` and verified there.
    static func verify(encrypted model: String, signature: String, trust: ModelTrustAnchor, key: DataKey,
                       load: @escaping @Sendable (String) -> Bool = { _ in false }) async throws -> VerifiedModel {
        let bundle = try SigstoreBundle(json: try FileText.readBytes(signature, what: "signature bundle",
                                                                     limit: SigstoreBundle.maximumSize))
        var options = ModelVerifier.Options(signaturePath: signature)
        options.load = load
        return try await ModelVerifier.verify(encrypted: try EncryptedModel(path: model), key: key, bundle: bundle, trust: trust,
                                              options: options)
    }
}
