#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's open-file limit, raised (soft up to hard) to what the listeners' caps need.
public enum FileDescriptorLimit {
    public struct Shortfall: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Raises the soft limit to `needed` when it is lower; refuses when the hard limit is lower
    /// (the systemd unit's LimitNOFILE, or the container runtime's). Returns the soft limit now in force.
    @discardableResult
    public static func ensure(_ needed: Int, for what: String) throws(Shortfall) -> Int {
        var limit = rlimit()
        guard getrlimit(resourceNOFILE, &limit) == 0 else { return needed }
        if limit.rlim_cur != unlimited && Int(limit.rlim_cur) >= needed { return Int(limit.rlim_cur) }
        if limit.rlim_cur == unlimited { return Int.max }
        let hard = limit.rlim_max
        guard hard == unlimited || Int(hard) >= needed else {
            throw Shortfall(description: "\(what) needs \(needed) file descriptors but the hard limit is \(hard): raise LimitNOFILE (systemd) or the container's nofile limit, or lower server.max_connections")
        }
        let soft = limit.rlim_cur
        limit.rlim_cur = rlim_t(needed)
        guard setrlimit(resourceNOFILE, &limit) == 0 else {
            throw Shortfall(description: "\(what) needs \(needed) file descriptors; the soft limit is \(soft) and setrlimit failed: raise LimitNOFILE (systemd) or the container's nofile limit, or lower server.max_connections")
        }
        return needed
    }

    /// RLIM_INFINITY (all bits set), which Swift does not import.
    static let unlimited = rlim_t.max

    #if canImport(Glibc)
    static let resourceNOFILE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    static let resourceNOFILE = RLIMIT_NOFILE
    #endif
}
