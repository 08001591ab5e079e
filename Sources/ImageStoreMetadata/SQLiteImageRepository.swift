import Foundation
import GRDB
import ImageStoreCore
import Logging

/// The `ImageRepository` on SQLite (GRDB).
///
/// A file path opens a `DatabasePool` in WAL mode: readers run concurrently with the single writer,
/// and GRDB serializes every write, so `update`'s read-check-write is atomic. `":memory:"` opens a
/// private in-memory `DatabaseQueue` (tests). After `init`, reads go through GRDB's async APIs and writes
/// are queued on GRDB's writer queue (`SQLiteAccess.write`), so no event-loop or pool thread ever waits on SQLite. Every error leaves as an `ImageStoreError`.
///
/// The database must live on a local filesystem: WAL needs shared memory between connections,
/// which network filesystems (the image store's NFS share) do not provide.
public final class SQLiteImageRepository: ImageRepository, MetadataInstrumented {
    /// Latency and accesses in progress of the database the images, metadefs and tasks share, for `/metrics`.
    public var instrumentation: MetadataInstrumentation { access.instrumentation }
    /// The database and its deadline, shared with the metadefs and tasks repositories.
    let access: SQLiteAccess
    var writer: any DatabaseWriter { access.writer }
    private let logger: Logger

    /// The deadline of every access when none is given (`[database] pool_timeout`'s default for SQLite).
    public static let defaultTimeout = Duration.seconds(30)

    /// Who checkpoints the WAL of a database file.
    public enum WALCheckpoints: Sendable {
        /// `SQLiteCheckpointer`'s thread, off the commit path: the server's way, always.
        case checkpointer
        /// SQLite's own automatic checkpoint inside the COMMIT that crosses 1000 pages, as before the
        /// checkpointer: a bench switch for a same-binary A/B (`IMAGESTORE_BENCH_AUTOCHECKPOINT`, read where
        /// the application is assembled; scripts/bench-create-ab), not an option.
        case sqliteAutocheckpoint
    }

    /// Opens (creating if needed) the database at `path` and, unless `migrate` is false (`imagestore db
    /// version` only looks), migrates it to the current schema.
    /// - Parameters:
    ///   - timeout: the deadline of every access afterwards (a request answers 503 past it).
    ///   - walCheckpoints: `.sqliteAutocheckpoint` only for benches (see `WALCheckpoints`).
    public init(
        path: String, logger: Logger, migrate: Bool = true, timeout: Duration = SQLiteImageRepository.defaultTimeout,
        walCheckpoints: WALCheckpoints = .checkpointer
    ) throws {
        self.logger = logger
        var config = Configuration()
        config.label = "imagestore.metadata"
        config.foreignKeysEnabled = true
        // Another process (an admin tool, a second server during a restart) may hold the lock briefly:
        // wait for it, but no longer than a request's deadline (then 503, never a write that commits
        // after its caller gave up).
        config.busyMode = .timeout(max(0.1, timeout.fractionalSeconds))
        let writer: any DatabaseWriter
        var checkpointer: SQLiteCheckpointer?
        do {
            if path == ":memory:" {
                writer = try DatabaseQueue(configuration: config)
            } else {
                writer = try DatabasePool(path: path, configuration: config)
            }
            // Durability is chosen per write (see `update`): status transitions — the upload workflow's
            // compare-and-set steps, above all `saving`→`active` — commit with synchronous=FULL (one fsync of
            // the WAL, ~20 ms here), so an image reported `active` stays active through a power loss.
            // Other writes (create, PATCH, tags) use NORMAL (~1 ms): with WAL they survive a process crash
            // and only a power loss can drop the newest of them, which loses no image data. This is what
            // lets POST /v2/images run at hundreds per second instead of ~50.
            try writer.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
            if migrate { try MetadataSchema.migrator.migrate(writer) }
            if path != ":memory:" && walCheckpoints == .checkpointer {
                // Checkpoints run on a thread of their own, not inside the commit that crosses 1000 WAL pages
                // (SQLiteCheckpointer says why). Only the writer commits, so only it checkpointed.
                try writer.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_autocheckpoint = 0") }
                checkpointer = try SQLiteCheckpointer(path: path, writer: writer, logger: logger)
            }
        } catch {
            logger.error("cannot open the metadata database", metadata: ["path": "\(path)", "error": "\(error)"])
            throw SQLiteAccess.mapped(error, "opening the metadata database at \(path)")
        }
        access = SQLiteAccess(writer: writer, timeout: timeout, checkpointer: checkpointer, logger: logger)
        logger.debug("metadata database ready", metadata: ["path": "\(path)"])
    }

