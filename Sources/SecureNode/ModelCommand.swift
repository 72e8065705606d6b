import ArgumentParser
import Foundation
import ModelSigning
import X509

struct ModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Sign, verify, inspect and encrypt models (OpenSSF model-signing bundles).",
        subcommands: [ModelSignCommand.self, ModelVerifyCommand.self, ModelInspectCommand.self, ModelEncryptCommand.self]
    )
}

/// How the caller says whom to trust: a public key, or root certificates.
struct TrustOptions: ParsableArguments {
    @Option(name: .customLong("public-key"), help: "PEM ECDSA public key (P-256/P-384/P-521) of the model's signer.")
    var publicKey: String?

    @Option(name: .customLong("certificate-chain"), parsing: .upToNextOption,
            help: "PEM file(s) of trusted certificates (roots); every certificate in them is a trust anchor.")
    var certificateChain: [String] = []

    func validate() throws {
        if (publicKey == nil) == certificateChain.isEmpty {
            throw ValidationError("give exactly one of --public-key or --certificate-chain")
        }
    }

    func anchor() throws -> ModelTrustAnchor {
        try Self.anchor(publicKey: publicKey, certificateChain: certificateChain)
    }

    static func anchor(publicKey: String?, certificateChain: [String]) throws -> ModelTrustAnchor {
        if let publicKey {
            return .publicKey(try ECDSAPublicKey(pem: try FileText.read(publicKey, what: "public key")))
        }
        var roots: [Certificate] = []
        for path in certificateChain {
            roots += try CertificatePEM.certificates(pem: try FileText.read(path, what: "certificate chain"), source: path)
        }
        return .certificates(CertificateTrust(trustedRoots: roots))
    }
}

struct ModelVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify a model directory (or file) against its signature bundle.",
        discussion: "Exit status 0 and a one-line summary when every file matches the signed manifest; 1 and the reason otherwise."
    )

    @Argument(help: "The model directory, or a single model file.")
    var model: String

    @Option(help: "The signature bundle (model-signing's model.sig).")
    var signature: String

    @OptionGroup var trust: TrustOptions

    @Option(name: .customLong("ignore-paths"), parsing: .upToNextOption,
            help: "Paths inside the model to leave out (relative to the model).")
    var ignorePaths: [String] = []

    @Option(name: .customLong("key"),
            help: "For an encrypted model (`model encrypt`): its data key; the model is decrypted in memory and verified there.")
    var key: String?

    func run() async throws {
        try await reportingFailures {
            let verified: VerifiedModel
            if EncryptedModel.isEncrypted(path: model) {
                guard let key else { throw CLIFailure("the model \(model) is encrypted: give its data key with --key") }
                var raw = try FileText.readBytes(key, what: "data key", limit: 64)
                defer { DataKey.wipe(&raw) }
                let dataKey = try DataKey(bytes: raw)
                defer { dataKey.wipe() }
                verified = try await SignedModel.verify(encrypted: model, signature: signature, trust: try trust.anchor(), key: dataKey)
            } else {
                guard key == nil else { throw CLIFailure("--key is for an encrypted model; \(model) is not encrypted") }
                verified = try await SignedModel.verify(model: model, signature: signature, trust: try trust.anchor(),
                                                        ignorePaths: ignorePaths)
            }
            print("verified \(model): \(verified.manifest.resources.count) file(s), \(verified.totalBytes) bytes, "
                  + "root sha256:\(verified.rootDigestHex), signed by \(verified.signer)")
        }
    }
}

struct ModelSignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign a model directory (or file), writing a model-signing bundle.",
        discussion: """
            Key method: --private-key only. Certificate method: add --signing-certificate (the leaf, whose key \
            is the private key) and --certificate-chain (the rest of the chain, in order).
            """
    )

    @Argument(help: "The model directory, or a single model file.")
    var model: String

    @Option(name: .customLong("private-key"), help: "PEM ECDSA private key (unencrypted; P-256, P-384 or P-521).")
    var privateKey: String

    @Option(name: .customLong("signing-certificate"), help: "PEM certificate of the signing key (certificate method).")
    var signingCertificate: String?

    @Option(name: .customLong("certificate-chain"), parsing: .upToNextOption,
            help: "PEM file(s) of the certificates between the signing certificate and the root, in order.")
    var certificateChain: [String] = []

    @Option(help: "Where to write the bundle.")
    var signature: String

    @Option(name: .customLong("ignore-paths"), parsing: .upToNextOption,
            help: "Paths inside the model to leave out of the signature (relative to the model).")
    var ignorePaths: [String] = []

    func validate() throws {
        if signingCertificate == nil && !certificateChain.isEmpty {
            throw ValidationError("--certificate-chain needs --signing-certificate")
        }
    }

    func run() async throws {
        try await reportingFailures {
            let key = try ECDSAPrivateKey(pem: try FileText.read(privateKey, what: "private key"))
            var chain: [Certificate]?
            if let signingCertificate {
                var certs = try CertificatePEM.certificates(
                    pem: try FileText.read(signingCertificate, what: "signing certificate"), source: signingCertificate)
                for path in certificateChain {
                    certs += try CertificatePEM.certificates(pem: try FileText.read(path, what: "certificate chain"), source: path)
                }
                chain = certs
            }
            let bundle = try ModelSigner.sign(model: model, key: key, certificateChain: chain,
                                              signaturePath: signature, ignorePaths: ignorePaths)
            try FileText.writeAtomically(bundle.jsonBytes(), to: signature)
            let manifest = try ModelManifest(statement: bundle.payload)
            print("signed \(model): \(manifest.resources.count) file(s), root sha256:\(hexString(manifest.rootDigest)), "
                  + "key \(key.publicKey.curveName) sha256:\(key.publicKey.fingerprint) -> \(signature)")
        }
    }
}
