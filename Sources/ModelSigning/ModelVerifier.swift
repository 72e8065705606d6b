import Foundation
import SwiftASN1
import X509

/// Who signed a model, once the signature has been checked.
public enum SignerIdentity: Sendable, Equatable, CustomStringConvertible {
    /// Key method: the SHA-256 fingerprint of the key's DER SubjectPublicKeyInfo.
    case key(fingerprint: String, curve: String)
    /// Certificate method: the leaf's subject and key fingerprint, and the trusted root's subject.
    case certificate(subject: String, fingerprint: String, root: String)

    public var description: String {
        switch self {
        case .key(let fingerprint, let curve): "key \(curve) sha256:\(fingerprint)"
        case .certificate(let subject, let fingerprint, let root): "certificate \"\(subject)\" (key sha256:\(fingerprint)) via root \"\(root)\""
        }
    }

    /// The key fingerprint, whichever method signed.
    public var fingerprint: String {
        switch self {
        case .key(let f, _), .certificate(_, let f, _): f
        }
    }
}

/// A model whose every file matched a manifest that a trusted signer signed.
/// Only ``ModelVerifier`` makes one.
public struct VerifiedModel: Sendable {
    public let path: String
    public let manifest: ModelManifest
    public let signer: SignerIdentity
    /// Verified bytes of the files the caller asked to load, by manifest name.
    public let loadedFiles: [String: ModelBytes]
    public var rootDigestHex: String { hexString(manifest.rootDigest) }
    public var totalBytes: Int
}

/// What the verifier trusts.
public enum ModelTrustAnchor: Sendable {
    case publicKey(ECDSAPublicKey)
    case certificates(CertificateTrust)
}

/// Verifies a model directory (or file) against an OpenSSF model-signing bundle.
///
/// Checks, in this order (the first failure is reported, naming the check):
/// 1. The bundle's verification material matches the trust anchor: a key bundle's hint names the
///    trusted key (when the hint is present); a certificate bundle's chain validates to a trusted
///    root and its leaf is for code signing (see ``CertificateTrust``).
/// 2. The ECDSA signature verifies over the DSSE pre-authentication encoding of the exact payload bytes.
/// 3. The envelope's payload type is in-toto.
/// 4. The statement: in-toto v1 type, model-signing v1.0 predicate, exactly one subject,
///    files/sha256 serialization, safe unique resource names, and the subject digest equals the
///    digest over the listed resources.
/// 5. The model's files, found without following symlinks (a symlink or special file anywhere is
///    refused), are exactly the listed resources: no extra, no missing file. Ignored: the signer's
///    `ignore_paths`, git metadata, and the signature file when it lies inside the model.
/// 6. Every file's SHA-256 equals the listed digest (constant-time comparison).
public enum ModelVerifier {
    public struct Options: Sendable {
        /// Absolute or relative path of the bundle file; ignored when it lies inside the model.
        public var signaturePath: String?
        /// Extra paths relative to the model to ignore (beyond the signer's list and git metadata).
        public var ignorePaths: [String] = []
        public var ignoreGitPaths = true
        /// Manifest names whose verified bytes should be kept in memory (e.g. the GGUF file).
        public var load: @Sendable (String) -> Bool = { _ in false }
        public init(signaturePath: String? = nil) { self.signaturePath = signaturePath }
    }

    public static func verify(model path: String, bundle: SigstoreBundle, trust: ModelTrustAnchor,
                              options: Options = Options()) async throws(ModelSigningError) -> VerifiedModel {
        let signer = try await checkSigner(bundle: bundle, trust: trust)
        let manifest = try ModelManifest(statement: bundle.payload)

        var ignored = manifest.ignorePaths + options.ignorePaths
        if options.ignoreGitPaths { ignored += ModelManifest.gitPaths }
        if let sig = options.signaturePath, let inside = PathSupport.relative(sig, within: path) { ignored.append(inside) }
        let tree = try ModelTree(root: path, ignoring: ignored)

        let expected = Dictionary(manifest.resources.map { ($0.name, $0.sha256) }, uniquingKeysWith: { a, _ in a })
        let present = Set(tree.files.map(\.name))
        let missing = manifest.resources.map(\.name).filter { !present.contains($0) }
        let extra = tree.files.map(\.name).filter { expected[$0] == nil }
        if !missing.isEmpty || !extra.isEmpty {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing files: \(PathSupport.list(missing))") }
            if !extra.isEmpty { parts.append("extra files not in the signed manifest: \(PathSupport.list(extra))") }
            let renamed = !missing.isEmpty && !extra.isEmpty ? " (renamed?)" : ""
            throw ModelSigningError(missing.isEmpty ? .extraFiles : .missingFiles,
                                    "model does not match its signature: " + parts.joined(separator: "; ") + renamed)
        }

        let hashed = try tree.hashAll(load: options.load)
        var mismatched: [String] = []
        var loaded: [String: ModelBytes] = [:]
        for (file, result) in zip(tree.files, hashed) {
            guard let want = expected[file.name], constantTimeEquals(want, result.digest) else {
                mismatched.append(file.name)
                continue
            }
            if let bytes = result.bytes { loaded[file.name] = bytes }
        }
        guard mismatched.isEmpty else {
            throw ModelSigningError(.hashMismatch,
                "model does not match its signature: content changed in \(PathSupport.list(mismatched))")
        }
        return VerifiedModel(path: path, manifest: manifest, signer: signer, loadedFiles: loaded,
                             totalBytes: tree.files.reduce(0) { $0 + $1.size })
    }

