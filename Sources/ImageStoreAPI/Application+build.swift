import Foundation
import Hummingbird
import HummingbirdCore
import ImageStoreConfig
import ImageStoreCore
import ImageStoreGuard
import ImageStoreHealth
import ImageStoreKeystone
import ImageStoreNFS
import ImageStoreMetadata
import ImageStorePolicy
import ImageStoreStorage
import Logging
import NIOCore
import ServiceLifecycle

/// The parts the API runs on. `buildApplication` makes them from the configuration; tests may pass
/// their own (in-memory repository and store, a scripted guard).
public struct ApplicationDependencies: Sendable {
    public var repository: any ImageRepository
    /// The metadata definitions catalogue; by default beside the images (the same SQLite database).
    public var metadefs: any MetadefRepository
    /// Glance's tasks; by default beside the images.
    public var tasks: any TaskRepository
    public var store: any ImageDataStore
    public var writeGuard: any WriteGuard
    /// Validates callers' tokens under the keystone flavor; made from `[keystone_authtoken]` when nil.
    public var tokenValidator: (any TokenValidator)?
    /// Long-running background work (monitors) started with the server and stopped with it.
    public var services: [any Service]

    public init(
        repository: any ImageRepository, store: any ImageDataStore, writeGuard: any WriteGuard = UnguardedStore(),
        tokenValidator: (any TokenValidator)? = nil, services: [any Service] = [], metadefs: (any MetadefRepository)? = nil,
        tasks: (any TaskRepository)? = nil
    ) {
        self.repository = repository
        self.metadefs = metadefs ?? Self.metadefs(beside: repository)
        if let tasks {
            self.tasks = tasks
        } else if let sqlite = repository as? SQLiteImageRepository {
            self.tasks = SQLiteTaskRepository(sharing: sqlite, logger: Logger(label: "imagestore.metadata"))
        } else {
            self.tasks = InMemoryTaskRepository()
        }
        self.store = store
        self.writeGuard = writeGuard
        self.tokenValidator = tokenValidator
        self.services = services
    }

    /// SQLite + filesystem store from the configuration.
    public static func make(from configuration: ServiceConfiguration, logger: Logger) throws -> ApplicationDependencies {
        let repository = try makeRepository(configuration, logger: logger)
        let options = configuration.store
        // Like glance_store, create a missing plain directory; a guarded store (marker, mount) is the
        // admin's to provide, and creating it would write into the bare mountpoint.
        if !options.isNFSConfigured && !options.requireMountpoint {
            try FileManager.default.createDirectory(atPath: options.datadir, withIntermediateDirectories: true)
        }
        let store = FilesystemImageStore(
            directory: options.datadir, filePermissions: options.filePerm, chunkSize: options.chunkSize, logger: logger)
        // A deployed store (any configuration file) is guarded; the embedded default's ./data directory
        // is a plain local directory with no share to lose.
        guard configuration.sourcePath != nil || options.isNFSConfigured || options.requireMountpoint else {
            return ApplicationDependencies(repository: repository, store: store)
        }
        let mountGuard = try makeMountGuard(
            options, identity: StoreIdentityRecord(repository: repository, store: configuration.defaultBackend), logger: logger)
        return ApplicationDependencies(repository: repository, store: store, writeGuard: mountGuard, services: [mountGuard])
    }

    /// The catalogue kept with `repository`: in its SQLite database, or in memory beside an in-memory one.
    /// With PostgreSQL the metadefs catalogue is not persisted yet (in memory, per process): the
    /// PostgreSQL schema has no metadefs tables so far (docs/scaling.md).
    public static func metadefs(beside repository: any ImageRepository) -> any MetadefRepository {
        if let sqlite = repository as? SQLiteImageRepository {
            return SQLiteMetadefRepository(sharing: sqlite, logger: Logger(label: "imagestore.metadata"))
        }
        return InMemoryMetadefRepository()
    }

    /// The metadata database of the configuration (`[database] connection` and pool options).
    public static func makeRepository(_ configuration: ServiceConfiguration, logger: Logger) throws -> any ImageRepository {
        try makeRepository(configuration.database, options: configuration.databaseOptions, logger: logger)
    }

