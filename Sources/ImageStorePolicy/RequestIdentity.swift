import Foundation

/// Who is calling: what Keystone's token (or, under noauth, the identity headers) says about the
/// caller. Glance's `RequestContext` fields; the policy rules are evaluated against `credentials`.
public struct RequestIdentity: Sendable, Equatable {
    public var userID: String?
    public var userName: String?
    public var userDomainID: String?
    /// The project the token is scoped to: the owner of images the caller creates.
    public var projectID: String?
    public var projectName: String?
    public var projectDomainID: String?
    /// Set for a domain-scoped token (then there is no project).
    public var domainID: String?
    /// `all` for a system-scoped token.
    public var systemScope: String?
    /// Role names, lowercased (Glance lowercases them; `role:` checks are case-insensitive anyway).
    public var roles: [String]
    /// The service token's user, project and roles (`X-Service-Token`), when one was sent and is valid.
    public var serviceUserID: String?
    public var serviceProjectID: String?
    public var serviceRoles: [String]
    /// Glance's `context.is_admin`: the policy's `context_is_admin` rule holds for this caller (noauth
    /// callers without `X-Roles` are admin outright).
    public var isAdmin: Bool

    public init(
        userID: String? = nil, userName: String? = nil, userDomainID: String? = nil, projectID: String? = nil,
        projectName: String? = nil, projectDomainID: String? = nil, domainID: String? = nil, systemScope: String? = nil,
        roles: [String] = [], serviceUserID: String? = nil, serviceProjectID: String? = nil, serviceRoles: [String] = [],
        isAdmin: Bool = false
    ) {
        self.userID = userID
        self.userName = userName
        self.userDomainID = userDomainID
        self.projectID = projectID
        self.projectName = projectName
        self.projectDomainID = projectDomainID
        self.domainID = domainID
        self.systemScope = systemScope
        self.roles = roles.map { $0.lowercased() }
        self.serviceUserID = serviceUserID
        self.serviceProjectID = serviceProjectID
        self.serviceRoles = serviceRoles.map { $0.lowercased() }
        self.isAdmin = isAdmin
    }

    /// The noauth caller: admin (role `admin`) unless `X-Roles` names its roles, so the walk-through and
    /// development work without headers while policy can still be exercised with them.
    /// - Parameters:
    ///   - roles: the `X-Roles` header (comma-separated), or nil when absent.
    ///   - isAdmin: how the policy's `context_is_admin` judges the given roles (used only when `roles` is set).
    public static func noauth(
        userID: String?, projectID: String?, roles: String?, userDomainID: String? = nil, projectDomainID: String? = nil,
        isAdmin: (RequestIdentity) -> Bool
    ) -> RequestIdentity {
        var identity = RequestIdentity(
            userID: userID, userDomainID: userDomainID, projectID: projectID, projectDomainID: projectDomainID)
        guard let roles else {
            identity.roles = ["admin"]
            identity.isAdmin = true
            return identity
        }
        identity.roles = roles.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            .filter { !$0.isEmpty }
        identity.isAdmin = isAdmin(identity)
        return identity
    }

    /// What oslo.policy checks see (oslo.context's `to_policy_values`, with the deprecated `user`,
    /// `tenant` and `is_admin` keys Glance's older rules use).
    public var credentials: PolicyCredentials {
        PolicyCredentials([
            "user_id": .init(userID), "user": .init(userID), "user_domain_id": .init(userDomainID),
            "project_id": .init(projectID), "tenant": .init(projectID), "project_domain_id": .init(projectDomainID),
            "domain_id": .init(domainID), "system_scope": .init(systemScope), "roles": .list(roles),
            "service_user_id": .init(serviceUserID), "service_project_id": .init(serviceProjectID),
            "service_roles": .list(serviceRoles), "is_admin": .bool(isAdmin), "is_admin_project": .bool(true),
        ])
    }
}