    /// Steps 1-3: the signer is trusted and signed exactly this payload.
    public static func checkSigner(bundle: SigstoreBundle, trust: ModelTrustAnchor) async throws(ModelSigningError) -> SignerIdentity {
        let key: ECDSAPublicKey
        let identity: SignerIdentity
        switch (bundle.verificationMaterial, trust) {
        case (.publicKey(let hint), .publicKey(let trusted)):
            if let hint, !constantTimeEquals(Array(hint.lowercased().utf8), Array(trusted.hint.utf8)) {
                throw ModelSigningError(.keyMismatch,
                    "the bundle was signed with another key (hint \(hint)); the given public key's hint is \(trusted.hint)")
            }
            key = trusted
            identity = .key(fingerprint: trusted.fingerprint, curve: trusted.curveName)
        case (.certificateChain(let ders), .certificates(let trustStore)):
            let chain = try await trustStore.validate(bundleCertificates: ders)
            guard let leaf = chain.first, let root = chain.last else {
                throw ModelSigningError(.untrustedCertificate, "empty validated chain")
            }
            key = try ECDSAPublicKey(certificate: leaf)
            identity = .certificate(subject: String(describing: leaf.subject), fingerprint: key.fingerprint,
                                    root: String(describing: root.subject))
        case (.publicKey, .certificates):
            throw ModelSigningError(.verificationMaterialMismatch,
                "the bundle was signed with a key, not a certificate; verify it with --public-key")
        case (.certificateChain, .publicKey):
            throw ModelSigningError(.verificationMaterialMismatch,
                "the bundle was signed with a certificate; verify it with --certificate-chain and a trusted root")
        }
        guard key.isValidSignature(der: bundle.signature, over: DSSE.preAuthenticationEncoding(payload: bundle.payload)) else {
            throw ModelSigningError(.signatureInvalid,
                "the signature does not verify: the payload was changed or was signed by another key (\(identity))")
        }
        guard bundle.payloadType == SigstoreBundle.inTotoPayloadType else {
            throw ModelSigningError(.unsupportedPayloadType,
                "dsseEnvelope.payloadType is \"\(bundle.payloadType)\"; expected \"\(SigstoreBundle.inTotoPayloadType)\"")
        }
        return identity
    }
}

/// Signs models the way model-signing's CLI does (files serialization, SHA-256).
public enum ModelSigner {
    /// - Parameters:
    ///   - certificateChain: for the certificate method, the signing certificate followed by its
    ///     chain (in the order given); nil for the key method.
    public static func sign(model path: String, key: ECDSAPrivateKey, certificateChain: [Certificate]? = nil,
                            signaturePath: String? = nil, ignorePaths: [String] = [],
                            ignoreGitPaths: Bool = true) throws(ModelSigningError) -> SigstoreBundle {
        var recorded = ignoreGitPaths ? ModelManifest.gitPaths : []
        if let sig = signaturePath, let inside = PathSupport.relative(sig, within: path) { recorded.append(inside) }
        for p in ignorePaths where !recorded.contains(p) { recorded.append(p) }
        let tree = try ModelTree(root: path, ignoring: recorded)
        let digests = try tree.hashAll(load: { _ in false })
        let resources = zip(tree.files, digests).map { ModelManifest.Resource(name: $0.name, sha256: $1.digest) }
        let subject = URL(fileURLWithPath: path).standardizedFileURL.lastPathComponent
        let manifest = ModelManifest(subjectName: subject, resources: resources, ignorePaths: recorded)
        let payload = manifest.statementJSON()
        let signature = try key.signature(over: DSSE.preAuthenticationEncoding(payload: payload))

        let material: SigstoreBundle.VerificationMaterial
        if let chain = certificateChain {
            guard let leaf = chain.first else {
                throw ModelSigningError(.invalidCertificate, "the certificate method needs a signing certificate")
            }
            let leafKey = try ECDSAPublicKey(certificate: leaf)
            guard leafKey.spkiDER == key.publicKey.spkiDER else {
                throw ModelSigningError(.keyMismatch, "the private key does not belong to the signing certificate \"\(leaf.subject)\"")
            }
            var ders: [[UInt8]] = []
            for cert in chain {
                do {
                    var serializer = DER.Serializer()
                    try serializer.serialize(cert)
                    ders.append(serializer.serializedBytes)
                } catch {
                    throw ModelSigningError(.invalidCertificate, "cannot encode certificate \"\(cert.subject)\"")
                }
            }
            material = .certificateChain(ders)
        } else {
            material = .publicKey(hint: key.publicKey.hint)
        }
        return SigstoreBundle(verificationMaterial: material, payload: payload,
                              payloadType: SigstoreBundle.inTotoPayloadType, signature: signature)
    }
}
