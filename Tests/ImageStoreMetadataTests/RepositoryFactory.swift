import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreTestSupport
import Logging
import Testing

/// Makes a fresh repository for one test; the conformance suite runs once per factory.
struct RepositoryFactory: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable () async throws -> RepositoryFixture

    var testDescription: String { name }

    static let inMemory = RepositoryFactory(name: "in-memory actor") {
        RepositoryFixture(repository: InMemoryImageRepository(), cleanup: {})
    }

    static let sqliteInMemory = RepositoryFactory(name: "SQLite :memory:") {
        RepositoryFixture(repository: try SQLiteImageRepository(path: ":memory:", logger: testLogger), cleanup: {})
    }

    static let sqliteFile = RepositoryFactory(name: "SQLite file") {
        let directory = try TemporaryDirectory()
        do {
            let repository = try SQLiteImageRepository(path: directory.appending("images.sqlite"), logger: testLogger)
            return RepositoryFixture(repository: repository) {
                try? repository.close()
                directory.remove()
            }
        } catch {
            directory.remove()
            throw error
        }
    }

    /// A fresh database on the shared real PostgreSQL 15 (`SharedPostgresServer`).
    static let postgres = RepositoryFactory(name: "PostgreSQL 15") {
        let server = try await SharedPostgresServer.shared.acquire()
        do {
            let database = "db_" + UUID().uuidString.prefix(8).lowercased()
            try await server.psql("CREATE DATABASE \(database)")
            let repository = try PostgresImageRepository(
                settings: .init(
                    host: "127.0.0.1", port: server.port, username: PostgresServer.username, password: server.password,
                    database: database, tls: .disable, maxConnections: 8, timeout: .seconds(30)),
                logger: testLogger)
            return RepositoryFixture(repository: repository) {
                await repository.shutdown()
                await SharedPostgresServer.shared.release()
            }
        } catch {
            await SharedPostgresServer.shared.release()
            throw error
        }
    }

    static let all: [RepositoryFactory] = [.inMemory, .sqliteInMemory, .sqliteFile, .postgres]
}

struct RepositoryFixture: Sendable {
    let repository: any ImageRepository
    let cleanup: @Sendable () async -> Void

    init(repository: any ImageRepository, cleanup: @escaping @Sendable () async -> Void) {
        self.repository = repository
        self.cleanup = cleanup
    }
}

let testLogger = Logger(label: "imagestore.metadata.tests")

extension RepositoryFactory {
    /// Runs `body` with a fresh repository, cleaning up (temp files included) also when it throws.
    func with(_ body: (any ImageRepository) async throws -> Void) async throws {
        let fixture = try await make()
        do {
            try await body(fixture.repository)
        } catch {
            await fixture.cleanup()
            throw error
        }
        await fixture.cleanup()
    }
}
