import Foundation
import GRDB
import ImageStoreCore
import Logging
import Synchronization

/// The one way the SQLite repositories (images, metadefs, tasks) use their shared database: every access
/// under the database deadline (`[database] pool_timeout`), every error as an `ImageStoreError`.
///
/// SQLite is meant to be local, but a database file put on a share that hangs, or a lock another process
/// holds, must not hang a request: past the deadline the caller gets 503 (`.dependencyUnavailable`) and the
/// access is cancelled (GRDB interrupts the statement and rolls the transaction back). Lock waits end by
/// themselves at the same deadline (the busy timeout), so no write commits after its caller heard 503
/// unless the filesystem itself held it.
final class SQLiteAccess: Sendable {
    let writer: any DatabaseWriter
    let timeout: Duration
    /// Checkpoints the WAL off the commit path (nil in memory); told of every commit made here.
    let checkpointer: SQLiteCheckpointer?
    private let logger: Logger
    /// Latency and accesses in progress, for `/metrics`.
    let instrumentation = MetadataInstrumentation(engine: "sqlite")

    init(writer: any DatabaseWriter, timeout: Duration, checkpointer: SQLiteCheckpointer? = nil, logger: Logger) {
        self.writer = writer
        self.timeout = timeout
        self.checkpointer = checkpointer
        self.logger = logger
    }

    /// Wraps an error thrown by a caller's `change` closure so it leaves `perform` unchanged.
    struct ChangeFailure: Error { let underlying: any Error }

    /// Runs `body` under the deadline (`deadline: false` for schema migrations, which take as long as they
    /// take), turning database errors into `ImageStoreError`s (logged with their details).
    func perform<T: Sendable>(
        _ operation: String, deadline: Bool = true, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await instrumentation.measure(operation) { try await performMeasured(operation, deadline: deadline, body) }
    }

    private func performMeasured<T: Sendable>(
        _ operation: String, deadline: Bool, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let outcome: Result<T, any Error>
        if deadline {
            guard
                let answer = await value(
                    within: timeout, cancelAtDeadline: true,
                    {
                        do { return Result<T, any Error>.success(try await body()) } catch { return .failure(error) }
                    })
            else {
                if Task.isCancelled { throw CancellationError() }
                logger.error("metadata database deadline passed", metadata: ["operation": "\(operation)", "timeout": "\(timeout)"])
                throw ImageStoreError(
                    .dependencyUnavailable,
                    "The metadata database did not answer within \(timeout.wholeMilliseconds) ms; try again later.")
            }
            outcome = answer
        } else {
            do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        }
        return try mappedOutcome(outcome, operation)
    }

    private func mappedOutcome<T>(_ outcome: Result<T, any Error>, _ operation: String) throws -> T {
        do {
            return try outcome.get()
        } catch let error as ImageStoreError {
            throw error
        } catch let error as ChangeFailure {
            throw error.underlying
        } catch {
            if Task.isCancelled || error is CancellationError { throw CancellationError() }
            logger.error("metadata database error", metadata: ["operation": "\(operation)", "error": "\(error)"])
            throw Self.mapped(error, operation)
        }
    }

    /// One write transaction on the writer connection's own queue, under the deadline: submitted to GRDB's
    /// serial writer queue before the caller suspends and answered from it, with no task in between (the
    /// async `write` went caller → cooperative pool → writer queue → cooperative pool → caller, a thread
    /// wake-up each on a request's critical path). Past the deadline (or when the caller is cancelled) the
    /// transaction does not start, or rolls back instead of committing: no write commits after its caller
    /// heard 503 unless the filesystem held the COMMIT itself. Lock waits end by themselves at the deadline
    /// (the busy timeout).
    /// - Parameter durable: commit with `synchronous = FULL` (status transitions; see SQLiteImageRepository).
    func write<T: Sendable>(
        _ operation: String, _ kind: Database.TransactionKind? = nil, durable: Bool = false,
        _ body: @escaping @Sendable (Database) throws -> T
    ) async throws -> T {
        try await instrumentation.measure(operation) {
            let job = WriteJob()
            let checkpointer = self.checkpointer
            let delivered = ResumeOnce<Result<T, any Error>?>()
            writer.asyncWriteWithoutTransaction { db in
                guard job.start() else { return }  // the caller gave up before its turn
                let outcome: Result<T, any Error>
                do {
                    if durable { try db.execute(sql: "PRAGMA synchronous = FULL") }
                    defer { if durable { try? db.execute(sql: "PRAGMA synchronous = NORMAL") } }
                    var value: T?
                    try db.inTransaction(kind) {
                        value = try body(db)
                        return job.commitIfWanted() ? .commit : .rollback
                    }
                    outcome = job.committed ? .success(value!) : .failure(CancellationError())
                    if job.committed { checkpointer?.noteCommit() }
                } catch {
                    outcome = .failure(error)
                }
                delivered.resume(outcome)
            }
            guard let answer = await delivery(delivered, within: timeout, gaveUp: { _ in job.giveUp() }) else {
                if Task.isCancelled { throw CancellationError() }
                logger.error("metadata database deadline passed", metadata: ["operation": "\(operation)", "timeout": "\(timeout)"])
                throw ImageStoreError(
                    .dependencyUnavailable,
                    "The metadata database did not answer within \(timeout.wholeMilliseconds) ms; try again later.")
            }
            return try mappedOutcome(answer, operation)
        }
    }

    static func mapped(_ error: any Error, _ operation: String) -> ImageStoreError {
        if let error = error as? ImageStoreError { return error }
        if let error = error as? DatabaseError {
            // Locked past the busy timeout, or interrupted at the deadline: the database is busy, not broken.
            if error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_INTERRUPT {
                return ImageStoreError(
                    .dependencyUnavailable, "The metadata database is busy (\(error.resultCode)) while \(operation); try again later.")
            }
            return .internal(
                "metadata database error while \(operation): \(error.message ?? "unknown") (\(error.extendedResultCode))")
        }
        return .internal("metadata database error while \(operation): \(error)")
    }
}

/// Where a `SQLiteAccess.write` stands, shared by its caller (who may give up) and the writer queue: the
/// transaction commits only if its caller still waits when the COMMIT is due.
private final class WriteJob: Sendable {
    private struct State {
        var gaveUp = false
        var committing = false
    }
    private let state = Mutex(State())

    /// Whether to start at all.
    func start() -> Bool { state.withLock { !$0.gaveUp } }

    /// Called just before COMMIT: false (roll back) when the caller gave up meanwhile.
    func commitIfWanted() -> Bool {
        state.withLock { state in
            guard !state.gaveUp else { return false }
            state.committing = true
            return true
        }
    }

    var committed: Bool { state.withLock { $0.committing } }
    func giveUp() { state.withLock { $0.gaveUp = true } }
}
