import Foundation
import ImageStoreCore
import Logging
import PostgresNIO
import Synchronization

/// The `ImageRepository` on PostgreSQL (postgres-nio), for several ImageStore processes sharing one catalogue.
///
/// Connections come from a bounded pool (`maxConnections`); every call — waiting for a connection
/// included — runs under one deadline (`timeout`) and answers `.dependencyUnavailable` (503) when it
/// passes, so a database that is down or restarting never hangs a request. The pool reconnects by itself.
/// Each call that writes more than one row is one transaction, and `update`'s compare-and-set reads the
/// row `FOR UPDATE`, so concurrent status changes — from any process — serialize on the row.
///
/// The schema is migrated (`PostgresSchema`) on first use, or explicitly by `migrate()` (`imagestore db sync`).
public final class PostgresImageRepository: ImageRepository, MetadataInstrumented {
    /// Latency and calls in progress (waiting for or holding one of the pool's connections), for `/metrics`.
    public let instrumentation = MetadataInstrumentation(engine: "postgresql")
    /// Where and how to connect.
    public struct Settings: Sendable {
        public enum TLS: Sendable, Equatable {
            case disable
            /// TLS if the server offers it, without verifying its certificate (libpq's `prefer`).
            case prefer
            /// TLS or nothing, without verifying the certificate (libpq's `require`).
            case require
            /// TLS with the certificate verified (against `rootCertificatePath` when set); `hostname`
            /// also checks the server's name (libpq's `verify-full`).
            case verify(hostname: Bool)
        }

        public var host: String?
        public var port: Int
        /// A directory holding the server's Unix socket (used instead of `host`).
        public var unixSocketDirectory: String?
        public var username: String
        public var password: String?
        public var database: String
        public var tls: TLS
        public var rootCertificatePath: String?
        /// The most connections this process opens.
        public var maxConnections: Int
        /// The longest a call waits for the database, connection included.
        public var timeout: Duration

        public init(
            host: String? = "localhost", port: Int = 5432, unixSocketDirectory: String? = nil, username: String,
            password: String? = nil, database: String, tls: TLS = .prefer, rootCertificatePath: String? = nil,
            maxConnections: Int = 5, timeout: Duration = .seconds(3)
        ) {
            self.host = host
            self.port = port
            self.unixSocketDirectory = unixSocketDirectory
            self.username = username
            self.password = password
            self.database = database
            self.tls = tls
            self.rootCertificatePath = rootCertificatePath
            self.maxConnections = maxConnections
            self.timeout = timeout
        }
    }

    public let settings: Settings
    private let client: PostgresClient
    private let runTask: Task<Void, Never>
    private let logger: Logger
    /// Set once the schema is known current, so later calls skip the check.
    private let migrated = Atomic<Bool>(false)

    /// Creates the pool (no connection is opened until the first call; a database that is down is not an
    /// error here, only for the calls made while it is down).
    public init(settings: Settings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        var configuration = try settings.configuration(PostgresClient.Configuration.self)
        configuration.options.maximumConnections = settings.maxConnections
        configuration.options.connectTimeout = settings.timeout
        // The server drops a statement that outlives our deadline, so nothing keeps running (or holds
        // row locks) after its caller was answered 503.
        let milliseconds = max(1, settings.timeout.wholeMilliseconds)
        configuration.options.additionalStartupParameters = [
            ("statement_timeout", "\(milliseconds)"), ("idle_in_transaction_session_timeout", "\(milliseconds)"),
            ("application_name", "imagestore"),
        ]
        var background = logger
        background.logLevel = max(logger.logLevel, .warning)
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        self.client = client
        runTask = Task { await client.run() }
    }

    deinit { runTask.cancel() }

    /// Stops the pool (its connections close). Later calls fail with `.dependencyUnavailable`.
    public func close() {
        runTask.cancel()
    }

    /// Stops the pool and waits until its connections are closed.
    public func shutdown() async {
        runTask.cancel()
        await runTask.value
    }

    // MARK: Schema

    /// Applies the migrations this database lacks (`imagestore db sync`); returns their names.
    @discardableResult
    public func migrate() async throws -> [String] {
        try await perform("migrate", migrating: false) { connection in
            try await PostgresSchema.migrate(connection, logger: self.logger)
        }
    }

