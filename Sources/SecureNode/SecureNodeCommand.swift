import ArgumentParser

@main
struct SecureNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "securenode",
        abstract: "An attested inference node that loads only signed model weights.",
        subcommands: [ModelCommand.self, ServeCommand.self, EnrollCommand.self, DevTPMCommand.self, MeasureCommand.self, QuoteCommand.self, VerifyCommand.self, SealCommand.self, UnsealCommand.self, ApprovePolicyCommand.self, KeysCommand.self, ProfileCommand.self, GenerateCommand.self, BenchEngineCommand.self, VerifyReceiptCommand.self, ProxyCommand.self, BackendsCommand.self, KeylimePolicyCommand.self, RevocationCommand.self]
    )
}

/// Failures the CLI reports on one line to standard error, exiting 1.
struct CLIFailure: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

extension AsyncParsableCommand {
    /// Runs `body`, turning any error into "error: <reason>" on stderr and exit status 1.
    func reportingFailures(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as CleanExit {
            throw error
        } catch let error as ExitCode {
            throw error
        } catch {
            StandardError.write("error: \(error)\n")
            throw ExitCode(1)
        }
    }
}
