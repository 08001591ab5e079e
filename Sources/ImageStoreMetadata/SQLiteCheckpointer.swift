import Dispatch
import Foundation
import GRDB
import ImageStoreCore
import Logging
import Synchronization

/// Checkpoints the SQLite WAL off the commit path (the writer runs with `wal_autocheckpoint = 0`).
///
/// SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000 WAL pages: that commit copies the
/// pages into the database and fsyncs the WAL and the database file before its caller hears back — with
/// ~13 pages per image create, once every ~75 creates, and on a disk still writing back uploads an fsync
/// takes tens of milliseconds (docs/performance.md, "WAL checkpoints off the commit path"). Here a thread
/// of its own, on a connection of its own, runs PASSIVE checkpoints (which never block the writer or
/// readers) `interval` after a commit was noted, and sleeps while nothing is written: every write to the
/// database (images, metadefs, tasks, members, replicas) commits through `SQLiteAccess.write`, which notes
/// it, and `migrate` notes its own. Each checkpoint fsyncs the WAL before copying, so what synchronous=NORMAL
/// may lose on a power loss is no more than before (it was up to 1000 pages; now about `interval`).
///
/// PASSIVE checkpoints alone cannot bound the WAL: it rewinds only when a write starts with every frame
/// copied, which a steady stream of writes never allows. Past `restartFrames` the checkpointer queues a
/// RESTART checkpoint on the writer's own queue (between two writes, so it cannot be starved; the next write
/// rewinds the WAL), with a short busy timeout so a long reader delays it (until the next round) rather than
/// the writes behind it. RESTART, not TRUNCATE: the WAL file keeps its size (bounded by `restartFrames` and one
/// round's writes) and is overwritten in place, cheaper to fsync than a file that grows again. 4096 frames
/// (16 MiB, ~230 image creates) bounds the file; growing it costs kernel CPU per insert (ext4 zeroes new
/// page-cache folios in the commit), though server-level create A/Bs showed no difference from 16384
/// (docs/performance.md).
final class SQLiteCheckpointer: Sendable {
    struct Counts: Sendable, Equatable {
        var passive = 0
        var restart = 0
        var failed = 0
        /// PASSIVE rounds that found the checkpoint lock held (another connection checkpointing), retried.
        var busy = 0
        /// The WAL's frames after the last checkpoint (0 after a RESTART).
        var walFrames = 0
        /// Of those, the frames copied into the database.
        var copiedFrames = 0
    }

    private struct State {
        var signalled = false
        var stopping = false
        var finished = false
        /// `finished` has its one waiter (a second `stop` does not wait again).
        var awaited = false
        var counts = Counts()
    }

    private let connection: DatabaseQueue
    private let writer: any DatabaseWriter
    private let interval: Duration
    private let restartFrames: Int
    private let logger: Logger
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    private let finished = ResumeOnce<Void?>()

    /// Opens a connection of its own to `path` (a database already in WAL mode) and starts the thread.
    init(path: String, writer: any DatabaseWriter, interval: Duration = .milliseconds(100), restartFrames: Int = 4096, logger: Logger) throws {
        var config = Configuration()
        config.label = "imagestore.metadata.checkpointer"
        // PASSIVE checkpoints never wait on a lock: no busy handler needed.
        connection = try DatabaseQueue(path: path, configuration: config)
        // The checkpoint's fsyncs (WAL before copying, database after) are what make it safe.
        try connection.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        self.writer = writer
        self.interval = interval
        self.restartFrames = restartFrames
        self.logger = logger
        // Named from inside: on Linux a thread otherwise keeps its creator's name (the start-up executor's).
        Thread { [self] in
            Thread.current.name = "imagestore.ckpt"
            run()
        }.start()
    }

    var counts: Counts { state.withLock { $0.counts } }

    /// A write committed: checkpoint within `interval`.
    func noteCommit() {
        let signal = state.withLock { state in
            guard !state.signalled else { return false }
            state.signalled = true
            return true
        }
        if signal { wake.signal() }
    }

