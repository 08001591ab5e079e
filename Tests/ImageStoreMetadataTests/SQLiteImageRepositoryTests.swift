import Foundation
import GRDB
import ImageStoreCore
import Testing

@testable import ImageStoreMetadata
import ImageStoreTestSupport

/// What only the SQLite repository has: a file that outlives the process, its settings, its indexes.
@Suite struct SQLiteImageRepositoryTests {
    @Test func reopen_afterClose_keepsDataAndMigratesHarmlessly() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.appending("images.sqlite")
        let image = Image(name: "durable", status: .active, size: 42, tags: ["t"], properties: ["k": "v"])

        let first = try SQLiteImageRepository(path: path, logger: testLogger)
        try await first.create(image)
        try await first.update(image.id, expecting: [.active]) { $0.minRam = 512 }
        try first.close()

        let second = try SQLiteImageRepository(path: path, logger: testLogger)
        defer { try? second.close() }
        let got = try #require(try await second.get(image.id))
        #expect(got.name == "durable" && got.minRam == 512 && got.tags == ["t"] && got.properties == ["k": "v"])
        let migrations = try await second.writer.read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
        }
        // Each migration applied once, in order (reopening applies none again).
        #expect(migrations == MetadataSchema.migrator.migrations)
        #expect(migrations.first == "v1-images")
    }

    @Test func open_onFile_usesWALAndFullSynchronousAndForeignKeys() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let repo = try SQLiteImageRepository(path: directory.appending("images.sqlite"), logger: testLogger)
        defer { try? repo.close() }
        let (journal, synchronous, foreignKeys) = try await repo.writer.write { db in
            (
                try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"),
                try Int.fetchOne(db, sql: "PRAGMA foreign_keys")
            )
        }
        #expect(journal == "wal")
        #expect(synchronous == 1)  // NORMAL between writes; status transitions switch to FULL for their commit
        #expect(foreignKeys == 1)
    }

    @Test func open_whenDirectoryMissing_throwsInternal() async throws {
        #expect {
            try SQLiteImageRepository(path: "/nonexistent-\(UUID().uuidString)/images.sqlite", logger: testLogger)
        } throws: { error in
            (error as? ImageStoreError)?.code == .internal
        }
    }

    @Test func delete_cascadesToTagAndPropertyRows() async throws {
        let repo = try SQLiteImageRepository(path: ":memory:", logger: testLogger)
        let image = Image(tags: ["a", "b"], properties: ["k": "v", "l": "w"])
        try await repo.create(image)
        let before = try await counts(repo, image.id)
        #expect(before.tags == 2 && before.properties == 2)
        #expect(try await repo.delete(image.id))
        let after = try await counts(repo, image.id)
        #expect(after.tags == 0 && after.properties == 0)
    }

    @Test func errors_fromSQLite_leaveAsImageStoreErrorInternal() async throws {
        let repo = try SQLiteImageRepository(path: ":memory:", logger: testLogger)
        try await repo.writer.write { db in try db.execute(sql: "DROP TABLE image_properties") }
        await expectError(.internal) { try await repo.create(Image(properties: ["k": "v"])) }
        // The failed create was one transaction: no row left behind without its properties.
        var all = ImageListQuery(limit: 10)
        all.osHidden = nil
        #expect(try await repo.list(all).isEmpty)
    }

    @Test func list_onDefaultSortWithMarker_walksAnIndexWithoutSorting() async throws {
        let repo = try SQLiteImageRepository(path: ":memory:", logger: testLogger)
        let image = Image()
        try await repo.create(image)
        for sort in [ImageSortKey.createdAt, .name, .size, .status] {
            for direction in [SortDirection.asc, .desc] {
                let query = ImageListQuery(marker: image.id, sort: [.init(key: sort, direction: direction)])
                let plan = try await queryPlan(repo, query)
                #expect(plan.contains("images_by_\(sort.column)"), "\(sort) \(direction): \(plan)")
                #expect(!plan.contains("TEMP B-TREE"), "\(sort) \(direction): \(plan)")
            }
        }
    }

    /// SQLite has no statistics (nothing runs ANALYZE), and without them it used to take the index of a
    /// few-valued column for a filter and sort every match: 60–1000 ms a page at 100k images. Every filtered
    /// or non-admin first page must walk the sort key's index and stop at LIMIT instead.
    @Test func list_filteredOrNonAdmin_walksTheSortIndexWithoutSorting() async throws {
        let repo = try SQLiteImageRepository(path: ":memory:", logger: testLogger)
        let member = ImageViewer(project: "p1", isAdmin: false)
        let anonymous = ImageViewer(project: nil, isAdmin: false)
        let admin = ImageViewer(project: "admin", isAdmin: true)
        var cases: [(String, ImageListQuery)] = []
        func page(_ name: String, _ viewer: ImageViewer, _ configure: (inout ImageListQuery) -> Void = { _ in }) {
            var query = ImageListQuery(limit: 25)
            query.viewer = viewer
            configure(&query)
            cases.append((name, query))
        }
        page("project member", member)
        page("project member, pending too", ImageViewer(project: "p1", isAdmin: false, memberStatus: nil))
        page("anonymous", anonymous)
        page("status=active", admin) { $0.statuses = ["active"] }
        page("member status=active", member) { $0.statuses = ["active"] }
        page("visibility=public", admin) { $0.visibilities = ["public"] }
        page("member visibility=shared", member) { $0.visibilities = ["shared"] }
        page("disk_format=qcow2", admin) { $0.diskFormats = ["qcow2"] }
        page("container_format=bare", admin) { $0.containerFormats = ["bare"] }
        page("disk_format empty or NULL", admin) { $0.diskFormats = ["", "raw"] }
        page("status, formats and visibility", member) {
            $0.statuses = ["active", "queued"]
            $0.diskFormats = ["raw"]
            $0.containerFormats = ["bare"]
            $0.visibilities = ["public", "private"]
        }
        for (name, query) in cases {
            let plan = try await queryPlan(repo, query)
            #expect(plan.contains("images_by_created_at"), "\(name): \(plan)")
            #expect(!plan.contains("TEMP B-TREE"), "\(name): \(plan)")
        }
        // A project's own images (owner filter, with or without a tag): the owner's slice of
        // images_by_owner_created_at, in order, stopping at LIMIT — not all the owner's images sorted.
        for tags in [[], ["gold"]] {
            var query = ImageListQuery(limit: 25)
            query.viewer = admin
            query.owner = "p2"
            query.tags = tags
            let plan = try await queryPlan(repo, query)
            #expect(plan.contains("images_by_owner_created_at"), "owner=p2 tags=\(tags): \(plan)")
            #expect(!plan.contains("TEMP B-TREE"), "owner=p2 tags=\(tags): \(plan)")
        }
        var byOwner = ImageListQuery(limit: 25, sort: [.init(key: .owner, direction: .asc)])
        byOwner.viewer = admin
        let ownerSortPlan = try await queryPlan(repo, byOwner)
        #expect(
            ownerSortPlan.contains("images_by_owner") && !ownerSortPlan.contains("images_by_owner_created_at")
                && !ownerSortPlan.contains("TEMP B-TREE"), "sort by owner: \(ownerSortPlan)")
        // Sorting by a few-valued column still walks its index.
        var byStatus = ImageListQuery(limit: 25, sort: [.init(key: .status, direction: .asc)])
        byStatus.viewer = member
        byStatus.statuses = ["active"]
        let plan = try await queryPlan(repo, byStatus)
        #expect(plan.contains("images_by_status") && !plan.contains("TEMP B-TREE"), "sort by status: \(plan)")
        // The answers are unchanged: a filter on these columns still filters.
        let images = [
            Image(name: "a", status: .active, visibility: .public),
            Image(name: "b", status: .queued, visibility: .private, owner: "p2"),
            Image(name: "c", status: .active, visibility: .shared, owner: "p2"),
        ]
        for image in images { try await repo.create(image) }
        var active = ImageListQuery(limit: 25)
        active.viewer = member
        active.statuses = ["active"]
        #expect(try await repo.list(active).map(\.name) == ["a"])
    }

    /// Not a pass/fail check on time (the machine is shared): prints how long `list` takes on 100k rows.
    @Test func list_on100kRows_isFast() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let repo = try SQLiteImageRepository(path: directory.appending("images.sqlite"), logger: testLogger)
        defer { try? repo.close() }
        let clock = ContinuousClock()

        let count = 100_000
        let images = Fixtures.images(count: count, seed: 5).enumerated().map { i, image in
            var image = image
            image.createdAt = Fixtures.base.addingTimeInterval(Double(i) / 10)  // a realistic spread, few ties
            image.updatedAt = image.createdAt
            return image
        }
        let insert = try await clock.measure {
            try await repo.writer.write { db in for image in images { try SQLiteImageRepository.insert(image, db) } }
        }

        var defaultQuery = ImageListQuery(limit: 25)
        let firstPage = try await clock.measure { _ = try await repo.list(defaultQuery) }
        defaultQuery.marker = images[count / 2].id
        var deepPage: [Image] = []
        let deep = try await clock.measure { deepPage = try await repo.list(defaultQuery) }
        var byName = ImageListQuery(limit: 25, marker: images[count / 3].id, sort: [.init(key: .name, direction: .asc)])
        byName.osHidden = nil
        let name = try await clock.measure { _ = try await repo.list(byName) }
        byName.sortKeys = [.init(key: .name, direction: .desc)]
        let nameDesc = try await clock.measure { _ = try await repo.list(byName) }
        var filtered = ImageListQuery(limit: 25)
        filtered.owner = "alice"
        filtered.tags = ["a", "b"]
        filtered.properties = ["hw_disk_bus": "scsi"]
        let filter = try await clock.measure { _ = try await repo.list(filtered) }

        print(
            "[metadata perf] \(count) rows: insert \(insert), list first page \(firstPage), page after marker \(deep), "
                + "name asc after marker \(name), name desc after marker \(nameDesc), owner+2 tags+property \(filter)")
        #expect(deepPage.count == 25)
        #expect(deepPage.allSatisfy { $0.createdAt < images[count / 2].createdAt && !$0.osHidden })
    }

    /// Prints commit latency with synchronous FULL vs NORMAL (the setting's cost, for the record).
    @Test func measure_synchronousFullVersusNormal() async throws {
        for mode in ["FULL", "NORMAL"] {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let repo = try SQLiteImageRepository(path: directory.appending("images.sqlite"), logger: testLogger)
            defer { try? repo.close() }
            try await repo.writer.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(mode)") }
            let image = Image()
            try await repo.create(image)
            let rounds = 200
            let elapsed = try await ContinuousClock().measure {
                for i in 0..<rounds { try await repo.update(image.id, expecting: nil) { $0.minRam = i } }
            }
            print("[metadata perf] synchronous=\(mode): \(rounds) committed updates in \(elapsed) (\(elapsed / rounds) each)")
            #expect(try await repo.get(image.id)?.minRam == rounds - 1)
        }
    }

    private func counts(_ repo: SQLiteImageRepository, _ id: ImageID) async throws -> (tags: Int, properties: Int) {
        try await repo.writer.read { db in
            (
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM image_tags WHERE image_id = ?", arguments: [id.description]) ?? -1,
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM image_properties WHERE image_id = ?", arguments: [id.description]) ?? -1
            )
        }
    }

    /// A write whose caller heard 503 never commits: past the deadline a transaction that is running
    /// rolls back instead of committing, and one still queued behind it never starts.
    @Test func write_pastItsDeadline_rollsBackOrNeverStarts() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let repo = try SQLiteImageRepository(path: directory.appending("images.sqlite"), logger: testLogger, timeout: .milliseconds(200))
        defer { try? repo.close() }
        let slow = Image(name: "slow")
        let queued = Image(name: "queued")
        // The first write holds the writer queue well past its deadline (a disk that stalls mid-transaction).
        let first = Task {
            try await repo.access.write("slow create") { db in
                try SQLiteImageRepository.insert(slow, db)
                Thread.sleep(forTimeInterval: 1.5)
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        let second = Task { try await repo.create(queued) }
        for task in [first, second] {
            let outcome = await task.result
            #expect(throws: ImageStoreError.self) { try outcome.get() }
            if case .failure(let error as ImageStoreError) = outcome { #expect(error.code == .dependencyUnavailable) }
        }
        // Once the writer is free again, neither image exists. The check reads through a second connection
        // with a wide deadline: a 503 from a loaded CI machine is not what this test is about.
        let end = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < end {
            if (try? await repo.create(Image(name: "after"))) != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let verifier = try SQLiteImageRepository(path: directory.appending("images.sqlite"), logger: testLogger, timeout: .seconds(30))
        defer { try? verifier.close() }
        #expect(try await verifier.get(slow.id) == nil, "rolled back, not committed after its caller heard 503")
        #expect(try await verifier.get(queued.id) == nil, "never started once its caller gave up")
    }

    private func queryPlan(_ repo: SQLiteImageRepository, _ query: ImageListQuery) async throws -> String {
        try await repo.writer.read { db in
            let marker = try query.marker.map { marker in
                try Row.fetchOne(
                    db, sql: "SELECT \(query.effectiveSortKeys.map(\.key.column).joined(separator: ", ")) FROM images WHERE id = ?",
                    arguments: [marker.description])!
            }
            let sql = ListSQL(
                query, markerValues: marker?.databaseValues.map(SQLValue.init), columns: SQLiteImageRepository.columns, dialect: .sqlite)
            return try Row.fetchAll(
                db, sql: "EXPLAIN QUERY PLAN " + sql.text, arguments: StatementArguments(sql.arguments.map(\.databaseValue))
            )
            .map { $0["detail"] as String }.joined(separator: "; ")
        }
    }
}
