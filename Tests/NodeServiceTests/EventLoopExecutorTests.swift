import NIOCore
import NIOPosix
@testable import NodeService
import Testing

/// A streamed response's text is handled on its connection's event loop (`EventLoopExecutor`): code
/// under the preference runs there, also after it suspended, and leaves it when asked.
struct EventLoopExecutorTests {
    @Test func runsTheTaskOnItsEventLoopAcrossSuspensions() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        let producer = Task.detached {
            for i in 0 ..< 50 {
                continuation.yield(i)
                try? await Task.sleep(for: .milliseconds(1))
            }
            continuation.finish()
        }
        let (received, everyOnLoop, offLoopAfter) = await withTaskExecutorPreference(EventLoopExecutor(loop)) {
            var received: [Int] = []
            var everyOnLoop = loop.inEventLoop
            for await value in stream {
                received.append(value)
                everyOnLoop = everyOnLoop && loop.inEventLoop
            }
            let offLoopAfter = await withTaskExecutorPreference(globalConcurrentExecutor) { !loop.inEventLoop }
            return (received, everyOnLoop, offLoopAfter)
        }
        await producer.value
        #expect(received == Array(0 ..< 50))
        #expect(everyOnLoop)
        #expect(offLoopAfter)
    }
}