    /// Asks the thread to stop after the checkpoint it may be running, without waiting.
    func requestStop() {
        let first = state.withLock { state in
            defer { state.stopping = true }
            return !state.stopping
        }
        if first {
            wake.signal()
            stopped.signal()
        }
    }

    /// Stops the thread (after the checkpoint it may be running; it closes its connection as it ends) and
    /// waits for that at most `timeout`. Returns false when the thread did not finish within `timeout` (a
    /// checkpoint stuck in the filesystem). One stop, two ways to wait on the same end: this one blocks the
    /// calling thread (`close`, which is synchronous), the `async` one suspends (server shutdown).
    @discardableResult
    func stop(within timeout: Duration) -> Bool {
        guard let end = stopAndEnd() else { return hasFinished }
        return waitForDelivery(end, within: timeout) != nil
    }

    @discardableResult
    func stop(within timeout: Duration) async -> Bool {
        guard let end = stopAndEnd() else { return hasFinished }
        return await delivery(end, within: timeout) != nil
    }

    /// Requests the stop; returns the thread's end to wait on, unless another caller already waits or waited
    /// (`ResumeOnce` has one waiter): that caller is answered whether it has finished.
    private func stopAndEnd() -> ResumeOnce<Void?>? {
        requestStop()
        let wait = state.withLock { state in
            defer { state.awaited = true }
            return !state.awaited
        }
        return wait ? finished : nil
    }

    private var hasFinished: Bool { state.withLock { $0.finished } }

    private var stopping: Bool { state.withLock { $0.stopping } }

    private func run() {
        defer {
            // Closed here, by the one thread that uses it: also when a stop stopped waiting or none came (deinit).
            try? connection.close()
            state.withLock { $0.finished = true }
            finished.resume(())
        }
        while !stopping {
            // No idle round: every commit is noted (`SQLiteAccess.write`), so no write waits on a timer.
            wake.wait()
            if stopping { return }
            // Let the writes of `interval` gather: one checkpoint (two fsyncs) for all of them.
            _ = stopped.wait(timeout: .now() + .milliseconds(Int(interval.wholeMilliseconds)))
            if stopping { return }
            state.withLock { $0.signalled = false }
            checkpoint()
        }
    }

    /// One round: PASSIVE on this connection, then RESTART on the writer's queue if the WAL grew too long.
    func checkpoint() {
        do {
            let passive: (walFrameCount: Int, checkpointedFrameCount: Int)
            do {
                passive = try connection.writeWithoutTransaction { db in try db.checkpoint(.passive) }
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY {
                // PASSIVE never waits for a lock. With no idle round, a lost round would leave the last
                // commits un-fsynced until the next write: try again after `interval`.
                state.withLock { $0.counts.busy += 1 }
                logger.debug("WAL checkpoint busy, retrying", metadata: ["error": "\(error)"])
                noteCommit()
                return
            }
            state.withLock {
                $0.counts.passive += 1
                $0.counts.walFrames = passive.walFrameCount
                $0.counts.copiedFrames = passive.checkpointedFrameCount
            }
            guard passive.walFrameCount >= restartFrames else { return }
            let restarted: Bool = try writer.writeWithoutTransaction { db in
                // A reader holding an old snapshot makes RESTART wait: not the writes queued behind it.
                let busy = try Int.fetchOne(db, sql: "PRAGMA busy_timeout") ?? 0
                try db.execute(sql: "PRAGMA busy_timeout = 50")
                defer { try? db.execute(sql: "PRAGMA busy_timeout = \(busy)") }
                do {
                    try db.checkpoint(.restart)
                    return true
                } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY {
                    return false
                }
            }
            state.withLock {
                if restarted {
                    $0.counts.restart += 1
                    $0.counts.walFrames = 0
                    $0.counts.copiedFrames = 0
                }
            }
            if !restarted { logger.debug("WAL restart deferred: a reader holds it", metadata: ["frames": "\(passive.walFrameCount)"]) }
        } catch {
            state.withLock { $0.counts.failed += 1 }
            logger.warning("WAL checkpoint failed", metadata: ["error": "\(error)"])
        }
    }
}
