import Foundation

/// One dedicated OS thread running submitted jobs in order. Blocking calls (libnfs, stat on a possibly hung
/// mount) run here, never on the NIO thread pool or the Swift cooperative pool: a call stuck on a hung server
/// then only ever blocks this thread.
///
/// With `threads` > 1 it is a small fixed pool taking jobs from one queue in order (started in order, not
/// run one at a time): the number of threads a hung filesystem can ever hold is that fixed number.
public final class SerialWorkerThread: @unchecked Sendable {
    // `jobs` and `closed` are guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var closed = false

    public init(name: String, threads: Int = 1) {
        precondition(threads > 0)
        for index in 0..<threads {
            let threadName = threads == 1 ? name : "\(name)-\(index)"
            // The thread holds the worker strongly until `close()` lets its loop end: the owner must call close.
            let thread = Thread { [self] in
                #if os(Linux)
                // Names the OS thread (ps, top, gdb; the kernel keeps 15 bytes): Foundation's `name` may not reach it.
                try? String(decoding: threadName.utf8.prefix(15), as: UTF8.self)
                    .write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
                #endif
                run()
            }
            thread.name = threadName
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Queues `job`. Returns false once the worker is closed.
    @discardableResult
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// Refuses new jobs; the thread runs what is queued, then exits.
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty && !closed { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }
}
