import Foundation
import Hummingbird
import ImageStoreCore
import ImageStorePolicy
import Logging
import NIOCore
import Synchronization

/// Per-request state: the request id every response and log line carries, and who is calling.
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// `req-<uuid>`, returned as `x-openstack-request-id`.
    public var requestID: String
    /// Who is calling (set by `AuthMiddleware` from the Keystone token or the noauth headers). Until then,
    /// and on the unauthenticated routes, the noauth admin.
    public var identity: RequestIdentity
    /// The policy every handler asks (`authorize`); set by `AuthMiddleware`.
    public var policy: PolicyEnforcer
    /// The TCP peer, for `allowed_source_ranges`.
    public let remoteAddress: SocketAddress?
    /// The server port the request arrived on (oslo's `req.server_port`, for `disable_by_files_ports`).
    public let localPort: Int?
    /// The connection, for a download sent with `sendfile` past the response writer.
    let channel: any Channel
    /// Who the caller turned out to be, for the request's one log line: the request middleware logs after
    /// the inner middleware returned, and a context's changes do not travel back up the chain.
    public let logFacts = RequestLogFacts()

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.requestID = "req-" + UUID().lowercasedString
        self.identity = RequestIdentity(roles: ["admin"], isAdmin: true)
        self.policy = .glanceDefaults
        self.remoteAddress = source.channel.remoteAddress
        self.localPort = source.channel.localAddress?.port
        self.channel = source.channel
    }

    /// The caller's project: owner of the images it creates.
    public var projectID: String? { identity.projectID }
    /// The caller's user (nil under noauth without `X-User-Id`).
    public var userID: String? { identity.userID }
    /// Glance's `context.is_admin` (the `context_is_admin` rule).
    public var isAdmin: Bool { identity.isAdmin }

    /// JSON routes read at most this much; larger bodies are 413 before being read whole.
    public var maxUploadSize: Int { 1 << 20 }
}

/// Log metadata learnt inside the middleware chain (the authenticated user and project) for the
/// request's log line written outside it.
public final class RequestLogFacts: Sendable {
    private let metadata = Mutex<Logger.Metadata>([:])

    public init() {}

    public subscript(key: String) -> String? {
        get { metadata.withLock { $0[key].map { "\($0)" } } }
        set { metadata.withLock { $0[key] = newValue.map { .string($0) } } }
    }

    public var all: Logger.Metadata { metadata.withLock { $0 } }
}

// MARK: Policy enforcement — the one call a handler makes

extension AppRequestContext {
    /// Enforces one of Glance's policy rules (by Glance's name: `add_metadef_namespace`, `get_task`, …)
    /// for this caller: throws 403 when the rule denies. `target` is what the rule's `%(…)s` read;
    /// by default the caller's own project (`{"project_id": <caller's project>}`), as Glance passes
    /// for actions that are not about an existing object. For images use `ImageAccess`, which also
    /// hides images the caller may not see behind 404.
    ///
    /// ```swift
    /// try context.authorize("add_metadef_namespace")
    /// try context.authorize("get_metadef_namespace", ["project_id": namespace.owner, "visibility": namespace.visibility])
    /// ```
    public func authorize(_ action: String, _ target: PolicyTarget? = nil) throws {
        guard try allows(action, target) else {
            throw ImageStoreError.forbidden("You are not authorized to complete \(action) action.")
        }
    }

    /// Whether the policy allows `action` on `target` (default: the caller's project), without throwing
    /// when it does not (Glance's soft `check`).
    public func allows(_ action: String, _ target: PolicyTarget? = nil) throws -> Bool {
        do {
            return try policy.allows(action, identity: identity, target: target ?? .project(identity.projectID))
        } catch {
            // An action name that is not a rule is a bug in the handler, as in Glance (500).
            throw ImageStoreError.internal("\(error)")
        }
    }
}
