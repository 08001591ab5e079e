import Foundation
import Synchronization

/// Runs blocking calls (stat, statvfs, reading files that may sit on a hung NFS or FUSE mount) on
/// dedicated OS threads (one by default, or a small fixed pool) and races each against a deadline.
///
/// A call that overruns its deadline stays on its thread (a blocked syscall cannot be abandoned), but
/// its caller gets `.timedOut` at the deadline. While such a call is still stuck, new calls answer
/// `.timedOut` at once instead of queueing behind it, so a hung mount costs callers a bounded time and
/// never piles up threads: at most `threads` can ever be held. Never the NIO thread pool or the
/// cooperative pool: those must not block.
public final class BlockingCallExecutor: Sendable {
    public enum Outcome<Value: Sendable>: Sendable {
        case completed(Value)
        /// No answer within the deadline (or an earlier call is still stuck since `blockedFor` ago).
        case timedOut(blockedFor: Duration)
    }

    private let worker: SerialWorkerThread
    private let state = Mutex(State())
    /// Told the number of stuck calls whenever it changes (a store reports its hung calls to the guard).
    private let onStuckChange: (@Sendable (Int) -> Void)?

    private struct State {
        var nextID = 0
        /// Calls submitted and not finished; `overdue` once their caller gave up.
        var inFlight: [Int: (started: ContinuousClock.Instant, overdue: Bool)] = [:]
        var oldestOverdue: ContinuousClock.Instant? { inFlight.values.filter(\.overdue).map(\.started).min() }
        var overdueCount: Int { inFlight.values.count(where: \.overdue) }
    }

    /// - Parameters:
    ///   - threads: how many calls may run at once (and so the most a hung filesystem can ever hold).
    ///   - onStuckChange: called, off any lock, with the number of calls past their deadline and not yet
    ///     returned, each time it changes.
    public init(name: String, threads: Int = 1, onStuckChange: (@Sendable (Int) -> Void)? = nil) {
        worker = SerialWorkerThread(name: name, threads: threads)
        self.onStuckChange = onStuckChange
    }

    deinit { worker.close() }

    /// Calls that overran their deadline and are still blocked on a thread.
    public var stuckCalls: Int { state.withLock { $0.overdueCount } }

    /// Runs `body` on a worker thread; answers at the latest at `deadline`.
    /// - Parameter abandoned: called on the worker with `body`'s value when it returned after its caller
    ///   had given up, to release what it acquired (a descriptor opened late, a file created late).
    public func run<Value: Sendable>(
        deadline: Duration, abandoned: (@Sendable (Value) -> Void)? = nil, _ body: @escaping @Sendable () -> Value
    ) async -> Outcome<Value> {
        let clock = ContinuousClock()
        let start = clock.now
        let admitted: Int? = state.withLock { state in
            guard state.oldestOverdue == nil else { return nil }
            let id = state.nextID
            state.nextID += 1
            state.inFlight[id] = (start, false)
            return id
        }
        guard let id = admitted else {
            let since = state.withLock { $0.oldestOverdue } ?? start
            return .timedOut(blockedFor: clock.now - since)
        }
        // Submitted here, before any task hop: a call reaches its thread at once, however busy the
        // cooperative pool is. The race itself is `delivery(_:within:)`, the one deadline primitive; this
        // adds the thread, the admission rule above and the stuck-call accounting.
        let gaveUp = Atomic<Bool>(false)
        let delivered = ResumeOnce<Value?>()
        let submitted = worker.submit { [self] in
            defer { finished(id) }
            // The caller already gave up: do not start a call nobody waits for.
            guard !gaveUp.load(ordering: .acquiring) else { return }
            let value = body()
            if !delivered.resume(value) { abandoned?(value) }
        }
        guard submitted else {
            finished(id)
            return .timedOut(blockedFor: .zero)  // the executor is closed
        }
        // The worker answers the caller itself (no task between them): a call that returned in time is
        // never lost to a deadline because the cooperative pool was too busy to collect its value.
        if let value = await delivery(delivered, within: deadline, gaveUp: { _ in gaveUp.store(true, ordering: .releasing) }) {
            return .completed(value)
        }
        // A caller that was cancelled before the deadline leaves; its call becomes overdue (stuck)
        // only if it is still running when the deadline comes (on the deadline timer thread, which must
        // not block: the stuck-count report, which logs, runs in a task).
        let remaining = start + deadline - clock.now
        if remaining > .zero {
            _ = DeadlineTimers.shared.arm(after: remaining) { Task { self.markOverdue(id) } }
        } else {
            markOverdue(id)
        }
        return .timedOut(blockedFor: clock.now - start)
    }

    private func markOverdue(_ id: Int) {
        let stuck = state.withLock { state -> Int? in
            guard state.inFlight[id] != nil else { return nil }
            state.inFlight[id]?.overdue = true
            return state.overdueCount
        }
        if let stuck { onStuckChange?(stuck) }
    }

    /// The same deadline for synchronous start-up code, which has no task to await in (opening the
    /// metadata database while the application is assembled): blocks the calling thread at most
    /// `deadline` (`waitForDelivery`, the same race as `run`'s). A call past it stays on the worker
    /// thread, and the caller gets `.timedOut`; a call whose caller gave up before it started is skipped.
    public func runAndWait<Value: Sendable>(deadline: Duration, _ body: @escaping @Sendable () -> Value) -> Outcome<Value> {
        let gaveUp = Atomic<Bool>(false)
        let delivered = ResumeOnce<Value?>()
        let submitted = worker.submit {
            guard !gaveUp.load(ordering: .acquiring) else { return }
            delivered.resume(body())
        }
        guard submitted else { return .timedOut(blockedFor: .zero) }
        guard let value = waitForDelivery(delivered, within: deadline, gaveUp: { _ in gaveUp.store(true, ordering: .releasing) })
        else { return .timedOut(blockedFor: deadline) }
        return .completed(value)
    }

    /// Queues `body` without a deadline and without waiting: it runs even while a call is stuck (after
    /// the calls queued before it). For clean-up that must happen once the filesystem answers again
    /// (closing a descriptor, removing a temporary file). Returns false once the executor is closed.
    @discardableResult
    public func submit(_ body: @escaping @Sendable () -> Void) -> Bool {
        worker.submit(body)
    }

    private func finished(_ id: Int) {
        let stuck = state.withLock { state -> Int? in
            let wasOverdue = state.inFlight.removeValue(forKey: id)?.overdue == true
            return wasOverdue ? state.overdueCount : nil
        }
        if let stuck { onStuckChange?(stuck) }
    }
}