    deinit { access.checkpointer?.requestStop() }

    /// Stops the WAL checkpointer (at shutdown; SQLite checkpoints the WAL when the last connection closes,
    /// or recovers it at the next open). Writes still work, their WAL is no longer checkpointed.
    public func stopCheckpointer() async {
        await access.checkpointer?.stop(within: access.timeout)
    }

    /// WAL checkpoints made so far (tests).
    var checkpoints: SQLiteCheckpointer.Counts? { access.checkpointer?.counts }

    /// Closes the database connections (they also close on deinit). Later calls fail with `.internal`.
    public func close() throws {
        access.checkpointer?.stop(within: access.timeout)
        do { try writer.close() } catch { throw SQLiteAccess.mapped(error, "closing the metadata database") }
    }

    // MARK: Schema

    /// Applies the migrations this database lacks (`imagestore db sync`); returns their names.
    @discardableResult
    public func migrate() async throws -> [String] {
        try await access.perform("migrate", deadline: false) {
            let before = try await self.writer.read { db in try MetadataSchema.migrator.appliedMigrations(db) }
            try MetadataSchema.migrator.migrate(self.writer)
            // The one write not made through `access.write`: the checkpointer has no idle round to find it.
            self.access.checkpointer?.noteCommit()
            return Self.knownMigrations.filter { !before.contains($0) }
        }
    }

    /// The migrations applied, oldest first (`imagestore db version` prints the last).
    public func appliedMigrations() async throws -> [String] {
        try await access.perform("appliedMigrations") {
            try await self.writer.read { db in try MetadataSchema.migrator.appliedMigrations(db) }
        }
    }

    /// Every migration this build knows, oldest first.
    public static var knownMigrations: [String] { MetadataSchema.migrator.migrations }

    // MARK: ImageRepository

