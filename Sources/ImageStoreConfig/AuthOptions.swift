/// How callers are identified: `[paste_deploy] flavor`.
public enum AuthFlavor: String, Sendable, Equatable {
    /// No authentication: identity from `X-User-Id`/`X-Project-Id`/`X-Roles`, admin without `X-Roles`.
    /// For development only (the server warns at start-up).
    case noauth
    /// Keystone v3 tokens (`X-Auth-Token`), validated with `[keystone_authtoken]`.
    case keystone
}

/// `[keystone_authtoken]`, with keystonemiddleware's option names. Only `auth_type = password` is
/// implemented: the service logs in with its own user and validates callers' tokens with it.
public struct KeystoneAuthOptions: Sendable, Equatable {
    /// `www_authenticate_uri`: what 401 answers tell clients to authenticate against; defaults to `auth_url`.
    public var wwwAuthenticateURI: String?
    /// `auth_url`: the Keystone base URL the service logs in at (e.g. `http://keystone:5000/v3` or without `/v3`).
    public var authURL: String
    public var authType: String
    public var username: String
    public var password: String
    public var projectName: String?
    public var projectID: String?
    public var userDomainName: String?
    public var userDomainID: String?
    public var projectDomainName: String?
    public var projectDomainID: String?
    /// `region_name` and `interface`: which identity endpoint of the catalog validates tokens (the
    /// `auth_url` when the catalog has none).
    public var regionName: String?
    public var interface: String
    /// `service_token_roles`: a service token (`X-Service-Token`) needs one of these roles…
    public var serviceTokenRoles: [String]
    /// `service_token_roles_required`: …to count as valid at all (otherwise only to allow expired user tokens).
    public var serviceTokenRolesRequired: Bool
    /// `token_cache_time` (whole seconds): how long a validated token is trusted without asking Keystone (capped
    /// by the token's own expiry); -1 or 0 turns the cache off.
    public var tokenCacheTime: Duration
    /// `token_cache_size`: the most tokens kept in the cache (ImageStore's option; the cache is in memory).
    public var tokenCacheSize: Int
    /// `http_connect_timeout` (seconds): how long one whole Keystone call (connect, retries and answer) may take
    /// before the request is answered 503. keystonemiddleware waits forever by default; we do not.
    public var httpConnectTimeout: Duration
    /// `http_request_max_retries`: further attempts after a failed connection.
    public var httpRequestMaxRetries: Int
    /// `cafile` / `insecure`: TLS to Keystone.
    public var cafile: String?
    public var insecure: Bool

    public static let defaultInterface = "internal"
    public static let defaultTokenCacheTime: Duration = .seconds(300)
    public static let defaultTokenCacheSize = 10_000
    public static let defaultHTTPConnectTimeout: Duration = .seconds(10)
    public static let defaultHTTPRequestMaxRetries = 3
    public static let defaultServiceTokenRoles = ["service"]

    public init(
        authURL: String, username: String, password: String, wwwAuthenticateURI: String? = nil,
        authType: String = "password", projectName: String? = nil, projectID: String? = nil,
        userDomainName: String? = nil, userDomainID: String? = nil, projectDomainName: String? = nil,
        projectDomainID: String? = nil, regionName: String? = nil, interface: String = Self.defaultInterface,
        serviceTokenRoles: [String] = Self.defaultServiceTokenRoles, serviceTokenRolesRequired: Bool = true,
        tokenCacheTime: Duration = Self.defaultTokenCacheTime, tokenCacheSize: Int = Self.defaultTokenCacheSize,
        httpConnectTimeout: Duration = Self.defaultHTTPConnectTimeout,
        httpRequestMaxRetries: Int = Self.defaultHTTPRequestMaxRetries, cafile: String? = nil, insecure: Bool = false
    ) {
        self.authURL = authURL
        self.username = username
        self.password = password
        self.wwwAuthenticateURI = wwwAuthenticateURI
        self.authType = authType
        self.projectName = projectName
        self.projectID = projectID
        self.userDomainName = userDomainName
        self.userDomainID = userDomainID
        self.projectDomainName = projectDomainName
        self.projectDomainID = projectDomainID
        self.regionName = regionName
        self.interface = interface
        self.serviceTokenRoles = serviceTokenRoles
        self.serviceTokenRolesRequired = serviceTokenRolesRequired
        self.tokenCacheTime = tokenCacheTime
        self.tokenCacheSize = tokenCacheSize
        self.httpConnectTimeout = httpConnectTimeout
        self.httpRequestMaxRetries = httpRequestMaxRetries
        self.cafile = cafile
        self.insecure = insecure
    }

    /// The URI 401 answers name.
    public var authenticateURI: String { wwwAuthenticateURI ?? authURL }

