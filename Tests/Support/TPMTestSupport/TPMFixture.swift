import Foundation
import SoftwareTPM
import TPM

/// Tools the TPM tests need. Missing tools skip the suites visibly, unless SECURENODE_REQUIRE_TOOLS=1
/// (set by scripts/test.sh), which turns them into failures.
public enum TPMTools {
    public static func installed(_ tool: String) -> Bool {
        ["/usr/bin", "/usr/local/bin"].contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") }
    }
    public static let required = ProcessInfo.processInfo.environment["SECURENODE_REQUIRE_TOOLS"] == "1"
    public static var swtpm: Bool { required || (installed("swtpm") && installed("swtpm_setup")) }
    public static var tpm2Tools: Bool { required || installed("tpm2_checkquote") }

    public static func run(_ tool: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: "/usr/bin/\(tool)")
        proc.arguments = arguments
        proc.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let pipe = Pipe()
        proc.standardOutput = pipe
        proc.standardError = pipe
        try proc.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        proc.waitUntilExit()
        return (proc.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Test-only support shared by the test targets that run a real swtpm (TPMTests, AcceleratorsTests).
///
/// One manufactured TPM state (EK + EK certificate from a local CA, and the profile's RSA AK),
/// made once per test process; every test copies it and runs its own swtpm, which it stops (by
/// pid) when it ends.
public actor ProvisionedTPMState {
    public static let shared = ProvisionedTPMState()
    private var task: Task<URL, any Error>?

    public func template() async throws -> URL {
        if task == nil { task = Task { try await Self.make() } }
        return try await task!.value
    }

    private static func make() async throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("securenode-swtpm-template-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        let swtpm = SoftwareTPM(stateDirectory: dir)
        try await offPool {
            try swtpm.provision()
            try swtpm.start()
        }
        defer { swtpm.stop() }
        _ = try await TPM(tcti: swtpm.tcti).attestationKey(.rsa2048, persistentHandle: 0x8101_0002)
        return dir
    }
}

public final class RunningTPM {
    public let directory: URL
    public let swtpm: SoftwareTPM
    public let tpm: TPM

    public init() async throws {
        let template = try await ProvisionedTPMState.shared.template()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("securenode-swtpm-\(UUID().uuidString)")
        let swtpm = SoftwareTPM(stateDirectory: directory)
        // Copying state and starting a process block: keep them off Swift's cooperative pool.
        try await offPool {
            try FileManager.default.copyItem(at: template, to: directory)
            try swtpm.start()
        }
        self.directory = directory
        self.swtpm = swtpm
        tpm = TPM(tcti: swtpm.tcti)
    }

    deinit {
        swtpm.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    public func file(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// tpm2-tools' serialized PCR file (see ``PCRFile``).
public func tpm2ToolsPCRFile(values: [Int: [UInt8]]) -> [UInt8] {
    PCRFile.serialize(sha256: values)
}

/// Runs blocking work (processes, file copies) on a Dispatch thread, not the cooperative pool.
public func offPool(_ body: @escaping @Sendable () throws -> Void) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        DispatchQueue.global().async {
            do {
                try body()
                continuation.resume()
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }
}