    public func create(_ image: Image) async throws {
        let image = image.normalizedForStorage
        try await access.write("create") { db in
            do {
                try Self.insert(image, db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                // Tags and properties are unique by construction: a primary-key clash can only be the id.
                throw ImageStoreError.conflict("Image with identifier \(image.id) already exists!")
            }
        }
    }

    public func get(_ id: ImageID) async throws -> Image? {
        try await access.perform("get") {
            try await self.writer.read { db in try Self.fetchImages(db, where: "id = ?", [id.description]).first }
        }
    }

    public func list(_ query: ImageListQuery) async throws -> [Image] {
        try await access.perform("list") {
            try await self.writer.read { db in
                let sql = try ListSQL(query, markerValues: Self.markerValues(query, db), columns: Self.columns, dialect: .sqlite)
                return try Self.fetchImages(db, sql: sql.text, StatementArguments(sql.arguments.map(\.databaseValue)))
            }
        }
    }

    @discardableResult
    public func update(
        _ id: ImageID, expecting expected: Set<ImageStatus>?, _ change: @escaping @Sendable (inout Image) throws -> Void
    ) async throws -> Image {
        // IMMEDIATE takes the write lock before the read, so another process cannot change the row
        // between our check and our write (a deferred transaction would fail with BUSY_SNAPSHOT).
        // Status transitions are durable commits (see init).
        try await access.write("update", .immediate, durable: expected != nil) { db in
            guard let current = try Self.fetchImages(db, where: "id = ?", [id.description]).first else {
                throw ImageStoreError.notFound("No image found with ID \(id)")
            }
            try checkExpected(current, expected)
            var updated = current
            do { try change(&updated) } catch { throw SQLiteAccess.ChangeFailure(underlying: error) }
            guard updated.id == id else { throw ImageStoreError.internal("An update may not change the image id") }
            updated.updatedAt = Date()
            updated = updated.normalizedForStorage
            try Self.write(updated, replacing: current, db)
            return updated
        }
    }

    @discardableResult
    public func delete(_ id: ImageID) async throws -> Bool {
        try await access.write("delete") { db in
            // Tags, properties and members go with the row (ON DELETE CASCADE).
            try db.execute(sql: "DELETE FROM images WHERE id = ?", arguments: [id.description])
            return db.changesCount > 0
        }
    }

    public func storageUsed(owner: String?, excluding exclude: ImageID?) async throws -> Int64 {
        try await access.perform("storageUsed") {
            try await self.writer.read { db in
                // `IS` so a nil owner matches rows whose owner IS NULL.
                var sql = "SELECT COALESCE(SUM(size), 0) FROM images WHERE owner IS ? AND status NOT IN ('deleted', 'killed')"
                var arguments: StatementArguments = [owner]
                if let exclude {
                    sql += " AND id <> ?"
                    arguments += [exclude.description]
                }
                return try Int64.fetchOne(db, sql: sql, arguments: arguments) ?? 0
            }
        }
    }

    public func images(withStatus statuses: Set<ImageStatus>) async throws -> [Image] {
        guard !statuses.isEmpty else { return [] }
        let values = statuses.map(\.rawValue).sorted()
        return try await access.perform("images(withStatus:)") {
            try await self.writer.read { db in
                let placeholders = Array(repeating: "?", count: values.count).joined(separator: ", ")
                return try Self.fetchImages(
                    db, sql: "SELECT \(Self.columns) FROM images WHERE status IN (\(placeholders)) ORDER BY created_at, id",
                    StatementArguments(values))
            }
        }
    }

    public func ping() async throws {
        try await access.perform("ping") {
            try await self.writer.read { db in _ = try Int.fetchOne(db, sql: "SELECT 1") }
        }
    }

    // MARK: Store identity

    public func storeIdentity(of store: String) async throws -> String? {
        try await access.perform("storeIdentity") {
            try await self.writer.read { db in
                try String.fetchOne(db, sql: "SELECT marker_id FROM store_identity WHERE store = ?", arguments: [store])
            }
        }
    }

    public func claimStoreIdentity(_ markerID: String, of store: String) async throws -> String {
        try await access.write("claimStoreIdentity") { db in
            // One write transaction: two first checks racing record one id, and both read it back.
            try db.execute(
                sql: "INSERT INTO store_identity (store, marker_id, recorded_at) VALUES (?, ?, ?) ON CONFLICT(store) DO NOTHING",
                arguments: [store, markerID, Date().timeIntervalSince1970])
            return try String.fetchOne(db, sql: "SELECT marker_id FROM store_identity WHERE store = ?", arguments: [store])
                ?? markerID
        }
    }

    // MARK: Members

    public func addMember(_ member: ImageMember, limit: Int?) async throws {
        let member = member.normalizedForStorage
        try await access.write("addMember") { db in
            // One write transaction: the count and the insert cannot interleave with another add.
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM images WHERE id = ?)", arguments: [member.imageID.description]) == true
            else { throw ImageStoreError.notFound("No image found with ID \(member.imageID)") }
            let ids = try String.fetchAll(
                db, sql: "SELECT member_id FROM image_members WHERE image_id = ?", arguments: [member.imageID.description])
            guard !ids.contains(member.memberID) else { throw MemberErrors.duplicate(member) }
            if let limit, ids.count >= limit { throw MemberErrors.limit(attempted: ids.count + 1, maximum: limit) }
            try db.execute(
                sql: "INSERT INTO image_members (image_id, member_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [
                    member.imageID.description, member.memberID, member.status.rawValue,
                    member.createdAt.timeIntervalSince1970, member.updatedAt.timeIntervalSince1970,
                ])
        }
    }

    public func member(_ memberID: String, of image: ImageID) async throws -> ImageMember? {
        try await access.perform("member") {
            try await self.writer.read { db in
                try Self.fetchMembers(db, where: "image_id = ? AND member_id = ?", [image.description, memberID]).first
            }
        }
    }

    public func members(of image: ImageID) async throws -> [ImageMember] {
        try await access.perform("members") {
            try await self.writer.read { db in try Self.fetchMembers(db, where: "image_id = ?", [image.description]) }
        }
    }

    @discardableResult
    public func updateMember(_ memberID: String, of image: ImageID, status: MemberStatus) async throws -> ImageMember {
        try await access.write("updateMember") { db in
            let now = StoredDate.normalized(Date()).timeIntervalSince1970
            try db.execute(
                sql: "UPDATE image_members SET status = ?, updated_at = ? WHERE image_id = ? AND member_id = ?",
                arguments: [status.rawValue, now, image.description, memberID])
            guard db.changesCount > 0,
                let member = try Self.fetchMembers(db, where: "image_id = ? AND member_id = ?", [image.description, memberID]).first
            else { throw MemberErrors.notFound(memberID, image) }
            return member
        }
    }

    @discardableResult
    public func removeMember(_ memberID: String, of image: ImageID) async throws -> Bool {
        try await access.write("removeMember") { db in
            try db.execute(
                sql: "DELETE FROM image_members WHERE image_id = ? AND member_id = ?", arguments: [image.description, memberID])
            return db.changesCount > 0
        }
    }

    private static func fetchMembers(_ db: Database, where condition: String, _ arguments: StatementArguments) throws -> [ImageMember] {
        let rows = try Row.fetchAll(
            db,
            sql: "SELECT image_id, member_id, status, created_at, updated_at FROM image_members WHERE \(condition) "
                + "ORDER BY created_at, member_id",
            arguments: arguments)
        return try rows.map { row in
            let imageText: String = try row.decode(forColumn: "image_id")
            let statusText: String = try row.decode(forColumn: "status")
            guard let imageID = ImageID(imageText), let status = MemberStatus(rawValue: statusText) else {
                throw ImageStoreError.internal("corrupt image_members row: \(imageText) \(statusText)")
            }
            return ImageMember(
                imageID: imageID, memberID: try row.decode(forColumn: "member_id"), status: status,
                createdAt: Date(timeIntervalSince1970: try row.decode(forColumn: "created_at")),
                updatedAt: Date(timeIntervalSince1970: try row.decode(Double.self, forColumn: "updated_at")))
        }
    }

    // MARK: Rows

    /// The `images` columns, in the order `rowValues` lists them.
    static let columns = """
        id, name, status, visibility, protected, os_hidden, checksum, os_hash_algo, os_hash_value, size, \
        virtual_size, disk_format, container_format, min_disk, min_ram, owner, created_at, updated_at, upload_owner
        """

    /// Values for `columns`, in order.
    private static func rowValues(_ image: Image) -> [(any DatabaseValueConvertible)?] {
        [
            image.id.description, image.name, image.status.rawValue, image.visibility.rawValue, image.isProtected,
            image.osHidden, image.checksum, image.osHashAlgo, image.osHashValue, image.size, image.virtualSize,
            image.diskFormat, image.containerFormat, image.minDisk, image.minRam, image.owner,
            image.createdAt.timeIntervalSince1970, image.updatedAt.timeIntervalSince1970, image.uploadOwner,
        ]
    }

    private static let insertSQL: String = {
        let count = columns.split(separator: ",").count
        return "INSERT INTO images (\(columns)) VALUES (\(Array(repeating: "?", count: count).joined(separator: ", ")))"
    }()

    /// Every column but id (which never changes), then id for the WHERE.
    private static let updateSQL: String = {
        let assignments = columns.split(separator: ",").dropFirst()
            .map { "\($0.trimmingCharacters(in: .whitespacesAndNewlines)) = ?" }.joined(separator: ", ")
        return "UPDATE images SET \(assignments) WHERE id = ?"
    }()

    static func insert(_ image: Image, _ db: Database) throws {
        try db.cachedStatement(sql: insertSQL).execute(arguments: StatementArguments(rowValues(image)))
        let tag = try db.cachedStatement(sql: "INSERT INTO image_tags (image_id, tag) VALUES (?, ?)")
        for name in image.tags { try tag.execute(arguments: [image.id.description, name]) }
        try upsertProperties(image.properties, of: image.id, db)
    }

    /// Rewrites the row, and only the tags and properties that changed.
    private static func write(_ image: Image, replacing old: Image, _ db: Database) throws {
        let values = rowValues(image)
        try db.cachedStatement(sql: updateSQL).execute(arguments: StatementArguments(values.dropFirst() + [values[0]]))

        let id = image.id.description
        let oldTags = Set(old.tags), newTags = Set(image.tags)
        let removeTag = try db.cachedStatement(sql: "DELETE FROM image_tags WHERE image_id = ? AND tag = ?")
        for tag in oldTags.subtracting(newTags) { try removeTag.execute(arguments: [id, tag]) }
        let addTag = try db.cachedStatement(sql: "INSERT INTO image_tags (image_id, tag) VALUES (?, ?)")
        for tag in newTags.subtracting(oldTags) { try addTag.execute(arguments: [id, tag]) }

        let removeProperty = try db.cachedStatement(sql: "DELETE FROM image_properties WHERE image_id = ? AND name = ?")
        for name in old.properties.keys where image.properties[name] == nil {
            try removeProperty.execute(arguments: [id, name])
        }
        try upsertProperties(image.properties.filter { old.properties[$0.key] != $0.value }, of: image.id, db)
    }

    private static func upsertProperties(_ properties: [String: String], of id: ImageID, _ db: Database) throws {
        guard !properties.isEmpty else { return }
        let statement = try db.cachedStatement(
            sql: "INSERT INTO image_properties (image_id, name, value) VALUES (?, ?, ?) "
                + "ON CONFLICT (image_id, name) DO UPDATE SET value = excluded.value")
        for (name, value) in properties { try statement.execute(arguments: [id.description, name, value]) }
    }

    private static func fetchImages(_ db: Database, where condition: String, _ arguments: StatementArguments) throws -> [Image] {
        try fetchImages(db, sql: "SELECT \(columns) FROM images WHERE \(condition)", arguments)
    }

    /// Runs a SELECT of `columns` and assembles the images with their tags and properties
    /// (fetched per batch of ids, not per image).
    private static func fetchImages(_ db: Database, sql: String, _ arguments: StatementArguments) throws -> [Image] {
        let rows = try Row.fetchAll(db, sql: sql, arguments: arguments)
        guard !rows.isEmpty else { return [] }
        let ids = try rows.map { try $0.decode(String.self, forColumn: "id") }
        var tags: [String: [String]] = [:]
        var properties: [String: [String: String]] = [:]
        // Batches keep the IN list far below SQLite's bound-parameter limit.
        for start in stride(from: 0, to: ids.count, by: 500) {
            let batch = Array(ids[start..<min(start + 500, ids.count)])
            let placeholders = Array(repeating: "?", count: batch.count).joined(separator: ", ")
            let batchArguments = StatementArguments(batch)
            let tagRows = try Row.fetchCursor(
                db, sql: "SELECT image_id, tag FROM image_tags WHERE image_id IN (\(placeholders))", arguments: batchArguments)
            while let row = try tagRows.next() {
                tags[try row.decode(String.self, atIndex: 0), default: []].append(try row.decode(String.self, atIndex: 1))
            }
            let propertyRows = try Row.fetchCursor(
                db, sql: "SELECT image_id, name, value FROM image_properties WHERE image_id IN (\(placeholders))",
                arguments: batchArguments)
            while let row = try propertyRows.next() {
                properties[try row.decode(String.self, atIndex: 0), default: [:]][try row.decode(String.self, atIndex: 1)] =
                    try row.decode(String.self, atIndex: 2)
            }
        }
        return try zip(rows, ids).map { row, id in try decodeImage(row, tags: tags[id] ?? [], properties: properties[id] ?? [:]) }
    }

    private static func decodeImage(_ row: Row, tags: [String], properties: [String: String]) throws -> Image {
        let idText: String = try row.decode(forColumn: "id")
        let statusText: String = try row.decode(forColumn: "status")
        let visibilityText: String = try row.decode(forColumn: "visibility")
        guard let id = ImageID(idText), let status = ImageStatus(rawValue: statusText),
            let visibility = ImageVisibility(rawValue: visibilityText)
        else {
            throw ImageStoreError.internal(
                "corrupt image row: id \(idText), status \(statusText), visibility \(visibilityText)")
        }
        return Image(
            id: id, name: try row.decode(forColumn: "name"), status: status, visibility: visibility,
            isProtected: try row.decode(forColumn: "protected"), osHidden: try row.decode(forColumn: "os_hidden"),
            checksum: try row.decode(forColumn: "checksum"), osHashAlgo: try row.decode(forColumn: "os_hash_algo"),
            osHashValue: try row.decode(forColumn: "os_hash_value"), size: try row.decode(forColumn: "size"),
            virtualSize: try row.decode(forColumn: "virtual_size"), diskFormat: try row.decode(forColumn: "disk_format"),
            containerFormat: try row.decode(forColumn: "container_format"), minDisk: try row.decode(forColumn: "min_disk"),
            minRam: try row.decode(forColumn: "min_ram"), owner: try row.decode(forColumn: "owner"),
            createdAt: Date(timeIntervalSince1970: try row.decode(forColumn: "created_at")),
            updatedAt: Date(timeIntervalSince1970: try row.decode(Double.self, forColumn: "updated_at")),
            tags: tags, properties: properties, uploadOwner: try row.decode(forColumn: "upload_owner"))
    }

    /// The marker image's values for each effective sort key; `.badRequest` when there is no such image.
    private static func markerValues(_ query: ImageListQuery, _ db: Database) throws -> [SQLValue]? {
        guard let marker = query.marker else { return nil }
        let keys = query.effectiveSortKeys
        let columns = keys.map(\.key.column).joined(separator: ", ")
        guard let row = try Row.fetchOne(db, sql: "SELECT \(columns) FROM images WHERE id = ?", arguments: [marker.description])
        else { throw ImageStoreError.badRequest("marker not found") }
        return keys.indices.map { SQLValue(row[$0] as DatabaseValue) }
    }
}

