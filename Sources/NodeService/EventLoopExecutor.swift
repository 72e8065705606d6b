import NIOCore

/// A Swift task executor that runs jobs on one NIO event loop: a streamed response's task runs where
/// its connection's writes happen, so each token the scheduler hands over wakes one thread (the
/// event loop, which encodes and writes the event at once) instead of two (a cooperative-pool thread,
/// which then hands the write to the event loop). Only for work that never blocks: the loop serves
/// other connections.
final class EventLoopExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
