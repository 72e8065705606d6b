import Crypto
import Foundation

/// The signed content of a model-signing bundle: the in-toto statement's subject and its
/// `https://model_signing/signature/v1.0` predicate (files serialization with SHA-256).
public struct ModelManifest: Sendable, Equatable {
    public static let statementType = "https://in-toto.io/Statement/v1"
    public static let predicateType = "https://model_signing/signature/v1.0"
    /// The paths model-signing's CLI always ignores (git metadata).
    public static let gitPaths = [".git", ".gitattributes", ".github", ".gitignore"]

    public struct Resource: Sendable, Equatable {
        /// POSIX path relative to the model directory, or "." for a single-file model.
        public var name: String
        public var sha256: [UInt8]
        public init(name: String, sha256: [UInt8]) {
            self.name = name
            self.sha256 = sha256
        }
    }

    /// Informative only: the model directory's (or file's) name when it was signed.
    public var subjectName: String
    /// SHA-256 over the concatenated raw resource digests, in manifest order.
    public var rootDigest: [UInt8]
    public var resources: [Resource]
    /// Paths (relative to the model) that the signer excluded from the manifest.
    public var ignorePaths: [String]

    public init(subjectName: String, resources: [Resource], ignorePaths: [String]) {
        self.subjectName = subjectName
        self.resources = resources.sorted { ModelPath.componentOrder($0.name, $1.name) }
        self.ignorePaths = ignorePaths
        self.rootDigest = Self.rootDigest(of: self.resources)
    }

    public static func rootDigest(of resources: [Resource]) -> [UInt8] {
        var hasher = SHA256()
        for r in resources { hasher.update(data: r.sha256) }
        return Array(hasher.finalize())
    }

    /// Parses and checks a statement: statement type, predicate type, exactly one subject, files/sha256
    /// serialization, safe and unique resource names, and the subject digest against the resources.
    public init(statement payload: [UInt8]) throws(ModelSigningError) {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(payload), options: [])
        } catch {
            throw ModelSigningError(.malformedBundle, "the signed payload is not valid JSON")
        }
        let statement = try JSONField.object(object, "payload")
        let type = try JSONField.string(statement["_type"], "payload._type")
        guard type == Self.statementType else {
            throw ModelSigningError(.wrongStatementType, "payload._type is \"\(type)\"; expected \"\(Self.statementType)\"")
        }
        let predicateType = try JSONField.string(statement["predicateType"], "payload.predicateType")
        guard predicateType == Self.predicateType else {
            throw ModelSigningError(.wrongPredicateType,
                "payload.predicateType is \"\(predicateType)\"; expected \"\(Self.predicateType)\"")
        }
        let subjects = try JSONField.array(statement["subject"], "payload.subject")
        guard subjects.count == 1 else {
            throw ModelSigningError(.subjectCount, "payload.subject has \(subjects.count) entries; exactly one is required")
        }
        let subject = try JSONField.object(subjects[0], "payload.subject[0]")
        subjectName = try JSONField.string(subject["name"], "payload.subject[0].name")
        let digests = try JSONField.object(subject["digest"], "payload.subject[0].digest")
        let rootHex = try JSONField.string(digests["sha256"], "payload.subject[0].digest.sha256")
        guard let root = bytes(fromHex: rootHex), root.count == 32 else {
            throw ModelSigningError(.malformedBundle, "payload.subject[0].digest.sha256 is not 64 hex digits")
        }
        rootDigest = root

        let predicate = try JSONField.object(statement["predicate"], "payload.predicate")
        let serialization = try JSONField.object(predicate["serialization"], "payload.predicate.serialization")
        let method = try JSONField.string(serialization["method"], "payload.predicate.serialization.method")
        let hashType = try JSONField.string(serialization["hash_type"], "payload.predicate.serialization.hash_type")
        guard method == "files", hashType == "sha256" else {
            throw ModelSigningError(.unsupportedSerialization,
                "model serialized with method \"\(method)\" and hash \"\(hashType)\"; only \"files\" with \"sha256\" is accepted")
        }
        var ignored: [String] = []
        if let list = serialization["ignore_paths"] {
            for (i, entry) in try JSONField.array(list, "payload.predicate.serialization.ignore_paths").enumerated() {
                ignored.append(try JSONField.string(entry, "payload.predicate.serialization.ignore_paths[\(i)]"))
            }
        }
        ignorePaths = ignored

        var parsed: [Resource] = []
        var seen = Set<String>()
        let list = try JSONField.array(predicate["resources"], "payload.predicate.resources")
        for (i, entry) in list.enumerated() {
            let field = "payload.predicate.resources[\(i)]"
            let resource = try JSONField.object(entry, field)
            let name = try JSONField.string(resource["name"], "\(field).name")
            let algorithm = try JSONField.string(resource["algorithm"], "\(field).algorithm")
            let digestHex = try JSONField.string(resource["digest"], "\(field).digest")
            guard algorithm == "sha256" else {
                throw ModelSigningError(.unsupportedSerialization,
                    "\(field) (\(name)) uses algorithm \"\(algorithm)\"; only \"sha256\" is accepted")
            }
            guard let digest = bytes(fromHex: digestHex), digest.count == 32 else {
                throw ModelSigningError(.malformedBundle, "\(field).digest is not 64 hex digits")
            }
            try ModelPath.checkResourceName(name, field: "\(field).name", singleFile: list.count == 1)
            guard seen.insert(name).inserted else {
                throw ModelSigningError(.duplicateResource, "\(field): \"\(name)\" is listed more than once")
            }
            parsed.append(Resource(name: name, sha256: digest))
        }
        resources = parsed
        let recomputed = Self.rootDigest(of: parsed)
        guard constantTimeEquals(recomputed, root) else {
            throw ModelSigningError(.manifestInconsistent,
                "manifest is inconsistent: the subject digest \(rootHex) is not the digest of the \(parsed.count) listed resources")
        }
    }

    /// The in-toto statement as model-signing writes it (protobuf JSON, indent 2, ASCII).
    public func statementJSON() -> [UInt8] {
        var lines: [String] = []
        lines.append("{")
        lines.append("  \"_type\": \(JSONText.quote(Self.statementType)),")
        lines.append("  \"subject\": [")
        lines.append("    {")
        lines.append("      \"name\": \(JSONText.quote(subjectName)),")
        lines.append("      \"digest\": {")
        lines.append("        \"sha256\": \"\(hexString(rootDigest))\"")
        lines.append("      }")
        lines.append("    }")
        lines.append("  ],")
        lines.append("  \"predicateType\": \(JSONText.quote(Self.predicateType)),")
        lines.append("  \"predicate\": {")
        lines.append("    \"serialization\": {")
        lines.append("      \"method\": \"files\",")
        lines.append("      \"hash_type\": \"sha256\",")
        if ignorePaths.isEmpty {
            lines.append("      \"allow_symlinks\": false")
        } else {
            lines.append("      \"allow_symlinks\": false,")
            lines.append("      \"ignore_paths\": [")
            for (i, p) in ignorePaths.enumerated() {
                lines.append("        \(JSONText.quote(p))" + (i + 1 < ignorePaths.count ? "," : ""))
            }
            lines.append("      ]")
        }
        lines.append("    },")
        lines.append("    \"resources\": [")
        for (i, r) in resources.enumerated() {
            lines.append("      {")
            lines.append("        \"name\": \(JSONText.quote(r.name)),")
            lines.append("        \"algorithm\": \"sha256\",")
            lines.append("        \"digest\": \"\(hexString(r.sha256))\"")
            lines.append("      }" + (i + 1 < resources.count ? "," : ""))
        }
        lines.append("    ]")
        lines.append("  }")
        lines.append("}")
        return Array(lines.joined(separator: "\n").utf8)
    }
}