extension SQLValue {
    /// The value as GRDB binds it (booleans as 0/1, as SQLite stores them).
    var databaseValue: DatabaseValue {
        switch self {
        case .null: .null
        case .integer(let v): v.databaseValue
        case .real(let v): v.databaseValue
        case .text(let v): v.databaseValue
        case .bool(let v): v.databaseValue
        }
    }

    /// A value read back from SQLite.
    init(_ value: DatabaseValue) {
        switch value.storage {
        case .null: self = .null
        case .int64(let v): self = .integer(v)
        case .double(let v): self = .real(v)
        case .string(let v): self = .text(v)
        case .blob(let data): self = .text(String(decoding: data, as: UTF8.self))  // never stored in a sort column
        }
    }
}

// MARK: Replicas

extension SQLiteImageRepository: ReplicaRegistry {
    /// The database lives on a local filesystem (WAL): one replica per catalogue.
    public var isShared: Bool { false }

    public func registerReplica(_ id: String, host: String) async throws {
        try await access.write("registerReplica") { db in
            let now = Date().timeIntervalSince1970
            try db.execute(
                sql: """
                    INSERT INTO replicas (id, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
                    """,
                arguments: [id, host, now, now])
        }
    }

    public func heartbeatReplica(_ id: String) async throws -> Bool {
        try await access.write("heartbeatReplica") { db in
            try db.execute(
                sql: "UPDATE replicas SET heartbeat_at = ? WHERE id = ?", arguments: [Date().timeIntervalSince1970, id])
            return db.changesCount > 0
        }
    }

