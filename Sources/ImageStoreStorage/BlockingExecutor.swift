import Foundation

/// A few dedicated threads for blocking syscalls and hashing, so none of it runs on NIO event loops or
/// on the small shared `NIOThreadPool.singleton`.
///
/// Unlike `NIOThreadPool`, every submitted item runs, in order for a one-thread executor, also after
/// `close()` was requested and regardless of task cancellation: clean-up work (close, unlink) queued
/// behind writes must never be skipped. The threads exit once closed and drained; dropping the last
/// reference closes the executor.
final class BlockingExecutor: Sendable {
    private let core: Core

    init(threads: Int, name: String) {
        precondition(threads > 0)
        core = Core()
        for index in 0..<threads {
            // The thread holds only the core (not `self`), so the executor can be deinitialised.
            let core = self.core
            let thread = Thread { core.runLoop() }
            thread.name = threads == 1 ? name : "\(name)-\(index)"
            thread.start()
        }
    }

    deinit {
        core.close()
    }

    /// Queues `body`; it always runs.
    func submit(_ body: @escaping @Sendable () -> Void) {
        core.enqueue(body)
    }

    /// Runs `body` on one of the threads and returns its result. Not cancellable on purpose: the
    /// work has side effects (a write, a close) that the caller must be able to rely on.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            core.enqueue { continuation.resume(with: Result(catching: body)) }
        }
    }

    /// Lets the threads exit once everything queued so far has run.
    func close() {
        core.close()
    }

    /// The queue. All mutable state is guarded by `condition`, hence `@unchecked Sendable`.
    private final class Core: @unchecked Sendable {
        private let condition = NSCondition()
        private var items: [(@Sendable () -> Void)?] = []
        private var head = 0
        private var closed = false

        func enqueue(_ item: @escaping @Sendable () -> Void) {
            condition.lock()
            if closed {
                condition.unlock()
                // Cannot happen by construction (closing drops the last reference); keep the promise
                // that every item runs rather than losing a clean-up.
                item()
                return
            }
            items.append(item)
            condition.signal()
            condition.unlock()
        }

        func close() {
            condition.lock()
            closed = true
            condition.broadcast()
            condition.unlock()
        }

        func runLoop() {
            while true {
                condition.lock()
                while head == items.count && !closed {
                    condition.wait()
                }
                if head == items.count {
                    condition.unlock()
                    return
                }
                // Take one item at a time so each runs (and releases what it captured, e.g. a 1 MiB
                // batch) before the next is dequeued.
                let item = items[head]!
                items[head] = nil
                head += 1
                if head == items.count {
                    items.removeAll(keepingCapacity: true)
                    head = 0
                }
                condition.unlock()
                item()
            }
        }
    }
}
