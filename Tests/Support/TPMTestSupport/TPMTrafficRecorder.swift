import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TCP relay between a TPM client and swtpm that records every byte both ways: a capture of the
/// TPM "bus" (what a TCTI trace or a probe on the LPC/SPI lines would see). Give clients ``tcti``;
/// commands go to `upstreamPort`, control to `upstreamPort + 1`, as tpm2-tss's swtpm TCTI expects.
public final class TPMTrafficRecorder: @unchecked Sendable {
    public private(set) var port: Int = 0
    public var tcti: String { "swtpm:host=127.0.0.1,port=\(port)" }
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    private var listeners: [Int32] = []

    public init(upstreamPort: Int) throws {
        for _ in 0..<100 {
            let candidate = Int.random(in: 20000...60000)
            guard let command = Self.listen(candidate) else { continue }
            guard let control = Self.listen(candidate + 1) else { Glibc.close(command); continue }
            port = candidate
            listeners = [command, control]
            break
        }
        guard listeners.count == 2 else { throw NSError(domain: "TPMTrafficRecorder", code: 1) }
        for (listener, upstream) in zip(listeners, [upstreamPort, upstreamPort + 1]) {
            Thread.detachNewThread { [self] in acceptLoop(listener, upstream: upstream) }
        }
    }

    deinit { stop() }

    /// Everything that crossed the relay so far, both directions.
    public var captured: [UInt8] { lock.withLock { bytes } }

    public func stop() {
        let open = lock.withLock { () -> [Int32] in defer { listeners = [] }; return listeners }
        for fd in open { shutdown(fd, Int32(SHUT_RDWR)); Glibc.close(fd) }
    }

    private func acceptLoop(_ listener: Int32, upstream: Int) {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            guard let server = Self.connect(upstream) else { Glibc.close(client); continue }
            Thread.detachNewThread { [self] in pump(from: client, to: server) }
            Thread.detachNewThread { [self] in pump(from: server, to: client) }
        }
    }

    private func pump(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            lock.withLock { bytes += buffer[0..<n] }
            var sent = 0
            while sent < n {
                let m = buffer.withUnsafeBytes { send(destination, $0.baseAddress! + sent, n - sent, Int32(MSG_NOSIGNAL)) }
                guard m > 0 else { break }
                sent += m
            }
        }
        shutdown(destination, Int32(SHUT_WR))
    }

    private static func address(_ port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }

    private static func listen(_ port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = address(port)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, Glibc.listen(fd, 8) == 0 else { Glibc.close(fd); return nil }
        return fd
    }

    private static func connect(_ port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = address(port)
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { Glibc.close(fd); return nil }
        return fd
    }
}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs anywhere in these bytes.
    public func containsBytes(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        for start in 0...(count - needle.count) where self[start] == needle[0] && Array(self[start..<(start + needle.count)]) == needle {
            return true
        }
        return false
    }
}