    /// The metadata repository for `[database] connection` (also used by `imagestore db`): SQLite (its
    /// directory created), or a pool to PostgreSQL (no connection opened yet: a database that is down
    /// makes requests answer 503 until it is back, it does not stop start-up).
    public static func makeRepository(
        _ location: DatabaseLocation, options: DatabaseOptions, logger: Logger
    ) throws -> any ImageRepository {
        switch location {
        case .sqlite(let path):
            if path != DatabaseLocation.memoryPath {
                try FileManager.default.createDirectory(
                    atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            }
            return try SQLiteImageRepository(path: path, logger: logger)
        case .postgresql(let url):
            logger.info("metadata database: PostgreSQL", metadata: ["url": "\(url)", "max_pool_size": "\(options.maxPoolSize)"])
            return try PostgresImageRepository(settings: .init(url, options: options), logger: logger)
        }
    }

    /// The mount guard for a store's options (also used by `imagestore check`, without `identity`).
    /// - Parameter identity: where the share's store id is recorded; nil accepts any share with a marker.
    public static func makeMountGuard(
        _ options: FilesystemStoreOptions, identity: StoreIdentityRecord? = nil, logger: Logger
    ) throws -> MountGuard {
        let settings: MountGuardSettings
        do {
            settings = try MountGuardSettings(options: options)
        } catch {
            throw ImageStoreError.badRequest("filesystem_nfs_mount_options: \(error)")
        }
        let probe = settings.nfsTarget.map { LibNFSProbe(target: $0, logger: logger) }
        return MountGuard(settings: settings, probe: probe, identity: identity, logger: logger)
    }
}

/// Assembles the ImageStore application: the only place where configuration, dependencies, routes,
/// middleware and background services are put together. `imagestore serve` and the tests call it.
public func buildApplication(
    configuration: ServiceConfiguration, dependencies: ApplicationDependencies? = nil, logger: Logger
) throws -> some ApplicationProtocol {
    var dependencies = try dependencies ?? .make(from: configuration, logger: logger)
    let policy = try makePolicy(configuration.policy, logger: logger)
    let authentication = try makeAuthentication(configuration, &dependencies, logger: logger)
    let service = ImageService(
        repository: dependencies.repository, store: dependencies.store, writeGuard: dependencies.writeGuard,
        limits: .init(
            imageSizeCap: configuration.imageSizeCap, userStorageQuota: configuration.userStorageQuota,
            reservedSpace: configuration.store.reservedSpace),
        requireFormatMatch: configuration.requireImageFormatMatch, logger: logger)

    let healthMonitor = HealthMonitor(
        options: configuration.healthcheck, mountGuard: dependencies.writeGuard as? MountGuard,
        repository: dependencies.repository, logger: logger)
    let router = buildRouter(
        configuration: configuration, dependencies: dependencies, service: service, healthMonitor: healthMonitor,
        policy: policy, authentication: authentication, logger: logger
    ).router

    var app = Application(
        router: router,
        server: .http1(
            configuration: .init(
                additionalChannelHandlers: [ExpectContinueHandler()],
                idleTimeout: configuration.clientSocketTimeout > 0
                    ? .milliseconds(Int64(configuration.clientSocketTimeout * 1000)) : nil)),
        configuration: .init(
            address: .hostname(configuration.bindHost, port: configuration.bindPort), serverName: "imagestore"),
        services: dependencies.services + [healthMonitor],
        logger: logger
    )
    let mountGuard = dependencies.writeGuard as? MountGuard
    app.beforeServerStarts {
        // The first guard check before serving; a failure only disables the store (writes 410).
        if let mountGuard {
            let state = await mountGuard.runAllChecks()
            if state.enabled {
                logger.info("store enabled: every guard check passes")
            } else {
                logger.error("store disabled at start-up", metadata: ["reason": "\(state.reason ?? "")"])
            }
        }
        // The first health round before serving, so the first probe answers with a real result.
        await healthMonitor.runRound()
        // Never fatal: with the share missing the service must still start (store disabled).
        guard let report = try? await service.recoverAfterRestart() else {
            logger.warning("start-up recovery skipped: the store is not reachable")
            return
        }
        logger.info(
            "start-up recovery done",
            metadata: [
                "uploads_reset": "\(report.uploadsReset)", "temp_files_removed": "\(report.temporaryFilesRemoved)",
                "deletes_finished": "\(report.deletesFinished)", "orphans_removed": "\(report.orphanedDataRemoved)",
                "missing_data_reset": "\(report.missingDataReset)", "store_checked": "\(report.storeChecked)",
            ])
    }
    return app
}

/// noauth (with its start-up warning), or Keystone: the dependencies' validator, else one made from
/// `[keystone_authtoken]` (Keystone behind a bounded token cache; its HTTP client becomes a service).
func makeAuthentication(
    _ configuration: ServiceConfiguration, _ dependencies: inout ApplicationDependencies, logger: Logger
) throws -> Authentication {
    guard configuration.authFlavor == .keystone, let options = configuration.keystone else {
        logger.warning(
            "authentication is OFF ([paste_deploy] flavor = noauth): a request without X-Roles is admin; for development only")
        return .noauth
    }
    let validator: any TokenValidator
    if let given = dependencies.tokenValidator {
        validator = given
    } else {
        let client = try KeystoneTokenValidator.makeHTTPClient(options)
        dependencies.services.append(HTTPClientService(client: client))
        let keystone = KeystoneTokenValidator(options: options, httpClient: client, logger: logger)
        validator = CachingTokenValidator(keystone, ttl: TimeInterval(options.tokenCacheTime), capacity: options.tokenCacheSize)
        dependencies.tokenValidator = validator
    }
    logger.info("authentication: Keystone", metadata: ["auth_url": "\(options.authURL)", "token_cache_time": "\(options.tokenCacheTime)"])
    return .keystone(
        KeystoneAuthentication(
            validator: validator, serviceTokenRoles: Set(options.serviceTokenRoles),
            serviceTokenRolesRequired: options.serviceTokenRolesRequired, authenticateURI: options.authenticateURI))
}

/// Glance's default policy with the rules of `[oslo_policy] policy_file` over it. An explicit file must
/// exist; the implicit `policy.yaml` next to the configuration file is used when present. A rule that
/// does not parse stops start-up, naming the file and the rule.
func makePolicy(_ options: PolicyOptions, logger: Logger) throws -> PolicyEnforcer {
    guard let path = options.policyFile, options.policyFileIsExplicit || FileManager.default.fileExists(atPath: path) else {
        return try PolicyEnforcer(enforceScope: options.enforceScope)
    }
    let policy = try PolicyEnforcer.load(policyFile: path, enforceScope: options.enforceScope)
    logger.info(
        "policy file loaded",
        metadata: [
            "path": "\(path)", "overridden": "\(policy.overridden.joined(separator: ","))",
            "added": "\(policy.added.joined(separator: ","))",
        ])
    return policy
}

/// Every route the application serves, as (method, OpenAPI-style path template), in registration
/// order. Built by the same code as `buildApplication` (on in-memory dependencies, so nothing is
/// opened or created), so the OpenAPI document can be checked against what the server really routes.
public func registeredRoutes(configuration: ServiceConfiguration) -> [(method: String, path: String)] {
    let dependencies = ApplicationDependencies(repository: InMemoryImageRepository(), store: InMemoryImageStore())
    var logger = Logger(label: "imagestore.routes")
    logger.logLevel = .critical
    let service = ImageService(
        repository: dependencies.repository, store: dependencies.store, writeGuard: dependencies.writeGuard, logger: logger)
    // Never started: only its routes are wanted.
    let healthMonitor = HealthMonitor(
        options: configuration.healthcheck, mountGuard: nil, repository: dependencies.repository, logger: logger)
    return buildRouter(
        configuration: configuration, dependencies: dependencies, service: service, healthMonitor: healthMonitor,
        policy: .glanceDefaults, authentication: .noauth, logger: logger
    ).entries.map { (method: $0.method.rawValue, path: $0.path) }
}

/// The router with every controller's routes and the 405 answers; `buildApplication` and
/// `registeredRoutes` both use it, so the route list has a single source.
func buildRouter(
    configuration: ServiceConfiguration, dependencies: ApplicationDependencies, service: ImageService,
    healthMonitor: HealthMonitor, policy: PolicyEnforcer, authentication: Authentication, logger: Logger
) -> RouteTable {
    let router = Router(context: AppRequestContext.self)
    router.add(middleware: RequestMiddleware(logger: logger))
    router.add(middleware: AuthMiddleware(policy: policy, authentication: authentication))
    let routes = RouteTable(router: router)
    let multiStore = configuration.isMultiStore
    let access = ImageAccess(repository: dependencies.repository)
    VersionsController().addRoutes(to: routes)
    SchemasController().addRoutes(to: routes)
    ImagesController(
        repository: dependencies.repository, service: service, access: access, limits: configuration.imageLimits,
        storeID: multiStore ? configuration.defaultBackend : nil
    ).addRoutes(to: routes)
    ImageDataController(access: access, service: service).addRoutes(to: routes)
    MembersController(repository: dependencies.repository, access: access, limits: configuration.imageLimits).addRoutes(to: routes)
    MetadefsController(repository: dependencies.metadefs).addRoutes(to: routes)
    TasksController(repository: dependencies.tasks, access: access).addRoutes(to: routes)
    InfoController(
        backends: !multiStore ? [] : configuration.enabledBackends.map { ($0.id, $0.id == configuration.defaultBackend ? configuration.store.description : nil) },
        defaultBackend: configuration.defaultBackend, datadir: configuration.store.datadir,
        chunkSize: configuration.store.chunkSize, guardState: { (dependencies.writeGuard as? MountGuard)?.state }
    ).addRoutes(to: routes)
    HealthcheckController(monitor: healthMonitor, options: configuration.healthcheck).addRoutes(to: routes)
    routes.finish()
    return routes
}

extension PostgresImageRepository.Settings {
    /// The repository's settings for a `[database]` section.
    public init(_ url: PostgresURL, options: DatabaseOptions) {
        let tls: TLS =
            switch url.tlsMode {
            case .disable: .disable
            case .allow, .prefer: .prefer
            case .require: .require
            case .verifyCA: .verify(hostname: false)
            case .verifyFull: .verify(hostname: true)
            }
        self.init(
            host: url.host, port: url.port, unixSocketDirectory: url.unixSocketDirectory, username: url.username,
            password: url.password, database: url.database, tls: tls, rootCertificatePath: url.rootCertificatePath,
            maxConnections: options.maxPoolSize, timeout: .milliseconds(Int64((options.poolTimeout * 1000).rounded())))
    }
}
