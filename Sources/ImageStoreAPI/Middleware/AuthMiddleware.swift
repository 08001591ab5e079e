import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreCore
import ImageStorePolicy
import Logging

/// How callers are identified (`[paste_deploy] flavor`).
public enum Authentication: Sendable {
    /// Identity from `X-User-Id`, `X-Project-Id` (or `X-Tenant-Id`) and `X-Roles`; without `X-Roles`
    /// the caller is admin, so development and the README's walk-through need no headers.
    case noauth
    /// Keystone tokens, as keystonemiddleware's `auth_token` checks them.
    case keystone(KeystoneAuthentication)
}

/// keystonemiddleware's rules for a request: `X-Auth-Token` must be valid; an `X-Service-Token` must
/// be valid too (and carry a service role when `service_token_roles_required`), and a service token
/// with a service role lets an expired user token through.
public struct KeystoneAuthentication: Sendable {
    public var validator: any TokenValidator
    public var serviceTokenRoles: Set<String>
    public var serviceTokenRolesRequired: Bool
    /// `www_authenticate_uri`, named in every 401's `WWW-Authenticate: Keystone uri="…"`.
    public var authenticateURI: String

    public init(validator: any TokenValidator, serviceTokenRoles: Set<String>, serviceTokenRolesRequired: Bool, authenticateURI: String) {
        self.validator = validator
        self.serviceTokenRoles = serviceTokenRoles
        self.serviceTokenRolesRequired = serviceTokenRolesRequired
        self.authenticateURI = authenticateURI
    }

    /// Everything under `/v2` needs a token; `/`, `/versions` and the health routes do not (as in Glance).
    static func requiresToken(_ path: String) -> Bool { path == "/v2" || path.hasPrefix("/v2/") }

    func identity(_ headers: HTTPFields) async throws -> RequestIdentity {
        var service: RequestIdentity?
        var allowExpired = false
        if let serviceToken = headers[.serviceToken], !serviceToken.isEmpty {
            let validated = try await validator.validate(serviceToken, allowExpired: false).identity
            let hasServiceRole = !serviceTokenRoles.isDisjoint(with: validated.roles)
            if serviceTokenRolesRequired && !hasServiceRole {
                throw ImageStoreError(.unauthorized, "The service token does not carry a service role.")
            }
            service = validated
            allowExpired = hasServiceRole
        }
        guard let userToken = headers[.authToken] ?? headers[.storageToken], !userToken.isEmpty else {
            throw ImageStoreError(.unauthorized, "The request you have made requires authentication.")
        }
        var identity = try await validator.validate(userToken, allowExpired: allowExpired).identity
        if let service {
            identity.serviceUserID = service.userID
            identity.serviceProjectID = service.projectID
            identity.serviceRoles = service.roles
        }
        return identity
    }

    /// A 401 as keystonemiddleware answers it: the error table's JSON body plus where to authenticate.
    func challenge(_ error: any Error) -> any Error {
        var apiError = APIError(error)
        guard apiError.status == .unauthorized else { return error }
        apiError.headers[.wwwAuthenticate] = "Keystone uri=\"\(authenticateURI)\""
        return apiError
    }
}

/// Puts the caller's identity and the policy into the request context, as Glance's auth and context
/// middleware do, before any handler runs. `context_is_admin` decides `isAdmin` for every caller but
/// the noauth one without `X-Roles`.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    /// Replaced by SIGHUP (policy file reloaded); each request uses the one it read first.
    let policies: Reloadable<PolicyEnforcer>
    let authentication: Authentication

    func handle(
        _ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response
    )
        async throws -> Response
    {
        var context = context
        let policy = policies.value
        context.policy = policy
        switch authentication {
        case .noauth:
            context.identity = Self.noauthIdentity(request.headers, policy: policy)
            // Only what the caller said: the anonymous noauth admin has no user to name.
            if let user = context.identity.userID { context.logger[metadataKey: "user_id"] = .string(user) }
            if let project = context.identity.projectID { context.logger[metadataKey: "project_id"] = .string(project) }
        case .keystone(let keystone):
            guard KeystoneAuthentication.requiresToken(request.uri.path) else {
                context.identity = RequestIdentity()  // anonymous: the open routes ask no policy
                return try await next(request, context)
            }
            do {
                var identity = try await keystone.identity(request.headers)
                identity.isAdmin = policy.isAdmin(identity)
                context.identity = identity
            } catch {
                throw keystone.challenge(error)
            }
            context.logger[metadataKey: "user_id"] = .string(context.identity.userID ?? "-")
            context.logger[metadataKey: "project_id"] = .string(context.identity.projectID ?? "-")
        }
        context.logFacts["user_id"] = context.identity.userID
        context.logFacts["project_id"] = context.identity.projectID
        return try await next(request, context)
    }

    static func noauthIdentity(_ headers: HTTPFields, policy: PolicyEnforcer) -> RequestIdentity {
        func header(_ name: HTTPField.Name) -> String? { headers[name].flatMap { $0.isEmpty ? nil : $0 } }
        return RequestIdentity.noauth(
            userID: header(.userID), projectID: header(.projectID) ?? header(.tenantID), roles: headers[.roles],
            userDomainID: header(.userDomainID), projectDomainID: header(.projectDomainID), isAdmin: policy.isAdmin)
    }
}

extension HTTPField.Name {
    static let userID = Self("X-User-Id")!
    static let userDomainID = Self("X-User-Domain-Id")!
    static let projectDomainID = Self("X-Project-Domain-Id")!
    static let authToken = Self("X-Auth-Token")!
    /// Swift's old name for the user token; keystonemiddleware still reads it.
    static let storageToken = Self("X-Storage-Token")!
    static let serviceToken = Self("X-Service-Token")!
}
