import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreTestSupport
import Logging
import Testing

/// Makes a fresh repository for one test; the conformance suite runs once per factory.
struct RepositoryFactory: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable () throws -> RepositoryFixture

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

    static let all: [RepositoryFactory] = [.inMemory, .sqliteInMemory, .sqliteFile]
}

struct RepositoryFixture: Sendable {
    let repository: any ImageRepository
    let cleanup: @Sendable () -> Void
}

let testLogger = Logger(label: "imagestore.metadata.tests")

extension RepositoryFactory {
    /// Runs `body` with a fresh repository, cleaning up (temp files included) also when it throws.
    func with(_ body: (any ImageRepository) async throws -> Void) async throws {
        let fixture = try make()
        defer { fixture.cleanup() }
        try await body(fixture.repository)
    }
}
