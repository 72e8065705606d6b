import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real software TPM 2.0 (`swtpm`, Debian's swtpm and swtpm-tools) for development and tests.
///
/// `provision` runs `swtpm_setup --tpm2 --create-ek-cert` with a local CA kept in the state
/// directory (so the EK certificate chains to a CA the tests can trust); `start` runs
/// `swtpm socket` on 127.0.0.1 at two consecutive free ports (command, control), and `stop`
/// terminates exactly the process it started, by pid.
public final class SoftwareTPM: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public let stateDirectory: URL
    public private(set) var port: Int = 0
    private var process: Process?

    public init(stateDirectory: URL) {
        self.stateDirectory = stateDirectory
    }

    /// The TCTI string for tpm2-tss and tpm2-tools (`swtpm:host=127.0.0.1,port=N`).
    public var tcti: String { "swtpm:host=127.0.0.1,port=\(port)" }
    public var pid: Int32? { process?.processIdentifier }
    public var isRunning: Bool { process?.isRunning ?? false }

    var tpmState: URL { stateDirectory.appendingPathComponent("tpm") }
    var caDirectory: URL { stateDirectory.appendingPathComponent("ca") }
    /// The local CA that issued the EK certificate (trust anchor for tests and the dev profile).
    public var caCertificates: [URL] {
        [caDirectory.appendingPathComponent("swtpm-localca-rootca-cert.pem"), caDirectory.appendingPathComponent("issuercert.pem")]
    }
    public var isProvisioned: Bool {
        FileManager.default.fileExists(atPath: tpmState.appendingPathComponent("tpm2-00.permall").path)
    }

    /// Manufactures the TPM state with an RSA-2048 EK and its certificate; idempotent.
    public func provision() throws {
        if isProvisioned { return }
        let fm = FileManager.default
        try fm.createDirectory(at: tpmState, withIntermediateDirectories: true)
        try fm.createDirectory(at: caDirectory, withIntermediateDirectories: true)
        let ca = caDirectory.path
        let localca = stateDirectory.appendingPathComponent("swtpm-localca.conf")
        try """
            statedir = \(ca)
            signingkey = \(ca)/signkey.pem
            issuercert = \(ca)/issuercert.pem
            certserial = \(ca)/certserial

            """.write(to: localca, atomically: true, encoding: .utf8)
        let options = stateDirectory.appendingPathComponent("swtpm-localca.options")
        try "--platform-manufacturer SecureNode\n--platform-version 2.1\n--platform-model swtpm\n"
            .write(to: options, atomically: true, encoding: .utf8)
        let setup = stateDirectory.appendingPathComponent("swtpm_setup.conf")
        try """
            create_certs_tool = \(try Self.which("swtpm_localca"))
            create_certs_tool_config = \(localca.path)
            create_certs_tool_options = \(options.path)
            active_pcr_banks = sha256

            """.write(to: setup, atomically: true, encoding: .utf8)
        let (status, output) = try Self.run(try Self.which("swtpm_setup"), [
            "--tpm2", "--tpmstate", tpmState.path, "--create-ek-cert", "--pcr-banks", "sha256",
            "--config", setup.path, "--overwrite",
        ])
        guard status == 0 else { throw Failure(description: "swtpm_setup failed (\(status)): \(output)") }
    }

    /// Starts `swtpm socket` on free loopback ports (the previous ones after a `stop`) and waits
    /// until it accepts connections.
    public func start() throws {
        guard process == nil else { return }
        try provision()
        var lastError = ""
        for attempt in 0..<5 {
            // A restarted simulator keeps its ports, so clients configured with its TCTI reconnect.
            let p = attempt == 0 && port != 0 ? port : try Self.freeConsecutivePorts()
            let proc = Process()
            proc.executableURL = URL(fileURLWithPath: try Self.which("swtpm"))
            proc.arguments = [
                "socket", "--tpm2", "--tpmstate", "dir=\(tpmState.path)",
                "--server", "type=tcp,port=\(p),bindaddr=127.0.0.1",
                "--ctrl", "type=tcp,port=\(p + 1),bindaddr=127.0.0.1",
                "--flags", "not-need-init,startup-clear",
            ]
            let log = stateDirectory.appendingPathComponent("swtpm.log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            proc.standardOutput = try FileHandle(forWritingTo: log)
            proc.standardError = proc.standardOutput
            try proc.run()
            if Self.waitForPort(p, process: proc, seconds: 10) {
                process = proc
                port = p
                return
            }
            proc.terminate()
            proc.waitUntilExit()
            lastError = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        }
        throw Failure(description: "swtpm did not start: \(lastError)")
    }

    /// Stops the swtpm process this object started, as a machine shuts down: TPM2_Shutdown(CLEAR)
    /// first, so the TPM saves its state in order, then CMD_SHUTDOWN on its control channel (swtpm
    /// does not act on SIGTERM while a client holds a connection), then SIGTERM, then SIGKILL.
    ///
    /// Without the orderly TPM2_Shutdown, the restarted TPM reports its clock as not safe
    /// (TPMS_CLOCK_INFO.safe = NO) until its clock next reaches an NV update, about 4 s of TPM
    /// time, and Keylime refuses every quote made before that ("clock safe flag is disabled").
    public func stop() {
        guard let proc = process else { return }
        process = nil
        let pid = proc.processIdentifier
        if proc.isRunning { Self.sendTPMShutdown(port: port) }
        if proc.isRunning { Self.sendShutdown(controlPort: port + 1) }
        for (signal, grace) in [(Int32(0), 2.0), (SIGTERM, 1.0), (SIGKILL, 5.0)] where proc.isRunning {
            if signal != 0 { kill(pid, signal) }
            let deadline = Date().addingTimeInterval(grace)
            while proc.isRunning && Date() < deadline { usleep(10_000) }
        }
        proc.waitUntilExit()
    }

    /// TPM2_Shutdown(TPM_SU_CLEAR) on the command port; the answer is awaited for at most 2 s (a
    /// client still connected keeps swtpm from reading it), and any failure is ignored: the stop
    /// goes on unordered, as before.
    static func sendTPMShutdown(port: Int) {
        // TPM_ST_NO_SESSIONS, size 12, TPM_CC_Shutdown, TPM_SU_CLEAR.
        let command: [UInt8] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x45, 0, 0]
        guard let fd = connectLoopback(port: port) else { return }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard command.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == command.count else { return }
        var response = [UInt8](repeating: 0, count: 10)
        _ = read(fd, &response, response.count)
    }

    /// A TCP connection to 127.0.0.1:`port`, or nil.
    static func connectLoopback(port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let connected = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            close(fd)
            return nil
        }
        return fd
    }

    /// swtpm control channel command CMD_SHUTDOWN (3): 4-byte big-endian code, 4-byte result.
    static func sendShutdown(controlPort: Int) {
        guard let fd = connectLoopback(port: controlPort) else { return }
        defer { close(fd) }
        var command: [UInt8] = [0, 0, 0, 3]
        _ = write(fd, &command, 4)
        var response = [UInt8](repeating: 0, count: 4)
        _ = read(fd, &response, 4)
    }

    deinit { stop() }

    // MARK: helpers

    static func which(_ tool: String) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] + (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) {
            let candidate = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw Failure(description: "\(tool) is not installed: apt-get install swtpm swtpm-tools (scripts/setup.sh does)")
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: executable)
        proc.arguments = arguments
        let pipe = Pipe()
        proc.standardOutput = pipe
        proc.standardError = pipe
        try proc.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        proc.waitUntilExit()
        return (proc.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Two consecutive free TCP ports on 127.0.0.1 (tpm2-tss's swtpm TCTI uses port and port+1).
    static func freeConsecutivePorts() throws -> Int {
        for _ in 0..<50 {
            let first = try bindEphemeral()
            if first < 65535, canBind(first + 1) { return first }
        }
        throw Failure(description: "no two consecutive free ports on 127.0.0.1")
    }

    private static func bindEphemeral() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw Failure(description: "cannot bind a socket on 127.0.0.1") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    private static func waitForPort(_ port: Int, process: Process, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline && process.isRunning {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(port).bigEndian
            let connected = withUnsafeMutablePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if connected { return true }
            usleep(20_000)
        }
        return false
    }
}
