import Foundation
import GRDB
import ImageStoreCore
import Logging

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
    private let logger: Logger
    /// Latency and accesses in progress, for `/metrics`.
    let instrumentation = MetadataInstrumentation(engine: "sqlite")

    init(writer: any DatabaseWriter, timeout: Duration, logger: Logger) {
        self.writer = writer
        self.timeout = timeout
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
