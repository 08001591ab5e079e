import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import NIOCore
import ImageStoreCore
import ImageStoreTestSupport
import Testing

/// Issue #8, "the right share": a real ganesha share bind-mounted on the store directory whose marker
/// is swapped for another share's; writes answer 410 naming both ids, /healthcheck says WRONG SHARE,
/// and everything comes back when the right share does.
@Suite(.serialized, GaneshaServer.requiredTrait)
struct WrongShareAPITests {
    static let idA = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
    static let idB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"

    static func putMarker(_ id: String, _ share: GuardedShare) throws {
        try "# test marker\nstore_id = \(id)\ncreated_at = 2026-01-01T00:00:00Z\n"
            .write(toFile: share.markerPath, atomically: true, encoding: .utf8)
    }

    /// Polls `/healthcheck` until it answers `status` (at most 10 s); returns the last answer.
    static func healthcheck(_ client: any TestClientProtocol, until status: HTTPResponse.Status) async throws -> TestResponse {
        let end = ContinuousClock.now + .seconds(10)
        while true {
            let response = try await client.execute(uri: "/healthcheck", method: .get)
            if response.status == status || ContinuousClock.now > end { return response }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test func otherSharesMarker_writes410NamingBothIDs_healthSaysWrongShare_thenBack() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try Self.putMarker(Self.idA, share)
        var configuration = share.configuration()
        configuration.healthcheck.backends = ["store"]
        configuration.healthcheck.checkInterval = .milliseconds(200)
        try await share.run(configuration) { client in
            try await client.waitForGuard("enabled")
            let kept = try await client.createImage()
            let keptData = randomBytes(50_000)
            #expect(try await client.upload(kept, keptData).status == .noContent)

            // Another share (its marker has another id) at the same path.
            try Self.putMarker(Self.idB, share)
            try await client.waitForGuard("disabled")
            let id = try await client.createImage()
            let refused = try await client.upload(id, randomBytes(10_000))
            #expect(refused.status == .gone)
            let message = String(buffer: refused.body)
            #expect(message.contains("wrong share: marker id \(Self.idB), expected \(Self.idA)"), "\(message)")
            #expect(try await client.status(of: id) == "queued")
            #expect(try await client.delete(kept).status == .gone)
            #expect(share.shareBytes(id) == nil)

            // The health monitor's next round (every 0.2 s) sees it.
            let health = try await Self.healthcheck(client, until: .serviceUnavailable)
            #expect(health.status == .serviceUnavailable)
            #expect(String(buffer: health.body).contains("WRONG SHARE"), "\(String(buffer: health.body))")

            // The right share is back: writes work again without a restart.
            try Self.putMarker(Self.idA, share)
            try await client.waitForGuard("enabled")
            #expect(try await client.upload(id, keptData).status == .noContent)
            #expect(share.shareBytes(id) == keptData)
            #expect(try await Self.healthcheck(client, until: .ok).status == .ok)
        }
    }

    @Test func restartWithTheOtherShare_staysRefused_theIDIsInTheDatabase() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try Self.putMarker(Self.idA, share)
        let configuration = share.configuration()
        try await share.run(configuration) { client in try await client.waitForGuard("enabled") }
        try Self.putMarker(Self.idB, share)
        try await share.run(configuration) { client in
            // The reason of the check that disabled it (a later check may time out on a loaded machine).
            let reason = try await client.waitForGuard("disabled")?["reason"]?.stringValue
            #expect(reason == "wrong share: marker id \(Self.idB), expected \(Self.idA)")
        }
    }
}
