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
        // cooperative pool is. The race itself is `delivery(_:within:)`, the deadline primitive for work
        // handed to a thread; this adds the thread, the admission rule above and the stuck-call accounting.
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
        if let value = await delivery(delivered, within: deadline, gaveUp: { gaveUp.store(true, ordering: .releasing) }) {
            return .completed(value)
        }
        // A caller that was cancelled before the deadline leaves; its call becomes overdue (stuck)
        // only if it is still running when the deadline comes.
        let overdueAt = start + deadline
        if clock.now < overdueAt {
            Task { [self] in
                try? await clock.sleep(until: overdueAt)
                markOverdue(id)
            }
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
    /// `deadline`. A call past it stays on the worker thread, and the caller gets `.timedOut`.
    public func runAndWait<Value: Sendable>(deadline: Duration, _ body: @escaping @Sendable () -> Value) -> Outcome<Value> {
        let answer = WaitedAnswer<Value>()
        let done = DispatchSemaphore(value: 0)
        let submitted = worker.submit {
            answer.set(body())
            done.signal()
        }
        guard submitted else { return .timedOut(blockedFor: .zero) }
        let nanoseconds = Int(clamping: deadline.components.seconds * 1_000_000_000 + deadline.components.attoseconds / 1_000_000_000)
        guard done.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success, let value = answer.get() else {
            return .timedOut(blockedFor: deadline)
        }
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

/// The value a `runAndWait` call waits for, handed from the worker thread.
private final class WaitedAnswer<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)
    func set(_ newValue: Value) { value.withLock { $0 = newValue } }
    func get() -> Value? { value.withLock { $0 } }
}

/// Resumes a continuation exactly once, with whichever answer comes first (a result or a deadline).
/// An answer that arrives before `install` is kept and delivered on install.
public final class ResumeOnce<Value: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<Value, Never>?, pending: Value?, resolved: Bool)>((nil, nil, false))

    public init() {}

    public func install(_ continuation: CheckedContinuation<Value, Never>) {
        let pending: Value? = state.withLock { state in
            if let value = state.pending {
                state.pending = nil
                return value
            }
            state.continuation = continuation
            return nil
        }
        if let pending { continuation.resume(returning: pending) }
    }

    public var isResolved: Bool { state.withLock { $0.resolved } }

    /// Returns false when an earlier answer had already won (this one is dropped).
    @discardableResult
    public func resume(_ value: Value) -> Bool {
        let (won, continuation): (Bool, CheckedContinuation<Value, Never>?) = state.withLock { state in
            guard !state.resolved else { return (false, nil) }
            state.resolved = true
            if let c = state.continuation {
                state.continuation = nil
                return (true, c)
            }
            state.pending = value
            return (true, nil)
        }
        continuation?.resume(returning: value)
        return won
    }
}

/// The one deadline primitive: every deadline in the server (a health check, a Keystone round trip, and
/// through `BlockingCallExecutor.run(deadline:)` every blocking filesystem or NFS call) races here. Runs `operation` in
/// its own task and returns its value, or nil once `timeout` passes first. The task is never awaited
/// past the deadline, so an operation stuck where cancellation cannot reach (a syscall on a hung mount)
/// cannot hold its caller. Cancelling the caller cancels the operation.
/// - Parameter cancelAtDeadline: also cancel the operation at the deadline — for work that stops
///   cleanly when cancelled (an HTTP request). Leave it off where a stuck call must stay visible as
///   stuck (the health monitor does not start a check again while its last call has not returned).
/// - Parameter onLateValue: given the operation's value when it arrives after the caller was answered
///   nil, to release what it acquired.
public func value<T: Sendable>(
    within timeout: Duration, cancelAtDeadline: Bool = false, onLateValue: (@Sendable (T) -> Void)? = nil,
    _ operation: @escaping @Sendable () async -> T
) async -> T? {
    let once = ResumeOnce<T?>()
    let tasks = RaceTasks()
    return await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in
            once.install(continuation)
            let timer = Task {
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                if cancelAtDeadline { tasks.cancelWork() }
                once.resume(nil)
            }
            let work = Task {
                let value = await operation()
                tasks.cancelTimer()
                if !once.resume(value) { onLateValue?(value) }
            }
            tasks.set(timer: timer, work: work)
        }
    } onCancel: {
        tasks.cancelWork()
        tasks.cancelTimer()
        once.resume(nil)
    }
}

/// The deadline primitive for an answer computed elsewhere: the work was handed to its thread or queue
/// before the caller suspends (no task, no hop), and delivers its answer through `delivered` (whose
/// `resume` returning false tells it the caller is gone). Returns that answer, or nil once `timeout`
/// passes first or the caller is cancelled; `gaveUp` is then called once (on the timer thread or in the
/// cancellation handler: it must not block), to stop or undo the work.
public func delivery<T: Sendable>(
    _ delivered: ResumeOnce<T?>, within timeout: Duration, gaveUp: @escaping @Sendable () -> Void = {}
) async -> T? {
    let timer = DeadlineTimers.shared.arm(after: timeout) { if delivered.resume(nil) { gaveUp() } }
    defer { DeadlineTimers.shared.disarm(timer) }
    return await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in delivered.install(continuation) }
    } onCancel: {
        if delivered.resume(nil) { gaveUp() }
    }
}

/// The two tasks of a `value(within:)` race, so each side can cancel the other.
private final class RaceTasks: Sendable {
    private let tasks = Mutex<(timer: Task<Void, Never>?, work: Task<Void, Never>?)>((nil, nil))
    func set(timer: Task<Void, Never>, work: Task<Void, Never>) { tasks.withLock { $0 = (timer, work) } }
    func cancelWork() { tasks.withLock { $0.work }?.cancel() }
    func cancelTimer() { tasks.withLock { $0.timer }?.cancel() }
}