    /// The migrations applied, oldest first (`imagestore db version` prints the last).
    public func appliedMigrations() async throws -> [String] {
        try await perform("appliedMigrations", migrating: false) { connection in
            try await PostgresSchema.applied(connection, logger: self.logger)
        }
    }

    /// Every migration this build knows, oldest first.
    public static var knownMigrations: [String] { PostgresSchema.migrations.map(\.name) }

    // MARK: ImageRepository

    public func create(_ image: Image) async throws {
        let image = image.normalizedForStorage
        try await perform("create") { connection in
            do {
                try await Self.insert(image, connection, self.logger)
            } catch let error as PSQLError where error.sqlState == "23505" {
                throw ImageStoreError.conflict("Image with identifier \(image.id) already exists!")
            }
        }
    }

    public func get(_ id: ImageID) async throws -> Image? {
        try await perform("get") { connection in
            try await self.fetchImages(connection, "SELECT \(Self.selectColumns) FROM images WHERE id = $1", [.text(id.description)]).first
        }
    }

    public func list(_ query: ImageListQuery) async throws -> [Image] {
        try await perform("list") { connection in
            let marker = try await self.markerValues(query, connection)
            let sql = ListSQL(query, markerValues: marker, columns: Self.selectColumns, dialect: .postgresql)
            return try await self.fetchImages(connection, sql.text, sql.arguments)
        }
    }

    @discardableResult
    public func update(
        _ id: ImageID, expecting expected: Set<ImageStatus>?, _ change: @escaping @Sendable (inout Image) throws -> Void
    ) async throws -> Image {
        try await perform("update") { connection in
            try await self.transaction(connection) { connection in
                // FOR UPDATE: a concurrent update of this image (from any process) waits here until we commit,
                // then reads our result — the compare-and-set cannot interleave.
                guard
                    let current = try await self.fetchImages(
                        connection, "SELECT \(Self.selectColumns) FROM images WHERE id = $1 FOR UPDATE", [.text(id.description)]
                    ).first
                else { throw ImageStoreError.notFound("No image found with ID \(id)") }
                try checkExpected(current, expected)
                var updated = current
                do { try change(&updated) } catch { throw ChangeFailure(underlying: error) }
                guard updated.id == id else { throw ImageStoreError.internal("An update may not change the image id") }
                updated.updatedAt = Date()
                updated = updated.normalizedForStorage
                try await Self.write(updated, replacing: current, connection, self.logger)
                return updated
            }
        }
    }

    @discardableResult
    public func delete(_ id: ImageID) async throws -> Bool {
        try await perform("delete") { connection in
            // Tags, properties and members go with the row (ON DELETE CASCADE).
            let rows = try await self.rows(connection, "DELETE FROM images WHERE id = $1 RETURNING id", [.text(id.description)])
            return !rows.isEmpty
        }
    }

    public func storageUsed(owner: String?, excluding exclude: ImageID?) async throws -> Int64 {
        try await perform("storageUsed") { connection in
            var sql =
                "SELECT COALESCE(SUM(size), 0)::BIGINT FROM images WHERE owner IS NOT DISTINCT FROM $1::TEXT "
                + "AND status NOT IN ('deleted', 'killed')"
            var arguments: [SQLValue] = [owner.map(SQLValue.text) ?? .null]
            if let exclude {
                sql += " AND id <> $2"
                arguments.append(.text(exclude.description))
            }
            let rows = try await self.rows(connection, sql, arguments)
            return try rows.first?.decode(Int64.self) ?? 0
        }
    }

    public func images(withStatus statuses: Set<ImageStatus>) async throws -> [Image] {
        guard !statuses.isEmpty else { return [] }
        let values = statuses.map(\.rawValue).sorted()
        return try await perform("images(withStatus:)") { connection in
            try await self.fetchImages(
                connection, "SELECT \(Self.selectColumns) FROM images WHERE status = ANY($1) ORDER BY created_at, id",
                [], arrays: [values])
        }
    }

    public func ping() async throws {
        try await perform("ping") { connection in _ = try await self.rows(connection, "SELECT 1", []) }
    }

    // MARK: Store identity

    public func storeIdentity(of store: String) async throws -> String? {
        try await perform("storeIdentity") { connection in
            try await self.rows(connection, "SELECT marker_id FROM store_identity WHERE store = $1", [.text(store)])
                .first?.decode(String.self)
        }
    }

