import Foundation
import NIOCore
import NIOPosix
@testable import NodeService
import Testing

/// A streamed response's text is handled on its connection's event loop (`EventLoopExecutor`): code
/// under the preference runs there, also after it suspended, and what follows the scope does not.
struct EventLoopExecutorTests {
    @Test func runsTheTaskOnItsEventLoopAcrossSuspensions() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        // A thread of its own, as the scheduler's loop is (the cooperative pool may be busy with other tests).
        let producer = Thread {
            for i in 0 ..< 50 {
                continuation.yield(i)
                usleep(1000)
            }
            continuation.finish()
        }
        producer.start()
        let (received, everyOnLoop) = await withTaskExecutorPreference(EventLoopExecutor(loop)) {
            var received: [Int] = []
            var everyOnLoop = loop.inEventLoop
            for await value in stream {
                received.append(value)
                everyOnLoop = everyOnLoop && loop.inEventLoop
            }
            return (received, everyOnLoop)
        }
        // What follows the scope (a streamed choice's end: receipt, tool calls, log) is off the loop.
        let offLoopAfterScope = !loop.inEventLoop
        #expect(received == Array(0 ..< 50))
        #expect(everyOnLoop)
        #expect(offLoopAfterScope)
        try await group.shutdownGracefully()
    }
}
