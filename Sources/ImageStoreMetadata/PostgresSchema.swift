import ImageStoreCore
import Logging
import PostgresNIO

/// The metadata schema on PostgreSQL, as versioned migrations named like the SQLite ones
/// (`MetadataSchema`), so `imagestore db version` reports the same names on both engines.
/// Applied names are recorded in `schema_migrations`; never edit a shipped migration: add the next one.
///
/// Types mirror SQLite's so both engines hold and order the same values: dates are `double precision`
/// unix seconds (`StoredDate`), text is `COLLATE "C"` (byte order, like SQLite's BINARY), and every
/// list index is NULLS FIRST so ORDER BY with SQLite's NULL placement walks it in either direction.
enum PostgresSchema {
    struct Migration: Sendable {
        let name: String
        let sql: String
    }

    static let migrations: [Migration] = [
        Migration(
            name: "v1-images",
            sql: """
                CREATE TABLE images (
                    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                    name TEXT COLLATE "C",
                    status TEXT COLLATE "C" NOT NULL,
                    visibility TEXT COLLATE "C" NOT NULL,
                    protected BOOLEAN NOT NULL DEFAULT FALSE,
                    os_hidden BOOLEAN NOT NULL DEFAULT FALSE,
                    checksum TEXT,
                    os_hash_algo TEXT,
                    os_hash_value TEXT,
                    size BIGINT,
                    virtual_size BIGINT,
                    disk_format TEXT COLLATE "C",
                    container_format TEXT COLLATE "C",
                    min_disk BIGINT NOT NULL DEFAULT 0,
                    min_ram BIGINT NOT NULL DEFAULT 0,
                    owner TEXT COLLATE "C",
                    created_at DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL,
                    upload_owner TEXT
                );
                CREATE TABLE image_tags (
                    image_id TEXT COLLATE "C" NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                    tag TEXT COLLATE "C" NOT NULL,
                    PRIMARY KEY (image_id, tag)
                );
                CREATE TABLE image_properties (
                    image_id TEXT COLLATE "C" NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                    name TEXT COLLATE "C" NOT NULL,
                    value TEXT COLLATE "C" NOT NULL,
                    PRIMARY KEY (image_id, name)
                );
                CREATE INDEX images_by_created_at ON images(created_at NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_updated_at ON images(updated_at NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_name ON images(name NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_status ON images(status NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_owner ON images(owner NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_size ON images(size NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_visibility ON images(visibility NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_disk_format ON images(disk_format NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_container_format ON images(container_format NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_min_disk ON images(min_disk NULLS FIRST, id NULLS FIRST);
                CREATE INDEX images_by_min_ram ON images(min_ram NULLS FIRST, id NULLS FIRST);
                CREATE INDEX image_tags_by_tag ON image_tags(tag);
                """),
        Migration(
            name: "v2-image-members",
            sql: """
                CREATE TABLE image_members (
                    image_id TEXT COLLATE "C" NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                    member_id TEXT COLLATE "C" NOT NULL,
                    status TEXT COLLATE "C" NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL,
                    PRIMARY KEY (image_id, member_id)
                );
                CREATE INDEX image_members_by_member ON image_members(member_id, status, image_id);
                """),
        // v3 and v4 came to PostgreSQL after v5 and v6 had shipped: `migrate` applies every name a
        // database lacks, in this order, so older PostgreSQL databases gain them at their next sync.
        Migration(
            name: "v3-metadefs",
            sql: """
                CREATE TABLE metadef_namespaces (
                    namespace TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                    display_name TEXT,
                    description TEXT,
                    visibility TEXT COLLATE "C" NOT NULL,
                    protected BOOLEAN NOT NULL DEFAULT FALSE,
                    owner TEXT COLLATE "C",
                    created_at DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL
                );
                CREATE TABLE metadef_items (
                    namespace TEXT COLLATE "C" NOT NULL
                        REFERENCES metadef_namespaces(namespace) ON DELETE CASCADE ON UPDATE CASCADE,
                    kind TEXT COLLATE "C" NOT NULL,
                    name TEXT COLLATE "C" NOT NULL,
                    document TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL,
                    PRIMARY KEY (namespace, kind, name)
                );
                CREATE TABLE metadef_resource_types (
                    name TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                    protected BOOLEAN NOT NULL DEFAULT FALSE,
                    created_at DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL
                );
                CREATE TABLE metadef_associations (
                    namespace TEXT COLLATE "C" NOT NULL
                        REFERENCES metadef_namespaces(namespace) ON DELETE CASCADE ON UPDATE CASCADE,
                    resource_type TEXT COLLATE "C" NOT NULL REFERENCES metadef_resource_types(name),
                    prefix TEXT,
                    properties_target TEXT,
                    created_at DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL,
                    PRIMARY KEY (namespace, resource_type)
                );
                INSERT INTO metadef_resource_types (name, protected, created_at, updated_at)
                    SELECT name, TRUE, EXTRACT(EPOCH FROM now()), EXTRACT(EPOCH FROM now())
                    FROM unnest(ARRAY[\(MetadefResourceType.seeded.map { "'\($0)'" }.joined(separator: ", "))]) AS name
                """),
        Migration(
            name: "v4-tasks",
            sql: """
                CREATE TABLE tasks (
                    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                    type TEXT COLLATE "C" NOT NULL,
                    status TEXT COLLATE "C" NOT NULL,
                    input TEXT NOT NULL,
                    result TEXT,
                    message TEXT NOT NULL DEFAULT '',
                    owner TEXT COLLATE "C",
                    image_id TEXT COLLATE "C",
                    user_id TEXT,
                    request_id TEXT,
                    expires_at DOUBLE PRECISION,
                    created_at DOUBLE PRECISION NOT NULL,
                    updated_at DOUBLE PRECISION NOT NULL
                );
                CREATE INDEX tasks_by_owner ON tasks(owner, created_at);
                CREATE INDEX tasks_by_image ON tasks(image_id)
                """),
        Migration(
            name: "v5-store-identity",
            sql: """
                CREATE TABLE store_identity (
                    store TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                    marker_id TEXT NOT NULL,
                    recorded_at DOUBLE PRECISION NOT NULL
                );
                """),
        Migration(
            name: "v6-replicas",
            sql: """
                CREATE TABLE replicas (
                    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                    host TEXT NOT NULL,
                    started_at DOUBLE PRECISION NOT NULL,
                    heartbeat_at DOUBLE PRECISION NOT NULL
                );
                CREATE INDEX images_by_upload_owner ON images(upload_owner) WHERE upload_owner IS NOT NULL;
                """),
        Migration(
            name: "v7-owner-pages",
            sql: """
                CREATE INDEX images_by_owner_created_at ON images(owner NULLS FIRST, created_at NULLS FIRST, id NULLS FIRST);
                """),
    ]

