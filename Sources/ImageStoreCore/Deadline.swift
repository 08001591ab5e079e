import Dispatch
import Synchronization

/// Which side lost a `delivery(_:within:)` race, told to its `gaveUp`.
public enum DeadlineMiss: Sendable {
    /// The deadline came first.
    case deadline
    /// The caller was cancelled first.
    case cancelled
}

/// How a `delivery(_:within:)` deadline reaches its race.
public enum DeadlineFiring: Sendable {
    /// From the timer thread, on time however busy the cooperative pool is: for work that answers from a
    /// thread or queue of its own (a `BlockingCallExecutor` worker, GRDB's writer queue).
    case onTime
    /// Counted from when the cooperative pool first runs a job for the race, and answered by a pool job
    /// queued at the deadline (so behind any answer the pool already holds): for work that is itself a
    /// task (`value(within:)`), which needs the pool to start and to report. A saturated pool then delays
    /// the deadline as much as the work it bounds (as a sleeping timer task did); an exact timer made
    /// operations that were on time lose their race while they waited for the pool.
    case behindPool
}

/// The one deadline primitive: every deadline-bounded call in the server races here — each
/// `BlockingCallExecutor` call (filesystem, NFS through libnfs, DNS, start-up opens), each SQLite write on
/// GRDB's writer queue, and through `value(within:)` every async one (health checks, Keystone,
/// PostgreSQL, SQLite reads). The work was handed to its thread, queue or task before the caller
/// suspends, and answers through `delivered` (its `resume` returning false tells the work that the caller
/// is gone). Returns that answer, or nil once `timeout` passed first or the caller was cancelled; `gaveUp`
/// is then called once (on the timer thread for `.onTime`: it must not block), to stop or undo the work.
/// Deadlines are armed on one timer thread (`DeadlineTimers`), not a sleeping task each.
public func delivery<T: Sendable>(
    _ delivered: ResumeOnce<T?>, within timeout: Duration, firing: DeadlineFiring = .onTime,
    gaveUp: @escaping @Sendable (DeadlineMiss) -> Void = { _ in }
) async -> T? {
    let disarm = armDeadline(delivered, within: timeout, firing: firing, gaveUp: gaveUp)
    defer { disarm() }
    return await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in delivered.install { continuation.resume(returning: $0) } }
    } onCancel: {
        if delivered.resume(nil) { gaveUp(.cancelled) }
    }
}

/// `delivery(_:within:)` for synchronous start-up code, which has no task to await in: the same race,
/// the calling thread blocked until the answer or the deadline (from the timer thread), whichever is first.
public func waitForDelivery<T: Sendable>(
    _ delivered: ResumeOnce<T?>, within timeout: Duration, gaveUp: @escaping @Sendable (DeadlineMiss) -> Void = { _ in }
) -> T? {
    let disarm = armDeadline(delivered, within: timeout, firing: .onTime, gaveUp: gaveUp)
    defer { disarm() }
    let answer = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    delivered.install { value in
        answer.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    return answer.withLock { $0 }
}

/// Arms the race's deadline; returns what disarms it once the answer came first.
private func armDeadline<T: Sendable>(
    _ delivered: ResumeOnce<T?>, within timeout: Duration, firing: DeadlineFiring,
    gaveUp: @escaping @Sendable (DeadlineMiss) -> Void
) -> @Sendable () -> Void {
    switch firing {
    case .onTime:
        let token = DeadlineTimers.shared.arm(after: timeout) { if delivered.resume(nil) { gaveUp(.deadline) } }
        return { DeadlineTimers.shared.disarm(token) }
    case .behindPool:
        let pending = PendingDeadline()
        Task {
            guard !delivered.isResolved else { return }
            let token = DeadlineTimers.shared.arm(after: timeout) {
                Task { if delivered.resume(nil) { gaveUp(.deadline) } }
            }
            if !pending.set(token) { DeadlineTimers.shared.disarm(token) }
        }
        return { if let token = pending.disarm() { DeadlineTimers.shared.disarm(token) } }
    }
}

/// A `.behindPool` deadline armed by a pool job, which may come after the answer did.
private final class PendingDeadline: Sendable {
    private let state = Mutex<(token: DeadlineTimers.Token?, disarmed: Bool)>((nil, false))

    /// False when the race was already over: the caller disarms `token` itself.
    func set(_ token: DeadlineTimers.Token) -> Bool {
        state.withLock { state in
            guard !state.disarmed else { return false }
            state.token = token
            return true
        }
    }

    /// The token to disarm, if one was armed.
    func disarm() -> DeadlineTimers.Token? {
        state.withLock { state in
            state.disarmed = true
            return state.token
        }
    }
}

/// `delivery(_:within:)` for an async operation: runs `operation` in its own task and returns its value,
/// or nil once `timeout` passes first. The task is never awaited past the deadline, so an operation
/// stuck where cancellation cannot reach (a syscall on a hung mount) cannot hold its caller. Cancelling
/// the caller cancels the operation.
/// - Parameter cancelAtDeadline: also cancel the operation at the deadline — for work that stops
///   cleanly when cancelled (an HTTP request). Leave it off where a stuck call must stay visible as
///   stuck (the health monitor does not start a check again while its last call has not returned).
/// - Parameter onLateValue: given the operation's value when it arrives after the caller was answered
///   nil, to release what it acquired.
public func value<T: Sendable>(
    within timeout: Duration, cancelAtDeadline: Bool = false, onLateValue: (@Sendable (T) -> Void)? = nil,
    _ operation: @escaping @Sendable () async -> T
) async -> T? {
    let delivered = ResumeOnce<T?>()
    let work = Task {
        let value = await operation()
        if !delivered.resume(value) { onLateValue?(value) }
    }
    return await delivery(delivered, within: timeout, firing: .behindPool) { miss in
        if miss == .cancelled || cancelAtDeadline { work.cancel() }
    }
}

/// The answer of a `delivery(_:within:)` race: whichever of the work's value and the deadline (nil) comes
/// first is handed to the waiter, exactly once. An answer that arrives before `install` is kept and handed
/// over on install.
public final class ResumeOnce<Value: Sendable>: Sendable {
    private struct State {
        var waiter: (@Sendable (Value) -> Void)?
        var pending: Value?
        var resolved = false
    }
    private let state = Mutex(State())

    public init() {}

    /// Sets who receives the answer (once): a continuation's resume, or a blocked thread's wake-up.
    public func install(_ waiter: @escaping @Sendable (Value) -> Void) {
        let pending: Value? = state.withLock { state in
            if let value = state.pending {
                state.pending = nil
                return value
            }
            state.waiter = waiter
            return nil
        }
        if let pending { waiter(pending) }
    }

    public var isResolved: Bool { state.withLock { $0.resolved } }

    /// Returns false when an earlier answer had already won (this one is dropped).
    @discardableResult
    public func resume(_ value: Value) -> Bool {
        let (won, waiter): (Bool, (@Sendable (Value) -> Void)?) = state.withLock { state in
            guard !state.resolved else { return (false, nil) }
            state.resolved = true
            if let waiter = state.waiter {
                state.waiter = nil
                return (true, waiter)
            }
            state.pending = value
            return (true, nil)
        }
        waiter?(value)
        return won
    }
}