    public func claimStoreIdentity(_ markerID: String, of store: String) async throws -> String {
        try await perform("claimStoreIdentity") { connection in
            // ON CONFLICT DO NOTHING: of two first claims one inserts, and both read that one back.
            _ = try await self.rows(
                connection,
                "INSERT INTO store_identity (store, marker_id, recorded_at) VALUES ($1, $2, $3) ON CONFLICT (store) DO NOTHING",
                [.text(store), .text(markerID), .real(Date().timeIntervalSince1970)])
            return try await self.rows(connection, "SELECT marker_id FROM store_identity WHERE store = $1", [.text(store)])
                .first?.decode(String.self) ?? markerID
        }
    }

    // MARK: Members

    public func addMember(_ member: ImageMember, limit: Int?) async throws {
        let member = member.normalizedForStorage
        try await perform("addMember") { connection in
            try await self.transaction(connection) { connection in
                // Locking the image row serializes adds to one image: the count and the insert cannot interleave.
                let image = try await self.rows(
                    connection, "SELECT id FROM images WHERE id = $1 FOR UPDATE", [.text(member.imageID.description)])
                guard !image.isEmpty else { throw ImageStoreError.notFound("No image found with ID \(member.imageID)") }
                let ids = try await self.rows(
                    connection, "SELECT member_id FROM image_members WHERE image_id = $1", [.text(member.imageID.description)]
                ).map { try $0.decode(String.self) }
                guard !ids.contains(member.memberID) else { throw MemberErrors.duplicate(member) }
                if let limit, ids.count >= limit { throw MemberErrors.limit(attempted: ids.count + 1, maximum: limit) }
                _ = try await self.rows(
                    connection,
                    "INSERT INTO image_members (image_id, member_id, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
                    [
                        .text(member.imageID.description), .text(member.memberID), .text(member.status.rawValue),
                        .real(member.createdAt.timeIntervalSince1970), .real(member.updatedAt.timeIntervalSince1970),
                    ])
            }
        }
    }

    public func member(_ memberID: String, of image: ImageID) async throws -> ImageMember? {
        try await perform("member") { connection in
            try await self.fetchMembers(connection, "image_id = $1 AND member_id = $2", [.text(image.description), .text(memberID)]).first
        }
    }

    public func members(of image: ImageID) async throws -> [ImageMember] {
        try await perform("members") { connection in
            try await self.fetchMembers(connection, "image_id = $1", [.text(image.description)])
        }
    }

    @discardableResult
    public func updateMember(_ memberID: String, of image: ImageID, status: MemberStatus) async throws -> ImageMember {
        try await perform("updateMember") { connection in
            let now = StoredDate.normalized(Date()).timeIntervalSince1970
            let updated = try await self.rows(
                connection,
                "UPDATE image_members SET status = $1, updated_at = $2 WHERE image_id = $3 AND member_id = $4 "
                    + "RETURNING image_id, member_id, status, created_at, updated_at",
                [.text(status.rawValue), .real(now), .text(image.description), .text(memberID)])
            guard let row = updated.first else { throw MemberErrors.notFound(memberID, image) }
            return try Self.decodeMember(row)
        }
    }

    @discardableResult
    public func removeMember(_ memberID: String, of image: ImageID) async throws -> Bool {
        try await perform("removeMember") { connection in
            let rows = try await self.rows(
                connection, "DELETE FROM image_members WHERE image_id = $1 AND member_id = $2 RETURNING member_id",
                [.text(image.description), .text(memberID)])
            return !rows.isEmpty
        }
    }

    // MARK: Bulk (imagestore db copy)

    /// Stores `images` (with tags and properties), `members`, metadefs namespaces and tasks as they are —
    /// dates and statuses unchanged — in one transaction: all of them or, on any error, none.
    public func importCatalogue(images: [Image], members: [ImageMember], timeout: Duration) async throws {
        try await importCatalogue(images: images, members: members, namespaces: [], tasks: [], timeout: timeout)
    }

