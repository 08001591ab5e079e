import Foundation
import ImageStoreCore
import ImageStorePolicy
import ImageStoreTestSupport
import Synchronization
import Testing

@testable import ImageStoreKeystone

/// The token cache's rules, on a fake validator and a hand-driven clock.
@Suite struct TokenCacheTests {
    final class Clock: Sendable {
        let time = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        var now: Date { time.withLock { $0 } }
        func advance(_ seconds: TimeInterval) { time.withLock { $0 = $0.addingTimeInterval(seconds) } }
    }

    func token(_ user: String, expiresIn seconds: TimeInterval, from clock: Clock) -> ValidatedToken {
        ValidatedToken(identity: RequestIdentity(userID: user, projectID: "p"), expiresAt: clock.now.addingTimeInterval(seconds))
    }

    @Test func validToken_isCachedForTheTTL_thenAskedAgain() async throws {
        let clock = Clock()
        let fake = StaticTokenValidator(["t": token("u", expiresIn: 100_000, from: clock)])
        let cache = CachingTokenValidator(fake, ttl: 300, capacity: 10, now: { clock.now })
        _ = try await cache.validate("t", allowExpired: false)
        _ = try await cache.validate("t", allowExpired: false)
        #expect(fake.calls == 1)
        // Keystone gone: the cached answer still serves until the TTL ends.
        fake.setUnavailable(true)
        clock.advance(299)
        #expect(try await cache.validate("t", allowExpired: false).identity.userID == "u")
        clock.advance(2)
        await #expect(throws: ImageStoreError.self) { try await cache.validate("t", allowExpired: false) }
        #expect(fake.calls == 2)
    }

    @Test func ttl_isCappedByTheTokensOwnExpiry() async throws {
        let clock = Clock()
        let fake = StaticTokenValidator(["t": token("u", expiresIn: 60, from: clock)])
        let cache = CachingTokenValidator(fake, ttl: 300, capacity: 10, now: { clock.now })
        _ = try await cache.validate("t", allowExpired: false)
        clock.advance(61)
        fake.revoke("t")
        await #expect(throws: ImageStoreError.self) { try await cache.validate("t", allowExpired: false) }
    }

    @Test func invalidAndAllowExpiredAnswers_areNeverCached_andZeroTTLCachesNothing() async throws {
        let clock = Clock()
        let fake = StaticTokenValidator(["t": token("u", expiresIn: 3600, from: clock)])
        let cache = CachingTokenValidator(fake, ttl: 300, capacity: 10, now: { clock.now })
        for _ in 0..<2 { _ = try? await cache.validate("bad", allowExpired: false) }
        #expect(fake.calls == 2)
        for _ in 0..<2 { _ = try await cache.validate("t", allowExpired: true) }
        #expect(fake.calls == 4)
        let uncached = CachingTokenValidator(fake, ttl: 0, capacity: 10, now: { clock.now })
        for _ in 0..<2 { _ = try await uncached.validate("t", allowExpired: false) }
        #expect(fake.calls == 6)
    }

    @Test func capacity_isBounded_oldestGoesFirst() async throws {
        let clock = Clock()
        let fake = StaticTokenValidator()
        for i in 0..<50 { fake.add("t\(i)", token("u\(i)", expiresIn: 3600, from: clock)) }
        let cache = CachingTokenValidator(fake, ttl: 300, capacity: 8, now: { clock.now })
        for i in 0..<50 { _ = try await cache.validate("t\(i)", allowExpired: false) }
        #expect(cache.cachedCount == 8)
        let before = fake.calls
        _ = try await cache.validate("t49", allowExpired: false)  // newest: cached
        #expect(fake.calls == before)
        _ = try await cache.validate("t0", allowExpired: false)  // oldest: evicted long ago
        #expect(fake.calls == before + 1)
        // Re-validating the same few tokens over and over keeps the bookkeeping bounded too.
        for round in 0..<2_000 {
            clock.advance(301)
            _ = try await cache.validate("t\(round % 3)", allowExpired: false)
        }
        #expect(cache.cachedCount <= 8)
    }
}

