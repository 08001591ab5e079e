import Foundation
import ImageStoreCore
import ImageStoreTestSupport
import Testing

@testable import ImageStoreMetadata

/// PostgreSQL stopped and started again under a live repository: calls answer `.dependencyUnavailable`
/// within the deadline (never hang), nothing is half-applied, and the pool reconnects by itself.
/// Asserts time bounds: scripts/test runs it in the deadline phase (`timing`).
@Suite(.serialized) struct PostgresOutageTests {
    @Test func stoppedDatabase_answersUnavailableInTime_thenPoolReconnects() async throws {
        let server = try await PostgresServer.start()
        defer { server.stopNow() }
        let url = try await server.createDatabase()
        // The schema first, without the 1 s deadline: creating a dozen tables is not what this test times.
        let setup = try PostgresImageRepository(settings: PostgresImageRepositoryTests.settings(server, url), logger: testLogger)
        try await setup.migrate()
        await setup.shutdown()
        var settings = PostgresImageRepositoryTests.settings(server, url, timeout: .seconds(1))
        settings.maxConnections = 2
        let repository = try PostgresImageRepository(settings: settings, logger: testLogger)
        defer { repository.close() }
        let image = Image(name: "before")
        try await repository.create(image)

        await server.stop()
        let clock = ContinuousClock()
        for attempt in 0..<3 {
            let start = clock.now
            let error = await #expect(throws: ImageStoreError.self) {
                try await repository.update(image.id, expecting: [.queued]) { $0.status = .saving }
            }
            #expect(error?.code == .dependencyUnavailable, "attempt \(attempt): \(String(describing: error))")
            // 1 s deadline; the bound is generous for a loaded machine and far below a hang.
            #expect(clock.now - start < .seconds(5), "attempt \(attempt)")
        }
        let start = clock.now
        await #expect(throws: ImageStoreError.self) { try await repository.ping() }
        #expect(clock.now - start < .seconds(5))

        try await server.restart()
        // The pool reconnects on its own (with backoff): the same repository answers again.
        let deadline = clock.now + .seconds(30)
        var answered = false
        while clock.now < deadline {
            if (try? await repository.ping()) != nil {
                answered = true
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(answered)
        // Nothing of the failed updates was applied.
        #expect(try await repository.get(image.id)?.status == .queued)
        try await repository.update(image.id, expecting: [.queued]) { $0.status = .saving }
        #expect(try await repository.get(image.id)?.status == .saving)
    }

    @Test func databaseNeverReachable_answersUnavailableInTime() async throws {
        // A port nothing listens on: connection refused, again and again.
        let port = try freeTCPPort()
        let repository = try PostgresImageRepository(
            settings: .init(
                host: "127.0.0.1", port: port, username: "nobody", password: "x", database: "none", tls: .disable,
                timeout: .seconds(1)),
            logger: testLogger)
        defer { repository.close() }
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: ImageStoreError.self) { try await repository.get(ImageID()) }
        #expect(error?.code == .dependencyUnavailable)
        #expect(clock.now - start < .seconds(5))
    }

    /// A full pool when PostgreSQL restarts: a fast shutdown closes every session, the pool drops each
    /// connection as its socket closes, and afterwards no call is handed a connection from before the
    /// restart (it would fail at once, "connection closed": a 503 right after recovery). No call is made
    /// during the outage, so no reconnect backoff is involved: the calls after the restart connect afresh,
    /// and every one must succeed.
    @Test func restartWithAFullPool_noConnectionFromBeforeIsHandedOutAfterwards() async throws {
        let server = try await PostgresServer.start()
        defer { server.stopNow() }
        let url = try await server.createDatabase()
        let repository = try PostgresImageRepository(settings: PostgresImageRepositoryTests.settings(server, url), logger: testLogger)
        defer { repository.close() }
        try await repository.migrate()
        // Every connection of the pool open (4 calls at once, each holding its connection a moment).
        try await Self.holdEveryConnection(repository)
        let sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'imagestore'"
        #expect(try await server.psql(sessions) == "\(repository.settings.maxConnections)")

        try await server.restart()
        #expect(try await server.psql(sessions) == "0")
        for _ in 0..<3 {
            try await Self.holdEveryConnection(repository)
        }
        try await repository.ping()
        #expect(try await server.psql(sessions) == "\(repository.settings.maxConnections)")
    }

    /// `maxConnections` calls at once, each holding its connection 0.3 s: every connection of the pool is used.
    static func holdEveryConnection(_ repository: PostgresImageRepository) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<repository.settings.maxConnections {
                group.addTask {
                    try await repository.perform("hold", migrating: false) { connection in
                        _ = try await repository.rows(connection, "SELECT pg_sleep(0.3)", [])
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