    enum Key {
        static let wwwAuthenticateURI = "www_authenticate_uri"
        /// keystonemiddleware's deprecated name for `www_authenticate_uri`.
        static let authURI = "auth_uri"
        static let authURL = "auth_url"
        static let authType = "auth_type"
        static let username = "username"
        static let password = "password"
        static let projectName = "project_name"
        static let projectID = "project_id"
        static let userDomainName = "user_domain_name"
        static let userDomainID = "user_domain_id"
        static let projectDomainName = "project_domain_name"
        static let projectDomainID = "project_domain_id"
        static let regionName = "region_name"
        static let interface = "interface"
        static let serviceTokenRoles = "service_token_roles"
        static let serviceTokenRolesRequired = "service_token_roles_required"
        static let tokenCacheTime = "token_cache_time"
        static let tokenCacheSize = "token_cache_size"
        static let httpConnectTimeout = "http_connect_timeout"
        static let httpRequestMaxRetries = "http_request_max_retries"
        static let cafile = "cafile"
        static let insecure = "insecure"

        static let all: Set<String> = [
            wwwAuthenticateURI, authURI, authURL, authType, username, password, projectName, projectID, userDomainName,
            userDomainID, projectDomainName, projectDomainID, regionName, interface, serviceTokenRoles,
            serviceTokenRolesRequired, tokenCacheTime, tokenCacheSize, httpConnectTimeout, httpRequestMaxRetries,
            cafile, insecure,
        ]
        /// keystonemiddleware options ImageStore accepts without implementing them (a warning each).
        static let notImplemented: Set<String> = [
            "auth_version", "delay_auth_decision", "cache", "certfile", "keyfile", "memcached_servers",
            "memcache_security_strategy", "memcache_secret_key", "memcache_tls_enabled", "memcache_tls_cafile",
            "memcache_tls_certfile", "memcache_tls_keyfile", "memcache_tls_allowed_ciphers", "memcache_pool_dead_retry",
            "memcache_pool_maxsize", "memcache_pool_socket_timeout", "memcache_pool_unused_timeout",
            "memcache_pool_conn_get_timeout", "memcache_use_advanced_pool", "include_service_catalog",
            "enforce_token_bind", "service_type", "memcache_sasl_enabled", "memcache_username", "memcache_password",
            "auth_section", "system_scope", "domain_id", "domain_name", "trust_id", "default_domain_id",
            "default_domain_name", "user_id",
        ]
    }
}

/// `[oslo_policy]`: where Glance-style policy overrides come from.
public struct PolicyOptions: Sendable, Equatable {
    /// `policy_file`: a YAML (or JSON) file of rule overrides. When not set, `policy.yaml` next to the
    /// configuration file is used if it exists, as oslo.config finds it in the config directory.
    public var policyFile: String?
    /// Whether `policy_file` was set explicitly (then a missing file stops start-up).
    public var policyFileIsExplicit: Bool
    /// `enforce_scope`: refuse system- and domain-scoped tokens (every Glance rule is project-scoped).
    public var enforceScope: Bool

    public static let defaultPolicyFileName = "policy.yaml"

    public init(policyFile: String? = nil, policyFileIsExplicit: Bool = false, enforceScope: Bool = true) {
        self.policyFile = policyFile
        self.policyFileIsExplicit = policyFileIsExplicit
        self.enforceScope = enforceScope
    }

    /// Every `[oslo_policy]` option name (for the SIGHUP reload, which reloads the policy).
    public static var optionNames: Set<String> { Key.all }

    enum Key {
        static let policyFile = "policy_file"
        static let enforceScope = "enforce_scope"
        static let enforceNewDefaults = "enforce_new_defaults"
        static let all: Set<String> = [policyFile, enforceScope, enforceNewDefaults]
        static let notImplemented: Set<String> = [
            "policy_default_rule", "policy_dirs", "remote_content_type", "remote_ssl_verify_server_crt",
            "remote_ssl_ca_crt_file", "remote_ssl_client_crt_file", "remote_ssl_client_key_file", "remote_timeout",
        ]
    }
}

/// Glance's per-image limits (`[DEFAULT]`): more than this many is 413. A negative value means unlimited.
public struct ImageLimits: Sendable, Equatable {
    /// `image_property_quota`: custom properties per image (`os_glance_*` ones not counted).
    public var properties: Int
    /// `image_tag_quota`: tags per image.
    public var tags: Int
    /// `image_member_quota`: members per image.
    public var members: Int
    /// `image_location_quota`: locations per image (ImageStore does not let clients set locations, so
    /// this is only validated).
    public var locations: Int

    public static let defaultProperties = 128
    public static let defaultTags = 128
    public static let defaultMembers = 128
    public static let defaultLocations = 10

    public init(
        properties: Int = Self.defaultProperties, tags: Int = Self.defaultTags, members: Int = Self.defaultMembers,
        locations: Int = Self.defaultLocations
    ) {
        self.properties = properties
        self.tags = tags
        self.members = members
        self.locations = locations
    }

    /// The limit as the repository takes it: nil for unlimited.
    public static func bounded(_ value: Int) -> Int? { value < 0 ? nil : value }

    enum Key {
        static let properties = "image_property_quota"
        static let tags = "image_tag_quota"
        static let members = "image_member_quota"
        static let locations = "image_location_quota"
        static let all: Set<String> = [properties, tags, members, locations]
    }
}
