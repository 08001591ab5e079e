import Foundation
import ImageStoreCore
import ImageStoreTestSupport
import Testing

@testable import ImageStoreMetadata

/// What only the PostgreSQL repository has: versioned migrations in `schema_migrations`, a database
/// that outlives the repository, the bulk import `imagestore db copy` uses. The conformance suites run
/// on it too (`RepositoryFactory.postgres`).
@Suite struct PostgresImageRepositoryTests {
    static func settings(_ server: PostgresServer, _ url: String, timeout: Duration = .seconds(30)) -> PostgresImageRepository.Settings {
        .init(
            host: "127.0.0.1", port: server.port, username: PostgresServer.username, password: server.password,
            database: String(url.split(separator: "/").last!), tls: .disable, maxConnections: 4, timeout: timeout)
    }

    @Test func migrate_appliesEveryMigrationOnce_andRecordsTheirNames() async throws {
        try await SharedPostgresServer.withDatabase { server, url in
            let repository = try PostgresImageRepository(settings: Self.settings(server, url), logger: testLogger)
            #expect(try await repository.appliedMigrations() == [])
            #expect(try await repository.migrate() == PostgresImageRepository.knownMigrations)
            #expect(try await repository.migrate() == [])
            #expect(try await repository.appliedMigrations() == PostgresImageRepository.knownMigrations)
            // The same list, with the same names, as SQLite's, so `db version` means the same on both engines.
            #expect(PostgresImageRepository.knownMigrations == SQLiteImageRepository.knownMigrations)
            let tables = try await server.psql(
                "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
                database: String(url.split(separator: "/").last!))
            #expect(
                tables == "image_members,image_properties,image_tags,images,metadef_associations,metadef_items,"
                    + "metadef_namespaces,metadef_resource_types,replicas,schema_migrations,store_identity,tasks")
            await repository.shutdown()
        }
    }

    /// PostgreSQL databases made before the metadefs and tasks tables came to PostgreSQL hold v1, v2, v5
    /// and v6: the next sync adds v3 and v4 and keeps the images.
    @Test func migrate_ofADatabaseWithoutMetadefsAndTasks_addsThem_keepingImages() async throws {
        try await SharedPostgresServer.withDatabase { server, url in
            let database = String(url.split(separator: "/").last!)
            let repository = try PostgresImageRepository(settings: Self.settings(server, url), logger: testLogger)
            try await repository.migrate()
            let image = Image(name: "older", owner: "p1")
            try await repository.create(image)
            await repository.shutdown()
            try await server.psql(
                "DROP TABLE tasks, metadef_associations, metadef_items, metadef_resource_types, metadef_namespaces; "
                    + "DELETE FROM schema_migrations WHERE name IN ('v3-metadefs', 'v4-tasks')",
                database: database)

            let upgraded = try PostgresImageRepository(settings: Self.settings(server, url), logger: testLogger)
            #expect(try await upgraded.appliedMigrations() == ["v1-images", "v2-image-members", "v5-store-identity", "v6-replicas", "v7-owner-pages"])
            #expect(try await upgraded.migrate() == ["v3-metadefs", "v4-tasks"])
            #expect(try await upgraded.appliedMigrations() == PostgresImageRepository.knownMigrations)
            #expect(try await upgraded.get(image.id)?.name == "older")
            let types = try await PostgresMetadefRepository(sharing: upgraded).resourceTypes()
            #expect(Set(types.map(\.name)) == Set(MetadefResourceType.seeded))
            try await PostgresTaskRepository(sharing: upgraded).createTask(ImageTask(type: "import"))
            await upgraded.shutdown()
        }
    }

    @Test func migrate_whenThreeProcessesStartTogether_appliesEachMigrationOnce() async throws {
        try await SharedPostgresServer.withDatabase { server, url in
            let repositories = try (0..<3).map { _ in
                try PostgresImageRepository(settings: Self.settings(server, url), logger: testLogger)
            }
            let applied = try await withThrowingTaskGroup(of: [String].self) { group in
                for repository in repositories { group.addTask { try await repository.migrate() } }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(applied.sorted() == PostgresImageRepository.knownMigrations.sorted())
            for repository in repositories { await repository.shutdown() }
        }
    }

    @Test func reopen_keepsImagesTagsPropertiesAndMembers() async throws {
        try await SharedPostgresServer.withDatabase { server, url in
            var image = Image(name: "kept", owner: "p1")
            image.tags = ["a", "b"]
            image.properties = ["hw_disk_bus": "scsi"]
            let first = try PostgresImageRepository(settings: Self.settings(server, url), logger: testLogger)
            try await first.create(image)
            try await first.addMember(ImageMember(imageID: image.id, memberID: "p2"), limit: nil)
            await first.shutdown()

            let second = try PostgresImageRepository(settings: Self.settings(server, url), logger: testLogger)
            let stored = try #require(try await second.get(image.id))
            #expect(stored.tags == ["a", "b"])
            #expect(stored.properties == ["hw_disk_bus": "scsi"])
            #expect(try await second.members(of: image.id).map(\.memberID) == ["p2"])
            #expect(
                try await second.tableCounts() == [
                    "images": 1, "image_tags": 2, "image_properties": 1, "image_members": 1, "metadef_namespaces": 0,
                    "metadef_items": 0, "metadef_associations": 0, "tasks": 0,
                ])
            await second.shutdown()
        }
    }

    @Test func importCatalogue_keepsDatesAndStatuses_andIsAllOrNothing() async throws {
        try await SharedPostgresServer.withDatabase { server, url in
            let repository = try PostgresImageRepository(settings: Self.settings(server, url), logger: testLogger)
            var active = Image(name: "old", owner: "p1", createdAt: Date(timeIntervalSince1970: 1_000_000))
            active.status = .active
            active.size = 42
            active.updatedAt = Date(timeIntervalSince1970: 1_000_001)
            let member = ImageMember(imageID: active.id, memberID: "p2", status: .accepted, createdAt: Date(timeIntervalSince1970: 5))
            try await repository.importCatalogue(images: [active], members: [member], timeout: .seconds(30))
            #expect(try await repository.get(active.id) == active.normalizedForStorage)
            #expect(try await repository.member("p2", of: active.id) == member.normalizedForStorage)

            // A second import with a clash stores nothing of it.
            let fresh = Image(name: "new")
            await #expect(throws: ImageStoreError.self) {
                try await repository.importCatalogue(images: [fresh, active], members: [], timeout: .seconds(30))
            }
            #expect(try await repository.get(fresh.id) == nil)
            await repository.shutdown()
        }
    }
}