/// Rules for the POSIX relative paths that name model files.
enum ModelPath {
    /// A manifest path must stay inside the model: relative, no "..", ".", or empty components, no NUL.
    static func checkResourceName(_ name: String, field: String, singleFile: Bool) throws(ModelSigningError) {
        if name == "." && singleFile { return }
        let problem: String?
        if name.isEmpty {
            problem = "is empty"
        } else if name.hasPrefix("/") {
            problem = "is an absolute path"
        } else if name.utf8.contains(0) {
            problem = "contains a NUL byte"
        } else {
            let parts = name.split(separator: "/", omittingEmptySubsequences: false)
            if parts.contains("..") {
                problem = "escapes the model directory (\"..\")"
            } else if parts.contains(where: { $0.isEmpty || $0 == "." }) {
                problem = "is not a canonical relative path"
            } else {
                problem = nil
            }
        }
        if let problem {
            throw ModelSigningError(.unsafeResourceName, "\(field) \"\(name)\" \(problem)")
        }
    }

    /// Python `PurePosixPath` ordering: compare component lists, each component by code points.
    static func componentOrder(_ a: String, _ b: String) -> Bool {
        let pa = a.split(separator: "/").map { Array($0.unicodeScalars.map(\.value)) }
        let pb = b.split(separator: "/").map { Array($0.unicodeScalars.map(\.value)) }
        for (x, y) in zip(pa, pb) where x != y {
            return x.lexicographicallyPrecedes(y)
        }
        return pa.count < pb.count
    }

    /// Whether `path` is `prefix` or lies under it, by whole components (".git" covers ".git/x", not ".gitx").
    static func isUnder(_ path: String, _ prefix: String) -> Bool {
        let p = prefix.split(separator: "/")
        let q = path.split(separator: "/")
        return !p.isEmpty && q.count >= p.count && Array(q.prefix(p.count)) == p
    }
}
