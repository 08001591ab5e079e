import Foundation
import ImageStoreCore
import ImageStorePolicy
import Synchronization

/// A `TokenValidator` that knows a fixed set of tokens: for unit tests of what sits in front of
/// Keystone (the cache, the auth middleware's rules). It counts the calls that reach it, and can be
/// told to fail as an unreachable Keystone does.
public final class StaticTokenValidator: TokenValidator {
    private let state: Mutex<(tokens: [String: ValidatedToken], calls: Int, unavailable: Bool)>

    public init(_ tokens: [String: ValidatedToken] = [:]) {
        state = Mutex((tokens, 0, false))
    }

    public func add(_ token: String, _ validated: ValidatedToken) { state.withLock { $0.tokens[token] = validated } }
    public func revoke(_ token: String) { state.withLock { $0.tokens[token] = nil } }
    /// While true, every call throws `.dependencyUnavailable`.
    public func setUnavailable(_ unavailable: Bool) { state.withLock { $0.unavailable = unavailable } }
    public var calls: Int { state.withLock { $0.calls } }

    public func validate(_ token: String, allowExpired: Bool) async throws -> ValidatedToken {
        let (found, unavailable) = state.withLock { state in
            state.calls += 1
            return (state.tokens[token], state.unavailable)
        }
        if unavailable { throw ImageStoreError(.dependencyUnavailable, "The Keystone service is temporarily unavailable.") }
        guard let found, allowExpired || found.expiresAt > Date() else {
            throw ImageStoreError(.unauthorized, "The request you have made requires authentication.")
        }
        return found
    }
}