    func importCatalogue(
        images: [Image], members: [ImageMember], namespaces: [CopiedNamespace], tasks: [ImageTask], timeout: Duration
    ) async throws {
        let metadefs = PostgresMetadefRepository(sharing: self)
        let taskRows = PostgresTaskRepository(sharing: self)
        try await perform("import", timeout: timeout) { connection in
            try await self.transaction(connection) { connection in
                // In batches, not a round trip per row: 100k images took minutes row by row. Image rows as
                // multi-row VALUES (within PostgreSQL's 65535 parameters), the rest as parallel arrays.
                let images = images.map(\.normalizedForStorage)
                let perRow = Self.rowValues(images.first ?? Image(id: ImageID())).count
                let batch = max(1, 60_000 / perRow)
                for start in stride(from: 0, to: images.count, by: batch) {
                    let slice = images[start..<min(start + batch, images.count)]
                    let rows = slice.indices.map { row in
                        "(" + (1...perRow).map { "$\((row - start) * perRow + $0)" }.joined(separator: ", ") + ")"
                    }
                    _ = try await connection.query(
                        PostgresQuery(
                            unsafeSQL: "INSERT INTO images (\(Self.columns)) VALUES \(rows.joined(separator: ", "))",
                            binds: Self.bindings(slice.flatMap(Self.rowValues))),
                        logger: self.logger
                    ).collect()
                }
                let tags = images.flatMap { image in image.tags.map { (image.id.description, $0) } }
                try await Self.insertArrays(
                    "INSERT INTO image_tags (image_id, tag) SELECT * FROM unnest($1::TEXT[], $2::TEXT[])",
                    [tags.map(\.0), tags.map(\.1)], connection, self.logger)
                let properties = images.flatMap { image in image.properties.sorted { $0.key < $1.key }.map { (image.id.description, $0.key, $0.value) } }
                try await Self.insertArrays(
                    "INSERT INTO image_properties (image_id, name, value) SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[])",
                    [properties.map(\.0), properties.map(\.1), properties.map(\.2)], connection, self.logger)
                let members = members.map(\.normalizedForStorage)
                for start in stride(from: 0, to: members.count, by: 10_000) {
                    let slice = members[start..<min(start + 10_000, members.count)]
                    var binds = PostgresBindings()
                    binds.append(slice.map(\.imageID.description))
                    binds.append(slice.map(\.memberID))
                    binds.append(slice.map(\.status.rawValue))
                    binds.append(slice.map(\.createdAt.timeIntervalSince1970))
                    binds.append(slice.map(\.updatedAt.timeIntervalSince1970))
                    _ = try await connection.query(
                        PostgresQuery(
                            unsafeSQL: "INSERT INTO image_members (image_id, member_id, status, created_at, updated_at) "
                                + "SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::DOUBLE PRECISION[], $5::DOUBLE PRECISION[])",
                            binds: binds),
                        logger: self.logger
                    ).collect()
                }
                // Row by row: a catalogue holds tens of namespaces and, as Glance expires them, few tasks.
                for copied in namespaces {
                    try await metadefs.insert(copied.namespace, items: copied.items, associations: copied.associations, connection)
                }
                for task in tasks { try await taskRows.insert(task, connection) }
            }
        }
    }

