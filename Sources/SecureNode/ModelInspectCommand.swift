import ArgumentParser
import Foundation
import ModelFormat
import ModelSigning

struct ModelInspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Verify a model, load its verified GGUF bytes, and describe them.",
        discussion: """
            The GGUF file is read into private memory while it is hashed, and the parser reads those \
            same bytes: nothing is parsed that was not verified. Exit status 1 names the reason for a \
            refused signature or an invalid GGUF.
            """
    )

    @Argument(help: "The model directory (holding one .gguf file), or a single GGUF file.")
    var model: String

    @Option(help: "The signature bundle (model-signing's model.sig).")
    var signature: String

    @OptionGroup var trust: TrustOptions

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() async throws {
        try await reportingFailures {
            let loaded = try await LoadedModel.open(model: model, signature: signature, trust: try trust.anchor())
            let file = loaded.gguf
            let arch = file.string("general.architecture") ?? "(none)"
            let facts: [(String, String)] = [
                ("architecture", arch),
                ("name", file.string("general.name") ?? "(none)"),
                ("layers", file.int("\(arch).block_count").map(String.init) ?? "?"),
                ("embedding", file.int("\(arch).embedding_length").map(String.init) ?? "?"),
                ("feed-forward", file.int("\(arch).feed_forward_length").map(String.init) ?? "?"),
                ("heads", "\(file.int("\(arch).attention.head_count").map(String.init) ?? "?") (kv \(file.int("\(arch).attention.head_count_kv").map(String.init) ?? "?"))"),
                ("context length", file.int("\(arch).context_length").map(String.init) ?? "?"),
                ("rope base", file.float("\(arch).rope.freq_base").map { String(describing: $0) } ?? "?"),
                ("vocabulary", "\(file.array("tokenizer.ggml.tokens")?.count ?? 0) tokens (\(file.string("tokenizer.ggml.model") ?? "?"), pre \(file.string("tokenizer.ggml.pre") ?? "?"))"),
                ("chat template", file.string("tokenizer.chat_template").map { "\($0.count) characters" } ?? "none"),
                ("tensors", "\(file.summary.tensorCount) (\(file.summary.typeCountsDescription))"),
                ("parameters", "\(file.summary.parameterCount)"),
                ("tensor bytes", "\(file.summary.tensorBytes)"),
            ]
            if json {
                var object: [String: Any] = [
                    "model": model,
                    "file": loaded.fileName,
                    "rootDigest": loaded.verified.rootDigestHex,
                    "signer": loaded.verified.signer.description,
                    "signerFingerprint": loaded.verified.signer.fingerprint,
                    "ggufVersion": Int(file.version),
                    "fileBytes": file.fileSize,
                ]
                for (key, value) in facts { object[key] = value }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("verified \(model): root sha256:\(loaded.verified.rootDigestHex), signed by \(loaded.verified.signer)")
                print("loaded \(loaded.fileName): GGUF v\(file.version), \(file.fileSize) bytes, \(file.metadataKeys.count) metadata keys")
                for (key, value) in facts {
                    print(key.padding(toLength: 16, withPad: " ", startingAt: 0) + value)
                }
            }
        }
    }
}

/// A verified model whose GGUF file has been parsed from its verified bytes.
struct LoadedModel {
    let verified: VerifiedModel
    let fileName: String
    let gguf: GGUFFile

    /// An encrypted model (`model encrypt`) needs its data key; a plaintext model must not be given one.
    static func open(model: String, signature: String, trust: ModelTrustAnchor, key: DataKey? = nil) async throws -> LoadedModel {
        let isGGUF: @Sendable (String) -> Bool = { $0 == "." || $0.hasSuffix(".gguf") }
        let verified: VerifiedModel
        if EncryptedModel.isEncrypted(path: model) {
            guard let key else {
                throw CLIFailure("the model \(model) is encrypted (it holds \(EncryptedModelHeader.fileName)): serve it with its data key "
                                 + "(model.key.sealed or model.key.keylime; README \"Confidential models\")")
            }
            verified = try await SignedModel.verify(encrypted: model, signature: signature, trust: trust, key: key, load: isGGUF)
        } else {
            guard key == nil else {
                throw CLIFailure("a model data key is configured (model.key), but the model \(model) is not encrypted "
                                 + "(no \(EncryptedModelHeader.fileName)); refusing to serve it as if it were")
            }
            verified = try await SignedModel.verify(model: model, signature: signature, trust: trust, load: isGGUF)
        }
        let candidates = verified.loadedFiles.keys.sorted()
        guard candidates.count == 1, let name = candidates.first, let bytes = verified.loadedFiles[name] else {
            throw CLIFailure(candidates.isEmpty
                ? "the model \(model) verified, but it holds no .gguf file"
                : "the model \(model) holds \(candidates.count) .gguf files (\(candidates.joined(separator: ", "))); expected one")
        }
        let buffer = GGUFBuffer(adopting: bytes.baseAddress, count: bytes.count, owner: bytes)
        let displayName = name == "." ? URL(fileURLWithPath: model).lastPathComponent : name
        do {
            return LoadedModel(verified: verified, fileName: displayName, gguf: try GGUFFile.parse(buffer))
        } catch {
            throw CLIFailure("the model verified, but \(displayName) is not a valid GGUF file: \(error)")
        }
    }
}
