import Foundation

/// The real `model_signing` CLI from PyPI (model-signing 1.1.x), used as an independent checker.
///
/// When it is not installed the interoperability tests are skipped, visibly; the project's test
/// command installs it and sets SECURENODE_REQUIRE_TOOLS=1, which turns a missing tool into a failure.
enum ModelSigningTool {
    static let path: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(dir)/model_signing"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    static let required = ProcessInfo.processInfo.environment["SECURENODE_REQUIRE_TOOLS"] == "1"
    static var available: Bool { path != nil || required }

    struct Outcome {
        let status: Int32
        let output: String
    }

    /// Runs `model_signing ARGS` and returns its exit status and combined output.
    static func run(_ arguments: [String]) throws -> Outcome {
        guard let path else { throw ToolMissing() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    struct ToolMissing: Error, CustomStringConvertible {
        var description: String { "model_signing is not on PATH: run scripts/setup.sh (pip install model-signing pyOpenSSL)" }
    }
}
