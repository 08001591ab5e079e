import ImageStoreCore
import Synchronization

/// Every blocking call the filesystem store makes, under one deadline: a small fixed pool of threads
/// (Core's `BlockingCallExecutor`), so a hung share costs a caller at most `timeout` and can hold at
/// most `threads` threads. Calls that overran their deadline — on the pool or on an upload's own file
/// thread — are counted, and each change of that count is reported (the guard disables the store while
/// any is stuck, and `/v2/info/stores/detail` shows the count).
final class StoreIO: Sendable {
    let timeout: Duration
    private let executor: BlockingCallExecutor
    private let stuck: StuckCounter

    init(name: String, threads: Int, timeout: Duration, onStuckChange: @escaping @Sendable (Int, String?) -> Void) {
        self.timeout = timeout
        let stuck = StuckCounter(timeout: timeout, onChange: onStuckChange)
        self.stuck = stuck
        self.executor = BlockingCallExecutor(name: name, threads: threads) { count in stuck.poolChanged(count) }
    }

    /// Calls past their deadline and not yet returned (pool and uploads).
    var stuckCalls: Int { stuck.total }

    /// Runs `body` on the pool; throws its error, or a timeout error naming `what` after `timeout`
    /// (503 for reads, the store-unavailable status for writes).
    func run<T: Sendable>(
        _ what: String, context: IOContext, abandoned: (@Sendable (T) -> Void)? = nil,
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        let outcome = await executor.run(
            deadline: timeout,
            abandoned: { (result: Result<T, any Error>) in if case .success(let value) = result { abandoned?(value) } },
            { Result(catching: body) })
        switch outcome {
        case .completed(let result): return try result.get()
        case .timedOut:
            // Also when refused at once because an earlier call is still stuck: the store did not answer.
            throw timedOut(what, context: context)
        }
    }

    /// Queues clean-up that must run once the share answers again; never waits.
    func submit(_ body: @escaping @Sendable () -> Void) {
        executor.submit(body)
    }

    /// The error for a call that did not answer in time.
    func timedOut(_ what: String, context: IOContext) -> ImageStoreError {
        let detail = "timed out: \(what) did not answer within \(timeout.wholeMilliseconds) ms"
        switch context {
        case .read: return ImageStoreError(.readUnavailable, "Image store is unavailable: \(detail)")
        case .write: return .storeUnavailable("store disabled: \(detail)")
        }
    }

    /// An upload's own file thread overran its deadline: counted until the returned `release` runs
    /// (queued behind the stuck call on that thread). Idempotent.
    func uploadStuck(_ what: String) -> @Sendable () -> Void {
        stuck.uploadStuck("timed out: \(what) did not answer within \(timeout.wholeMilliseconds) ms")
    }
}

/// The count of stuck calls (pool + uploads), reporting each change.
private final class StuckCounter: Sendable {
    let timeout: Duration
    private let counts = Mutex<(pool: Int, uploads: Int)>((0, 0))
    private let onChange: @Sendable (Int, String?) -> Void

    init(timeout: Duration, onChange: @escaping @Sendable (Int, String?) -> Void) {
        self.timeout = timeout
        self.onChange = onChange
    }

    var total: Int { counts.withLock { $0.pool + $0.uploads } }

    func poolChanged(_ pool: Int) {
        let total = counts.withLock { counts -> Int in
            counts.pool = pool
            return counts.pool + counts.uploads
        }
        onChange(total, "timed out: a call to the store did not answer within \(timeout.wholeMilliseconds) ms")
    }

    func uploadStuck(_ detail: String) -> @Sendable () -> Void {
        let total = counts.withLock { counts -> Int in
            counts.uploads += 1
            return counts.pool + counts.uploads
        }
        onChange(total, detail)
        let released = OnceFlag()
        return { [self] in
            guard released.set() else { return }
            let total = counts.withLock { counts -> Int in
                counts.uploads -= 1
                return counts.pool + counts.uploads
            }
            onChange(total, nil)
        }
    }
}

/// True for the first `set()` only.
private final class OnceFlag: Sendable {
    private let done = Atomic(false)
    func set() -> Bool { !done.exchange(true, ordering: .acquiringAndReleasing) }
}
