import Foundation
import ImageStorePolicy
import Synchronization

/// A bounded, time-limited cache of valid tokens in front of another validator: a token Keystone
/// confirmed is trusted for `min(token_cache_time, its own expiry)` without asking again, so the API
/// keeps serving known callers while Keystone is down or slow. Invalid tokens are never cached, and
/// tokens validated with `allowExpired` neither.
public final class CachingTokenValidator: TokenValidator {
    let base: any TokenValidator
    let cache: TokenCache
    let ttl: TimeInterval
    let now: @Sendable () -> Date

    /// - Parameters:
    ///   - ttl: `token_cache_time` in seconds; 0 or less turns caching off.
    ///   - capacity: the most tokens kept; the oldest entries go first.
    public init(_ base: any TokenValidator, ttl: TimeInterval, capacity: Int, now: @escaping @Sendable () -> Date = { Date() }) {
        self.base = base
        self.cache = TokenCache(capacity: max(1, capacity))
        self.ttl = ttl
        self.now = now
    }

    public func validate(_ token: String, allowExpired: Bool) async throws -> ValidatedToken {
        if !allowExpired, let hit = cache.get(token, at: now()) { return hit }
        let validated = try await base.validate(token, allowExpired: allowExpired)
        let time = now()
        if ttl > 0, !allowExpired, validated.expiresAt > time {
            cache.put(token, validated, until: min(time.addingTimeInterval(ttl), validated.expiresAt))
        }
        return validated
    }

    /// How many tokens are cached now (expired entries included until they are looked up or pushed out).
    public var cachedCount: Int { cache.count }
}

/// Token → validation result until a time, at most `capacity` entries, evicted oldest-first.
final class TokenCache: Sendable {
    private struct Entry {
        var value: ValidatedToken
        var until: Date
        var sequence: Int
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Insertion order, for eviction; stale pairs (a token re-inserted since) are skipped.
        var order: [(token: String, sequence: Int)] = []
        var head = 0
        var nextSequence = 0
    }

    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { state.withLock { $0.entries.count } }

    func get(_ token: String, at time: Date) -> ValidatedToken? {
        state.withLock { state in
            guard let entry = state.entries[token] else { return nil }
            guard entry.until > time else {
                state.entries[token] = nil
                return nil
            }
            return entry.value
        }
    }

    func put(_ token: String, _ value: ValidatedToken, until: Date) {
        state.withLock { state in
            let sequence = state.nextSequence
            state.nextSequence += 1
            state.entries[token] = Entry(value: value, until: until, sequence: sequence)
            state.order.append((token, sequence))
            while state.entries.count > capacity, state.head < state.order.count {
                let (oldest, oldestSequence) = state.order[state.head]
                state.head += 1
                if state.entries[oldest]?.sequence == oldestSequence { state.entries[oldest] = nil }
            }
            // Re-inserted tokens leave stale pairs behind: rebuild the order from the live entries when
            // stale ones dominate, so it stays proportional to the cache.
            if state.order.count - state.head > 2 * capacity + 16 {
                state.order = state.entries.map { (token: $0.key, sequence: $0.value.sequence) }.sorted { $0.sequence < $1.sequence }
                state.head = 0
            }
        }
    }
}
