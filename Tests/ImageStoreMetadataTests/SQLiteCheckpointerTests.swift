import Foundation
import GRDB
import ImageStoreCore
import Testing

@testable import ImageStoreMetadata
import ImageStoreTestSupport

/// WAL checkpoints off the commit path: the writer never checkpoints, a thread of its own does, the WAL stays
/// bounded under a steady stream of writes, and the thread stops when asked.
@Suite struct SQLiteCheckpointerTests {
    private static func walSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path + "-wal"))?[.size] as? Int) ?? 0
    }

    /// A WAL database whose writer leaves checkpoints to the checkpointer, as the repository's does.
    private static func writerWithoutAutocheckpoint(_ path: String, schema: String) async throws -> DatabasePool {
        let pool = try DatabasePool(path: path)
        try await pool.write { db in
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
            try db.execute(sql: schema)
        }
        return pool
    }

    private static func eventually(_ condition: () throws -> Bool) async throws -> Bool {
        let end = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < end {
            if try condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try condition()
    }

    @Test func repository_onFile_writerDoesNotCheckpoint_theCheckpointerDoes() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let repo = try SQLiteImageRepository(path: directory.appending("images.sqlite"), logger: testLogger)
        defer { try? repo.close() }
        let autocheckpoint = try await repo.writer.write { db in try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") }
        #expect(autocheckpoint == 0)
        for index in 0..<50 { try await repo.create(Image(name: "image \(index)")) }
        // Every commit was copied into the database by the checkpointer's own PASSIVE checkpoints.
        #expect(
            try await Self.eventually {
                guard let counts = repo.checkpoints else { return false }
                return counts.walFrames > 0 && counts.copiedFrames == counts.walFrames
            })
    }

    /// The checkpointer has no idle round: metadef, task, member and replica writes share the images' database
    /// and writer, and commit through `SQLiteAccess.write` like images do, so each is checkpointed too.
    @Test func metadefTaskMemberAndReplicaWrites_areCheckpointed() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let repo = try SQLiteImageRepository(path: directory.appending("images.sqlite"), logger: testLogger)
        defer { try? repo.close() }
        let image = Image(name: "shared")
        try await repo.create(image)
        let writes: [(String, @Sendable () async throws -> Void)] = [
            (
                "metadef",
                {
                    try await SQLiteMetadefRepository(sharing: repo, logger: testLogger).createNamespace(
                        MetadefNamespace(
                            namespace: "OS::Ckpt", displayName: nil, description: nil, visibility: "public",
                            isProtected: false, owner: "p1", createdAt: Date()),
                        items: [MetadefItem(kind: .tag, name: "fast", createdAt: Date())], associations: [])
                }
            ),
            ("task", { try await SQLiteTaskRepository(sharing: repo, logger: testLogger).createTask(ImageTask(type: "import")) }),
            (
                "member",
                {
                    try await repo.addMember(
                        ImageMember(imageID: image.id, memberID: "p2", status: .pending, createdAt: Date(), updatedAt: Date()), limit: nil)
                }
            ),
            ("replica", { try await repo.registerReplica("r1", host: "h1") }),
        ]
        for (name, write) in writes {
            // Settled: the last write copied and no round pending (a round runs 100 ms after a noted commit),
            // so only a commit this write notes can start the next one.
            #expect(try await Self.eventually { repo.checkpoints.map { $0.walFrames > 0 && $0.copiedFrames == $0.walFrames } ?? false })
            try await Task.sleep(for: .milliseconds(300))
            let before = try #require(repo.checkpoints)
            try await write()
            #expect(
                try await Self.eventually {
                    guard let counts = repo.checkpoints else { return false }
                    return counts.passive > before.passive && counts.copiedFrames == counts.walFrames
                }, "\(name) write not checkpointed: \(String(describing: repo.checkpoints)) after \(before)")
        }
    }

    @Test func repository_inMemory_hasNoCheckpointer() async throws {
        let repo = try SQLiteImageRepository(path: ":memory:", logger: testLogger)
        defer { try? repo.close() }
        #expect(repo.checkpoints == nil)
    }

    /// A steady stream of writes never lets PASSIVE checkpoints rewind the WAL: past `restartFrames` the
    /// writer's queue restarts it, so the file stays near the bound instead of growing with every write.
    @Test func steadyWrites_walStaysBounded() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.appending("wal.sqlite")
        let pool = try await Self.writerWithoutAutocheckpoint(
            path, schema: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v)")
        let checkpointer = try SQLiteCheckpointer(
            path: path, writer: pool, interval: .milliseconds(5), restartFrames: 200, logger: testLogger)
        defer { checkpointer.stop(within: .seconds(5)) }
        let pageSize = try await pool.read { db in try Int.fetchOne(db, sql: "PRAGMA page_size") } ?? 4096
        var largest = 0
        for index in 0..<4000 {
            try await pool.write { db in
                try db.execute(sql: "INSERT INTO t (v) VALUES (?)", arguments: [String(repeating: "\(index)", count: 40)])
            }
            checkpointer.noteCommit()
            largest = max(largest, Self.walSize(path))
        }
        // Without the checkpointer (autocheckpoint off) the WAL would hold every frame written: far more.
        let written = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM t") } ?? 0
        #expect(written == 4000)
        #expect(try await Self.eventually { checkpointer.counts.restart > 0 })
        #expect(largest < 2000 * pageSize, "WAL peaked at \(largest / pageSize) pages")
        #expect(checkpointer.counts.failed == 0)
    }

    /// A PASSIVE round that finds another connection's checkpoint holding the lock is tried again without
    /// waiting for another write: otherwise the last commits would stay un-fsynced in the WAL.
    @Test func busyRound_isRetriedWithoutAnotherWrite() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.appending("busy.sqlite")
        let pool = try await Self.writerWithoutAutocheckpoint(path, schema: "CREATE TABLE t (v TEXT)")
        let checkpointer = try SQLiteCheckpointer(
            path: path, writer: pool, interval: .milliseconds(20), restartFrames: 1_000_000, logger: testLogger)
        defer { checkpointer.stop(within: .seconds(5)) }
        // A reader on an old snapshot makes a TRUNCATE checkpoint on another connection wait in its busy
        // handler, holding the checkpoint lock meanwhile: the checkpointer's PASSIVE round gets SQLITE_BUSY.
        var readerConfig = Configuration()
        readerConfig.allowsUnsafeTransactions = true  // the snapshot stays open across accesses
        let reader = try DatabaseQueue(path: path, configuration: readerConfig)
        try await reader.writeWithoutTransaction { db in
            try db.execute(sql: "BEGIN")
            _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM t")
        }
        try await pool.write { db in try db.execute(sql: "INSERT INTO t VALUES ('after the snapshot')") }
        let blocker = try DatabaseQueue(path: path)
        let blocking = Thread {
            try? blocker.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA busy_timeout = 3000")
                _ = try? db.checkpoint(.truncate)
            }
        }
        blocking.start()
        try await Task.sleep(for: .milliseconds(300))
        checkpointer.noteCommit()
        #expect(try await Self.eventually { checkpointer.counts.busy > 0 }, "the round met the held lock")
        let passiveBefore = checkpointer.counts.passive
        try await reader.writeWithoutTransaction { db in try db.execute(sql: "COMMIT") }
        // No write and no noteCommit from here on: only the retry can checkpoint.
        #expect(try await Self.eventually { checkpointer.counts.passive > passiveBefore }, "retried after the lock was freed")
        #expect(checkpointer.counts.failed == 0)
        try blocker.close()
        try reader.close()
    }

    @Test func stop_endsTheThread_laterCommitsAreNotCheckpointed() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.appending("images.sqlite")
        let repo = try SQLiteImageRepository(path: path, logger: testLogger)
        defer { try? repo.close() }
        try await repo.create(Image(name: "before"))
        #expect(try await Self.eventually { (repo.checkpoints?.passive ?? 0) > 0 })
        await repo.stopCheckpointer()
        let after = repo.checkpoints
        for index in 0..<20 { try await repo.create(Image(name: "after \(index)")) }
        try await Task.sleep(for: .milliseconds(500))  // past the 100 ms after which a running thread checkpoints
        #expect(repo.checkpoints == after, "no checkpoint after stop")
        #expect(try await repo.list(ImageListQuery(limit: 100)).count == 21, "writes still work")
        await repo.stopCheckpointer()  // a second stop returns at once
    }

    /// What a process crash leaves (the database and its WAL as the page cache holds them, no close) opens
    /// with every acknowledged create, whether the checkpointer had copied it into the database or not.
    @Test func crash_leftFilesOpenWithEveryAcknowledgedWrite() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.appending("images.sqlite")
        let repo = try SQLiteImageRepository(path: path, logger: testLogger)
        defer { try? repo.close() }
        var ids: [ImageID] = []
        for index in 0..<300 {
            let image = Image(name: "image \(index)")
            try await repo.create(image)
            ids.append(image.id)
        }
        // Copy while the server still runs: the WAL (and the shared-memory index, which recovery ignores).
        let crashed = directory.appending("crashed")
        try FileManager.default.createDirectory(atPath: crashed, withIntermediateDirectories: true)
        for suffix in ["", "-wal"] {
            try FileManager.default.copyItem(atPath: path + suffix, toPath: crashed + "/images.sqlite" + suffix)
        }
        let recovered = try SQLiteImageRepository(path: crashed + "/images.sqlite", logger: testLogger)
        defer { try? recovered.close() }
        for id in ids { #expect(try await recovered.get(id) != nil) }
    }
}