/// The pure parts of the Keystone validator: when its own token is replaced, where tokens are validated,
/// how Keystone's token documents are read.
@Suite struct KeystoneValidatorUnitTests {
    @Test func serviceToken_isReplacedShortlyBeforeItExpires() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        // An hour-long token: two minutes early.
        #expect(KeystoneTokenValidator.refreshTime(expiresAt: now.addingTimeInterval(3600), now: now) == now.addingTimeInterval(3480))
        // A short one: halfway through what is left.
        #expect(KeystoneTokenValidator.refreshTime(expiresAt: now.addingTimeInterval(60), now: now) == now.addingTimeInterval(30))
        // Already expired: at once.
        #expect(KeystoneTokenValidator.refreshTime(expiresAt: now.addingTimeInterval(-5), now: now) <= now)
    }

    @Test(arguments: [
        ("http://k:5000", "http://k:5000/v3/auth/tokens"), ("http://k:5000/", "http://k:5000/v3/auth/tokens"),
        ("http://k:5000/v3", "http://k:5000/v3/auth/tokens"), ("https://k/identity/v3/", "https://k/identity/v3/auth/tokens"),
        ("https://k/identity", "https://k/identity/v3/auth/tokens"),
    ])
    func tokensURL_withOrWithoutV3(base: String, url: String) {
        #expect(KeystoneTokenValidator.tokensURL(base) == url)
    }

    @Test func tokenDocument_projectDomainAndSystemScopes() throws {
        func validated(_ json: String) throws -> ValidatedToken {
            try JSONDecoder().decode(KeystoneTokenDocument.self, from: Data(json.utf8)).validated()
        }
        let project = try validated(
            #"{"token": {"expires_at": "2030-01-02T03:04:05.678901Z", "user": {"id": "u", "name": "alice", "domain": {"id": "default"}}, "project": {"id": "p", "name": "alpha", "domain": {"id": "default"}}, "roles": [{"id": "1", "name": "Member"}, {"id": "2", "name": "reader"}]}}"#
        )
        #expect(project.identity.userID == "u" && project.identity.projectID == "p" && project.identity.projectName == "alpha")
        #expect(project.identity.roles == ["member", "reader"] && project.identity.isProjectScoped)
        #expect(abs(project.expiresAt.timeIntervalSince1970 - 1_893_553_445.678901) < 0.001)
        let domain = try validated(#"{"token": {"expires_at": "2030-01-02T03:04:05Z", "user": {"id": "u"}, "domain": {"id": "d1"}, "roles": []}}"#)
        #expect(domain.identity.domainID == "d1" && domain.identity.projectID == nil && !domain.identity.isProjectScoped)
        let system = try validated(#"{"token": {"expires_at": "2030-01-02T03:04:05Z", "user": {"id": "u"}, "system": {"all": true}, "roles": [{"name": "admin"}]}}"#)
        #expect(system.identity.systemScope == "all" && !system.identity.isProjectScoped)
        #expect(throws: (any Error).self) { try validated(#"{"token": {"expires_at": "soon"}}"#) }
    }

    @Test func catalog_picksTheIdentityEndpointForInterfaceAndRegion() throws {
        let document = try JSONDecoder().decode(
            KeystoneTokenDocument.self,
            from: Data(
                #"{"token": {"expires_at": "2030-01-02T03:04:05Z", "catalog": [{"type": "image", "endpoints": [{"interface": "internal", "url": "http://img"}]}, {"type": "identity", "endpoints": [{"interface": "public", "url": "http://pub:5000/v3", "region_id": "R1"}, {"interface": "internal", "url": "http://int1:5000", "region_id": "R1"}, {"interface": "internal", "url": "http://int2:5000", "region_id": "R2"}]}]}}"#
                    .utf8))
        #expect(document.identityEndpoint(interface: "internal", region: "R2") == "http://int2:5000")
        #expect(document.identityEndpoint(interface: "internal", region: nil) == "http://int1:5000")
        #expect(document.identityEndpoint(interface: "public", region: "R1") == "http://pub:5000/v3")
        #expect(document.identityEndpoint(interface: "admin", region: nil) == nil)
    }
}