    /// Inserts rows given as parallel text arrays, 10 000 rows per statement.
    private static func insertArrays(
        _ sql: String, _ columns: [[String]], _ connection: PostgresConnection, _ logger: Logger
    ) async throws {
        let count = columns.first?.count ?? 0
        for start in stride(from: 0, to: count, by: 10_000) {
            var binds = PostgresBindings()
            for column in columns { binds.append(Array(column[start..<min(start + 10_000, count)])) }
            _ = try await connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).collect()
        }
    }

    /// Rows per table (images with tags, properties and members; metadefs; tasks), to check a copy.
    public func tableCounts() async throws -> [String: Int64] {
        try await perform("tableCounts") { connection in
            var counts: [String: Int64] = [:]
            for table in [
                "images", "image_tags", "image_properties", "image_members", "metadef_namespaces", "metadef_items",
                "metadef_associations", "tasks",
            ] {
                counts[table] = try await self.rows(connection, "SELECT COUNT(*) FROM \(table)", []).first?.decode(Int64.self) ?? 0
            }
            return counts
        }
    }

    // MARK: Running calls

    /// Wraps an error thrown by the caller's `change` closure so it leaves `update` unchanged.
    private struct ChangeFailure: Error { let underlying: any Error }

    /// Runs `body` on a pooled connection under the deadline, after making sure the schema is current;
    /// every error leaves as an `ImageStoreError` (or the caller's own error from `update`'s change).
    func perform<T: Sendable>(
        _ operation: String, migrating: Bool = true, timeout: Duration? = nil,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await instrumentation.measure(operation) {
            try await performMeasured(operation, migrating: migrating, timeout: timeout, body)
        }
    }

    private func performMeasured<T: Sendable>(
        _ operation: String, migrating: Bool, timeout: Duration?,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let timeout = timeout ?? settings.timeout
        let outcome: Result<T, any Error>? = await ImageStoreCore.value(within: timeout, cancelAtDeadline: true) {
            do {
                return .success(
                    try await self.client.withConnection { connection in
                        if migrating, !self.migrated.load(ordering: .acquiring) {
                            _ = try await PostgresSchema.migrate(connection, logger: self.logger)
                            self.migrated.store(true, ordering: .releasing)
                        }
                        return try await body(connection)
                    })
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let value)?:
            return value
        case .failure(let error as ImageStoreError)?:
            throw error
        case .failure(let error as ChangeFailure)?:
            throw error.underlying
        case .failure(let error)?:
            if Task.isCancelled || error is CancellationError { throw CancellationError() }
            let mapped = Self.mapped(error, operation)
            logger.error("metadata database error", metadata: ["operation": "\(operation)", "error": "\(Self.details(error))"])
            throw mapped
        case nil:
            if Task.isCancelled { throw CancellationError() }
            logger.error("metadata database did not answer in time", metadata: ["operation": "\(operation)", "timeout": "\(timeout)"])
            throw ImageStoreError(
                .dependencyUnavailable, "The metadata database did not answer within \(timeout); try again later.")
        }
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws (its error is rethrown).
    func transaction<T: Sendable>(
        _ connection: PostgresConnection, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        _ = try await connection.query("BEGIN", logger: logger).collect()
        let value: T
        do {
            value = try await body(connection)
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger).collect()
            throw error
        }
        _ = try await connection.query("COMMIT", logger: logger).collect()
        return value
    }

    /// Connection trouble (refused, closed, the server shutting down or refusing connections) is
    /// `.dependencyUnavailable` (503: try again); anything else the database reports is `.internal`.
    static func mapped(_ error: any Error, _ operation: String) -> ImageStoreError {
        if let error = error as? PSQLError {
            if error.code == .server {
                let state = error.sqlState ?? ""
                // 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now;
                // 53300: too many connections; 57014: statement timeout (our deadline, server side).
                if state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300", "57014"].contains(state) {
                    return ImageStoreError(.dependencyUnavailable, "The metadata database is unavailable; try again later.")
                }
                return .internal("metadata database error while \(operation): \(error.serverInfo?[.message] ?? "") (\(state))")
            }
            if error.code == .messageDecodingFailure || error.code == .unexpectedBackendMessage {
                return .internal("metadata database error while \(operation): \(error.code)")
            }
            return ImageStoreError(.dependencyUnavailable, "The metadata database is unavailable; try again later.")
        }
        if error is PostgresDecodingError { return .internal("metadata database error while \(operation): \(error)") }
        // Socket-level failures (refused, reset) reach us as NIO errors.
        return ImageStoreError(.dependencyUnavailable, "The metadata database is unavailable; try again later.")
    }

    /// What to log about an error: PostgreSQL's message and SQLSTATE when it sent one (PSQLError's own
    /// description hides them).
    private static func details(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        if let info = error.serverInfo {
            return "\(info[.sqlState] ?? "") \(info[.message] ?? "") \(info[.detail] ?? "")"
        }
        return "\(error.code) \(error.underlying.map { "\($0)" } ?? "")"
    }

    // MARK: Rows

    /// The `images` columns, in the order `decodeImage` reads them (the same list as SQLite's).
    static let columns = SQLiteImageRepository.columns

    /// `columns` plus each image's tags, property names and property values as arrays, so a page and
    /// everything it shows arrive in one round trip (three sequential statements cost more than the
    /// statements themselves on a busy host). PostgreSQL evaluates these sub-selects after ORDER BY and
    /// LIMIT, so only the returned rows pay for them; both property arrays follow `name`, so they align
    /// (byte order: deterministic under any database collation).
    static let selectColumns =
        columns + ", ARRAY(SELECT tag FROM image_tags t WHERE t.image_id = images.id)"
        + ", ARRAY(SELECT name FROM image_properties p WHERE p.image_id = images.id ORDER BY name COLLATE \"C\")"
        + ", ARRAY(SELECT value FROM image_properties p WHERE p.image_id = images.id ORDER BY name COLLATE \"C\")"

    func rows(
        _ connection: PostgresConnection, _ sql: String, _ arguments: [SQLValue], arrays: [[String]] = []
    ) async throws -> [PostgresRow] {
        var bindings = PostgresBindings(capacity: arguments.count + arrays.count)
        for array in arrays { bindings.append(array) }
        for argument in arguments {
            switch argument {
            case .null: bindings.appendNull()
            case .integer(let v): bindings.append(v)
            case .real(let v): bindings.append(v)
            case .text(let v): bindings.append(v)
            case .bool(let v): bindings.append(v)
            }
        }
        return try await connection.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger).collect()
    }

    /// One statement writes the row, its tags and its properties (data-modifying WITH clauses): a single
    /// statement is atomic by itself, so a create is one round trip with no BEGIN and COMMIT around it.
    /// The foreign keys of tags and properties are checked at the end of the statement, when the row exists.
    private static func insert(_ image: Image, _ connection: PostgresConnection, _ logger: Logger) async throws {
        var binds = rowBindings(image)
        binds.append(image.tags)
        appendProperties(image.properties, to: &binds)
        _ = try await connection.query(PostgresQuery(unsafeSQL: insertStatement, binds: binds), logger: logger).collect()
    }

    /// Rewrites the row, and only the tags and properties that changed, in one statement (one round trip
    /// inside the update's transaction). The sets removed and added are disjoint, so no sub-statement
    /// touches a row another one does.
    private static func write(_ image: Image, replacing old: Image, _ connection: PostgresConnection, _ logger: Logger) async throws {
        var binds = rowBindings(image)
        binds.append(Set(old.tags).subtracting(image.tags).sorted())
        binds.append(Set(image.tags).subtracting(old.tags).sorted())
        binds.append(old.properties.keys.filter { image.properties[$0] == nil }.sorted())
        appendProperties(image.properties.filter { old.properties[$0.key] != $0.value }, to: &binds)
        _ = try await connection.query(PostgresQuery(unsafeSQL: writeStatement, binds: binds), logger: logger).collect()
    }

    /// `columns` one by one, trimmed.
    private static let columnNames = columns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }

    /// `insert`'s statement, built once: the row's values are $1…$n, then tags, property names, property values.
    private static let insertStatement: String = {
        let n = columnNames.count
        let placeholders = (1...n).map { "$\($0)" }.joined(separator: ", ")
        return "WITH image AS (INSERT INTO images (\(columns)) VALUES (\(placeholders)) RETURNING id), "
            + "tags AS (INSERT INTO image_tags (image_id, tag) SELECT image.id, unnest($\(n + 1)::TEXT[]) FROM image), "
            + "properties AS (INSERT INTO image_properties (image_id, name, value) "
            + "SELECT image.id, p.name, p.value FROM image, unnest($\(n + 2)::TEXT[], $\(n + 3)::TEXT[]) AS p(name, value)) "
            + "SELECT 1"
    }()

    /// `write`'s statement, built once: the row's values are $1…$n ($1 the id), then tags removed, tags added,
    /// properties removed, changed property names and their values.
    private static let writeStatement: String = {
        let n = columnNames.count
        let assignments = columnNames.enumerated().dropFirst().map { "\($0.element) = $\($0.offset + 1)" }.joined(separator: ", ")
        return "WITH image AS (UPDATE images SET \(assignments) WHERE id = $1), "
            + "removed_tags AS (DELETE FROM image_tags WHERE image_id = $1 AND tag = ANY($\(n + 1)::TEXT[])), "
            + "added_tags AS (INSERT INTO image_tags (image_id, tag) SELECT $1, unnest($\(n + 2)::TEXT[])), "
            + "removed_properties AS (DELETE FROM image_properties WHERE image_id = $1 AND name = ANY($\(n + 3)::TEXT[])), "
            + "changed_properties AS (INSERT INTO image_properties (image_id, name, value) "
            + "SELECT $1, * FROM unnest($\(n + 4)::TEXT[], $\(n + 5)::TEXT[]) "
            + "ON CONFLICT (image_id, name) DO UPDATE SET value = excluded.value) "
            + "SELECT 1"
    }()

    /// The row's values as `insertStatement` and `writeStatement` take them first.
    private static func rowBindings(_ image: Image) -> PostgresBindings {
        let values = rowValues(image)
        assert(values.count == columnNames.count, "rowValues and columns disagree")
        return bindings(values)
    }

    /// Properties as two aligned arrays, names in order, then values.
    private static func appendProperties(_ properties: [String: String], to binds: inout PostgresBindings) {
        let sorted = properties.sorted { $0.key < $1.key }
        binds.append(sorted.map(\.key))
        binds.append(sorted.map(\.value))
    }

    /// Values for `columns`, in order.
    private static func rowValues(_ image: Image) -> [SQLValue] {
        func text(_ value: String?) -> SQLValue { value.map(SQLValue.text) ?? .null }
        func integer(_ value: Int64?) -> SQLValue { value.map(SQLValue.integer) ?? .null }
        return [
            .text(image.id.description), text(image.name), .text(image.status.rawValue), .text(image.visibility.rawValue),
            .bool(image.isProtected), .bool(image.osHidden), text(image.checksum), text(image.osHashAlgo),
            text(image.osHashValue), integer(image.size), integer(image.virtualSize), text(image.diskFormat),
            text(image.containerFormat), .integer(Int64(image.minDisk)), .integer(Int64(image.minRam)), text(image.owner),
            .real(image.createdAt.timeIntervalSince1970), .real(image.updatedAt.timeIntervalSince1970), text(image.uploadOwner),
        ]
    }

    private static func bindings(_ values: [SQLValue]) -> PostgresBindings {
        var bindings = PostgresBindings(capacity: values.count)
        for value in values {
            switch value {
            case .null: bindings.appendNull()
            case .integer(let v): bindings.append(v)
            case .real(let v): bindings.append(v)
            case .text(let v): bindings.append(v)
            case .bool(let v): bindings.append(v)
            }
        }
        return bindings
    }

    /// Runs a SELECT of `selectColumns` and decodes each row into an image with its tags and properties.
    private func fetchImages(
        _ connection: PostgresConnection, _ sql: String, _ arguments: [SQLValue], arrays: [[String]] = []
    ) async throws -> [Image] {
        try await self.rows(connection, sql, arguments, arrays: arrays).map(Self.decodeImage)
    }

    private static func decodeImage(_ row: PostgresRow) throws -> Image {
        let r = row.makeRandomAccess()
        let names = try r[20].decode([String].self)
        let values = try r[21].decode([String].self)
        guard names.count == values.count else {
            throw ImageStoreError.internal("corrupt image row: \(names.count) property names, \(values.count) values")
        }
        let idText = try r[0].decode(String.self)
        let statusText = try r[2].decode(String.self)
        let visibilityText = try r[3].decode(String.self)
        guard let id = ImageID(idText), let status = ImageStatus(rawValue: statusText),
            let visibility = ImageVisibility(rawValue: visibilityText)
        else {
            throw ImageStoreError.internal("corrupt image row: id \(idText), status \(statusText), visibility \(visibilityText)")
        }
        return Image(
            id: id, name: try r[1].decode(String?.self), status: status, visibility: visibility,
            isProtected: try r[4].decode(Bool.self), osHidden: try r[5].decode(Bool.self),
            checksum: try r[6].decode(String?.self), osHashAlgo: try r[7].decode(String?.self),
            osHashValue: try r[8].decode(String?.self), size: try r[9].decode(Int64?.self),
            virtualSize: try r[10].decode(Int64?.self), diskFormat: try r[11].decode(String?.self),
            containerFormat: try r[12].decode(String?.self), minDisk: Int(try r[13].decode(Int64.self)),
            minRam: Int(try r[14].decode(Int64.self)), owner: try r[15].decode(String?.self),
            createdAt: Date(timeIntervalSince1970: try r[16].decode(Double.self)),
            updatedAt: Date(timeIntervalSince1970: try r[17].decode(Double.self)),
            // Tags are sorted as `Image` keeps them (Swift's order, not the database collation's).
            tags: try r[19].decode([String].self).sorted(),
            properties: Dictionary(zip(names, values), uniquingKeysWith: { _, last in last }), uploadOwner: try r[18].decode(String?.self))
    }

    private func fetchMembers(_ connection: PostgresConnection, _ condition: String, _ arguments: [SQLValue]) async throws -> [ImageMember] {
        try await rows(
            connection,
            "SELECT image_id, member_id, status, created_at, updated_at FROM image_members WHERE \(condition) "
                + "ORDER BY created_at, member_id",
            arguments
        ).map(Self.decodeMember)
    }

    private static func decodeMember(_ row: PostgresRow) throws -> ImageMember {
        let (imageText, memberID, statusText, createdAt, updatedAt) = try row.decode((String, String, String, Double, Double).self)
        guard let imageID = ImageID(imageText), let status = MemberStatus(rawValue: statusText) else {
            throw ImageStoreError.internal("corrupt image_members row: \(imageText) \(statusText)")
        }
        return ImageMember(
            imageID: imageID, memberID: memberID, status: status, createdAt: Date(timeIntervalSince1970: createdAt),
            updatedAt: Date(timeIntervalSince1970: updatedAt))
    }

    /// The marker image's values for each effective sort key; `.badRequest` when there is no such image.
    private func markerValues(_ query: ImageListQuery, _ connection: PostgresConnection) async throws -> [SQLValue]? {
        guard let marker = query.marker else { return nil }
        let keys = query.effectiveSortKeys
        let columns = keys.map(\.key.column).joined(separator: ", ")
        guard let row = try await rows(connection, "SELECT \(columns) FROM images WHERE id = $1", [.text(marker.description)]).first
        else { throw ImageStoreError.badRequest("marker not found") }
        let r = row.makeRandomAccess()
        return try keys.enumerated().map { index, spec -> SQLValue in
            switch spec.key {
            case .size, .minDisk, .minRam: return try r[index].decode(Int64?.self).map(SQLValue.integer) ?? .null
            case .createdAt, .updatedAt: return .real(try r[index].decode(Double.self))
            case .name, .status, .id, .containerFormat, .diskFormat, .visibility, .owner:
                return try r[index].decode(String?.self).map(SQLValue.text) ?? .null
            }
        }
    }
}

