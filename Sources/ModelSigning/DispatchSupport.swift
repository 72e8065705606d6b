import Dispatch

enum DispatchSupport {
    /// Runs `body` on `iterations` threads of Dispatch's pool (not Swift's cooperative pool, since the
    /// bodies block on file I/O) and returns when all are done.
    static func concurrentPerform(iterations: Int, _ body: @Sendable (Int) -> Void) {
        DispatchQueue.concurrentPerform(iterations: iterations, execute: body)
    }
}
