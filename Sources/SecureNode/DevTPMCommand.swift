import ArgumentParser
import Foundation
import SoftwareTPM
#if canImport(Glibc)
import Glibc
#endif

struct DevTPMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-tpm",
        abstract: "Development only: provision and run a software TPM (swtpm) until interrupted.",
        discussion: """
            On first use, manufactures the TPM with an EK certificate from a local CA kept in the state \
            directory (<state-dir>/ca, which the swtpm-dev profile trusts for enrollment). Prints the TCTI \
            string on standard output, then runs until SIGINT or SIGTERM, and stops swtpm.
            """
    )

    @Option(name: .customLong("state-dir"), help: "Where the software TPM keeps its state (default $SECURENODE_STATE_DIR/swtpm).")
    var stateDirectory: String?

    func run() async throws {
        try await reportingFailures {
            let base = ProcessInfo.processInfo.environment["SECURENODE_STATE_DIR"] ?? "/var/lib/securenode"
            let swtpm = SoftwareTPM(stateDirectory: URL(fileURLWithPath: stateDirectory ?? "\(base)/swtpm"))
            try swtpm.start()
            FileHandle.standardOutput.write(Data((swtpm.tcti + "\n").utf8))
            await SignalWaiter([SIGINT, SIGTERM]).wait()
            swtpm.stop()
        }
    }
}

/// Waits for the first of some signals (handled through Dispatch, not the default action).
final class SignalWaiter: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []
    private let signals: [Int32]

    init(_ signals: [Int32]) { self.signals = signals }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = OnceFlag()
            for signal in signals {
                Glibc.signal(signal, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signal)
                source.setEventHandler { if once.claim() { continuation.resume() } }
                source.resume()
                sources.append(source)
            }
        }
        sources.forEach { $0.cancel() }
    }
}

final class OnceFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    func claim() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if done { return false }
        done = true
        return true
    }
}