    public func replicas() async throws -> [ReplicaRecord] {
        try await access.perform("replicas") {
            try await self.writer.read { db in try Self.replicaRows(db, where: "1", []) }
        }
    }

    public func expiredReplicas(lease: Duration) async throws -> [ReplicaRecord] {
        try await access.perform("expiredReplicas") {
            try await self.writer.read { db in
                try Self.replicaRows(db, where: "heartbeat_at < ?", [Date().timeIntervalSince1970 - lease.fractionalSeconds])
            }
        }
    }

    @discardableResult
    public func removeReplica(_ id: String, ifExpired lease: Duration) async throws -> Bool {
        try await access.write("removeReplica") { db in
            try db.execute(
                sql: "DELETE FROM replicas WHERE id = ? AND heartbeat_at < ?",
                arguments: [id, Date().timeIntervalSince1970 - lease.fractionalSeconds])
            return db.changesCount > 0
        }
    }

    private static func replicaRows(_ db: Database, where condition: String, _ arguments: StatementArguments) throws -> [ReplicaRecord] {
        try Row.fetchAll(
            db, sql: "SELECT id, host, started_at, heartbeat_at FROM replicas WHERE \(condition) ORDER BY started_at, id",
            arguments: arguments
        ).map { row in
            ReplicaRecord(
                id: row["id"], host: row["host"], startedAt: Date(timeIntervalSince1970: row["started_at"]),
                heartbeatAt: Date(timeIntervalSince1970: row["heartbeat_at"]))
        }
    }
}
