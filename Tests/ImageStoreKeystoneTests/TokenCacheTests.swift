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