    /// Any fixed number: every ImageStore process migrating the same database takes this advisory lock,
    /// so replicas starting together apply each migration once.
    static let lockKey: Int64 = 0x696D_6167_6573_746F  // "imagesto"

    /// Applies the migrations not yet recorded, all in one transaction (PostgreSQL's DDL is transactional:
    /// a failure leaves the schema as it was) under a transaction-scoped advisory lock, released by the
    /// commit or rollback whatever happens to this connection. Returns the names applied now.
    static func migrate(_ connection: PostgresConnection, logger: Logger) async throws -> [String] {
        _ = try await connection.query("BEGIN", logger: logger).collect()
        do {
            _ = try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger).collect()
            // Under the lock: two processes creating it at once would collide in PostgreSQL's catalogue.
            _ = try await connection.query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)",
                logger: logger
            ).collect()
            let done = Set(try await applied(connection, logger: logger))
            var now: [String] = []
            for migration in migrations where !done.contains(migration.name) {
                // One statement per query (the extended protocol runs one at a time); our DDL has no ';' in literals.
                for statement in migration.sql.split(separator: ";") where !statement.allSatisfy(\.isWhitespace) {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: String(statement)), logger: logger).collect()
                }
                _ = try await connection.query(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (\(migration.name), EXTRACT(EPOCH FROM now()))",
                    logger: logger
                ).collect()
                now.append(migration.name)
            }
            _ = try await connection.query("COMMIT", logger: logger).collect()
            return now
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger).collect()
            throw error
        }
    }

    /// The migration names recorded, in the order they were declared (empty before the first sync).
    static func applied(_ connection: PostgresConnection, logger: Logger) async throws -> [String] {
        let exists = try await connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger).collect()
        guard try exists.first?.decode(Bool.self) == true else { return [] }
        let rows = try await connection.query("SELECT name FROM schema_migrations", logger: logger).collect()
        let names = Set(try rows.map { try $0.decode(String.self) })
        return migrations.map(\.name).filter(names.contains)
    }
}
