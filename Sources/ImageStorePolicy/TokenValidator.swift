import Foundation

/// What a valid token says: who its bearer is and until when the token is good.
public struct ValidatedToken: Sendable, Equatable {
    /// The bearer's identity (`isAdmin` is left false: the policy decides it).
    public var identity: RequestIdentity
    public var expiresAt: Date

    public init(identity: RequestIdentity, expiresAt: Date) {
        self.identity = identity
        self.expiresAt = expiresAt
    }
}

/// Checks bearer tokens (`X-Auth-Token`, `X-Service-Token`) with an identity service.
///
/// Implementations: `KeystoneTokenValidator` (Keystone v3), `CachingTokenValidator` (a bounded TTL
/// cache in front of any validator), and a fake in the test support. One conformance suite runs on all.
public protocol TokenValidator: Sendable {
    /// The token's identity.
    /// - Parameter allowExpired: accept a token that expired (only for a caller that also sent a
    ///   service token with a service role, as keystonemiddleware does).
    /// - Throws: `ImageStoreError` `.unauthorized` when the token is unknown, revoked or expired;
    ///   `.dependencyUnavailable` when the identity service cannot answer within its deadline.
    func validate(_ token: String, allowExpired: Bool) async throws -> ValidatedToken
}
