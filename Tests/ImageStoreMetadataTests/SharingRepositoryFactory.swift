import Foundation
import ImageStoreMetadata
import ImageStoreTestSupport
import Testing

/// Makes a fresh repository of one implementation, for the repositories that live in the images'
/// database (metadefs, tasks): in memory, SQLite in memory and in a file, PostgreSQL.
struct SharingRepositoryFactory<Repository: Sendable>: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable () async throws -> (Repository, @Sendable () async -> Void)
    var testDescription: String { name }

    /// One factory per engine, each building the repository on that engine's images database.
    static func engines(
        inMemory: @escaping @Sendable () -> Repository,
        sqlite: @escaping @Sendable (SQLiteImageRepository) -> Repository,
        postgres: @escaping @Sendable (PostgresImageRepository) -> Repository
    ) -> [Self] {
        [
            Self(name: "in-memory actor") { (inMemory(), {}) },
            Self(name: "SQLite :memory:") { (sqlite(try SQLiteImageRepository(path: ":memory:", logger: testLogger)), {}) },
            Self(name: "SQLite file") {
                let directory = try TemporaryDirectory()
                let images = try SQLiteImageRepository(path: directory.appending("images.sqlite"), logger: testLogger)
                return (
                    sqlite(images),
                    {
                        try? images.close()
                        directory.remove()
                    }
                )
            },
            Self(name: "PostgreSQL 15") {
                let fixture = try await RepositoryFactory.postgres.make()
                let images = try #require(fixture.repository as? PostgresImageRepository)
                return (postgres(images), fixture.cleanup)
            },
        ]
    }

    func with(_ body: (Repository) async throws -> Void) async throws {
        let (repository, cleanup) = try await make()
        do {
            try await body(repository)
        } catch {
            await cleanup()
            throw error
        }
        await cleanup()
    }
}