extension PSQLError {
    /// The SQLSTATE the server sent, if it sent one.
    var sqlState: String? { serverInfo?[.sqlState] }
}

// MARK: Replicas

extension PostgresImageRepository: ReplicaRegistry {
    /// Every replica of a deployment shares one PostgreSQL.
    public var isShared: Bool { true }

    /// The database's clock (not the replica's): every lease is measured on one clock.
    private static let now = "EXTRACT(EPOCH FROM clock_timestamp())"

    public func registerReplica(_ id: String, host: String) async throws {
        try await perform("registerReplica") { connection in
            _ = try await self.rows(
                connection,
                "INSERT INTO replicas (id, host, started_at, heartbeat_at) VALUES ($1, $2, \(Self.now), \(Self.now)) "
                    + "ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
                [.text(id), .text(host)])
        }
    }

    public func heartbeatReplica(_ id: String) async throws -> Bool {
        try await perform("heartbeatReplica") { connection in
            !(try await self.rows(
                connection, "UPDATE replicas SET heartbeat_at = \(Self.now) WHERE id = $1 RETURNING id", [.text(id)]
            ).isEmpty)
        }
    }

    public func replicas() async throws -> [ReplicaRecord] {
        try await perform("replicas") { connection in
            try await Self.replicaRecords(
                self.rows(connection, "SELECT id, host, started_at, heartbeat_at FROM replicas ORDER BY started_at, id", []))
        }
    }

    public func expiredReplicas(lease: Duration) async throws -> [ReplicaRecord] {
        try await perform("expiredReplicas") { connection in
            try await Self.replicaRecords(
                self.rows(
                    connection,
                    "SELECT id, host, started_at, heartbeat_at FROM replicas WHERE heartbeat_at < \(Self.now) - $1 "
                        + "ORDER BY started_at, id",
                    [.real(lease.fractionalSeconds)]))
        }
    }

    @discardableResult
    public func removeReplica(_ id: String, ifExpired lease: Duration) async throws -> Bool {
        try await perform("removeReplica") { connection in
            !(try await self.rows(
                connection, "DELETE FROM replicas WHERE id = $1 AND heartbeat_at < \(Self.now) - $2 RETURNING id",
                [.text(id), .real(lease.fractionalSeconds)]
            ).isEmpty)
        }
    }

    private static func replicaRecords(_ rows: [PostgresRow]) throws -> [ReplicaRecord] {
        try rows.map { row in
            let (id, host, started, heartbeat) = try row.decode((String, String, Double, Double).self)
            return ReplicaRecord(
                id: id, host: host, startedAt: Date(timeIntervalSince1970: started),
                heartbeatAt: Date(timeIntervalSince1970: heartbeat))
        }
    }
}
