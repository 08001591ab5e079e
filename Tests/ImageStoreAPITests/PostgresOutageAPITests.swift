import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreTestSupport
import Logging
import NIOCore
import Testing

/// The whole application on a real PostgreSQL that stops and starts again: requests that need the
/// database answer 503 within 5 s (never hang), the `database` health backend turns 503, and once the
/// database is back the same server answers again without a restart. Asserts time bounds: scripts/test
/// runs it in the deadline phase (`timing`).
@Suite(.serialized) struct PostgresOutageAPITests {
    @Test func databaseStopped_requestsAnswer503InTime_healthTurns503_thenRecovers() async throws {
        let server = try await PostgresServer.start()
        defer { server.stopNow() }
        let url = try await server.createDatabase()
        // The schema first, without the 1 s deadline: a dozen tables on a loaded machine are not what this
        // test times (the first request would otherwise migrate under pool_timeout = 1).
        let setup = try PostgresImageRepository(
            settings: .init(
                host: "127.0.0.1", port: server.port, username: PostgresServer.username, password: server.password,
                database: String(url.split(separator: "/").last!), tls: .disable, timeout: .seconds(60)),
            logger: Logger(label: "test"))
        try await setup.migrate()
        await setup.shutdown()
        let harness = try APITestHarness { configuration in
            guard case .success(let location) = DatabaseLocation.parse(url) else { return }
            configuration.database = location
            configuration.databaseOptions.poolTimeout = .seconds(1)
            configuration.healthcheck.backends = ["database"]
            configuration.healthcheck.checkInterval = .milliseconds(200)
            configuration.healthcheck.checkTimeout = .milliseconds(3000)
        }
        #expect(harness.configuration.database != .defaultLocation)
        try await harness.run { client in
            let id = try await client.createImage()
            #expect(try await client.json("/healthcheck", method: .get).0.status == .ok)

            await server.stop()
            let clock = ContinuousClock()
            for (uri, method, body) in [
                ("/v2/images", HTTPRequest.Method.get, nil as String?),
                ("/v2/images/\(id)", .get, nil),
                ("/v2/images", .post, #"{"name": "during the outage"}"#),
            ] {
                let start = clock.now
                let (response, json) = try await client.json(uri, method: method, body: body)
                #expect(response.status == .serviceUnavailable, "\(method) \(uri): \(String(buffer: response.body))")
                #expect(json != nil, "a Glance error body")
                // pool_timeout = 1 s; the bound is generous for a loaded machine and far below a hang.
                #expect(clock.now - start < .seconds(5), "\(method) \(uri)")
            }
            // The background health round sees the database gone.
            var health = HTTPResponse.Status.ok
            let healthDeadline = clock.now + .seconds(10)
            while clock.now < healthDeadline {
                health = try await client.json("/healthcheck", method: .get).0.status
                if health == .serviceUnavailable { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(health == .serviceUnavailable)

            try await server.restart()
            var recovered = false
            let recoverDeadline = clock.now + .seconds(30)
            while clock.now < recoverDeadline {
                if try await client.json("/v2/images/\(id)", method: .get).0.status == .ok {
                    recovered = true
                    break
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(recovered, "the pool reconnected by itself")
            // Nothing from the outage was half-applied: the only image is the one made before.
            let (list, body) = try await client.json("/v2/images", method: .get)
            // Once in a stressed run this answered 503 right after a 200: say why, if it happens again.
            #expect(list.status == .ok, "\(String(buffer: list.body))")
            #expect(body?["images"]?.arrayValue?.count == 1)
            while clock.now < recoverDeadline, try await client.json("/healthcheck", method: .get).0.status != .ok {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await client.json("/healthcheck", method: .get).0.status == .ok)
        }
    }
}
