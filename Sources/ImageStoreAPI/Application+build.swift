import Foundation
import Hummingbird
import HummingbirdCore
import ImageStoreConfig
import ImageStoreCore
import ImageStoreGuard
import ImageStoreHealth
import ImageStoreKeystone
import ImageStoreMetrics
import ImageStoreNFS
import ImageStoreMetadata
import ImageStorePolicy
import ImageStoreStorage
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

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
    /// The store's mount guard, when it has one (the same object as `writeGuard`): the health backends,
    /// the stores detail and the metrics read its state. Kept typed so nothing needs to downcast.
    public var mountGuard: MountGuard?
    /// Validates callers' tokens under the keystone flavor; made from `[keystone_authtoken]` when nil.
    public var tokenValidator: (any TokenValidator)?
    /// Long-running background work (monitors) started with the server and stopped with it.
    public var services: [any Service]
    /// The staging store of interoperable import; nil: one beside the store (`stagingArea(beside:)`).
    public var staging: StagingArea?
    /// This process's replica id: the owner of the images it writes, part of its temporary file names,
    /// its row in the `replicas` table. Fresh for every process.
    public var replicaID: String
    /// Every store of `enabled_backends`, each with its own guard (`store`/`writeGuard` are the default
    /// one's); nil: the one `store`, under the configuration's default backend id.
    public var stores: ImageStores?
    /// The stores' mount guards by store id (the default store's is `mountGuard` too): the stores
    /// detail and the health backends read each one's state.
    public var mountGuards: [String: MountGuard] = [:]

    public init(
        repository: any ImageRepository, store: any ImageDataStore, writeGuard: any WriteGuard = UnguardedStore(),
        tokenValidator: (any TokenValidator)? = nil, services: [any Service] = [], metadefs: (any MetadefRepository)? = nil,
        tasks: (any TaskRepository)? = nil, staging: StagingArea? = nil, mountGuard: MountGuard? = nil,
        replicaID: String = ImageService.makeProcessToken()
    ) {
        self.staging = staging
        self.mountGuard = mountGuard
        self.replicaID = replicaID
        self.repository = repository
        self.metadefs = metadefs ?? Self.metadefs(beside: repository)
        self.tasks = tasks ?? CatalogueRepositories.tasks(beside: repository, logger: Logger(label: "imagestore.metadata"))
        self.store = store
        self.writeGuard = writeGuard
        self.tokenValidator = tokenValidator
        self.services = services
    }

    /// SQLite + filesystem stores from the configuration: one per `enabled_backends` entry, each with its
    /// own directory, deadline, threads and (when guarded) its own mount guard.
    public static func make(from configuration: ServiceConfiguration, logger: Logger) throws -> ApplicationDependencies {
        if let (first, second) = configuration.storesSharingADirectory() {
            // A configuration built in code (the file reader refuses it already).
            throw ConfigurationError(
                path: configuration.sourcePath, section: second, key: "filesystem_store_datadir",
                reason: "store \"\(second)\" has the same filesystem_store_datadir as store \"\(first)\": each store needs its own directory")
        }
        let repository = try makeRepository(configuration, logger: logger)
        let replicaID = ImageService.makeProcessToken()
        var named: [NamedStore] = []
        var guards: [String: MountGuard] = [:]
        for backend in configuration.enabledBackends {
            let options = configuration.options(forStore: backend.id)
            var storeLogger = logger
            if configuration.isMultiStore { storeLogger[metadataKey: "store"] = "\(backend.id)" }
            let mountGuard =
                configuration.isGuarded(store: backend.id)
                ? try makeMountGuard(
                    options, identity: StoreIdentityRecord(repository: repository, store: backend.id), logger: storeLogger)
                : nil
            // Like glance_store, create a missing plain directory — in the background, under the deadline
            // (start-up must never wait on the share); a mounted store (mount point required) is the admin's
            // to provide, and creating it would write into the bare mountpoint.
            let store = FilesystemImageStore(
                directory: options.datadir, filePermissions: options.filePerm, chunkSize: options.chunkSize,
                hashAlgorithm: configuration.hashingAlgorithm,
                timeout: options.guardTimeout, threads: options.threadPoolSize,
                directIO: options.directIO, flushAfter: options.flushAfterMiB << 20, createDirectory: !options.isNFSConfigured && !options.requireMountpoint, replicaID: replicaID, logger: storeLogger,
                onStuckChange: { stuck, detail in mountGuard?.storeCallsStuck(stuck, detail: detail) })
            var storeGuard: any WriteGuard = UnguardedStore()
            if let mountGuard {
                storeGuard = mountGuard
                guards[backend.id] = mountGuard
            }
            named.append(
                NamedStore(id: backend.id, store: store, writeGuard: storeGuard, weight: options.weight, reservedSpace: options.reservedSpace))
        }
        let stores = ImageStores(named, defaultID: configuration.defaultBackend, isMultiStore: configuration.isMultiStore)
        let options = configuration.store
        let store = stores.default.store
        let mountGuard = guards[configuration.defaultBackend]
        var services: [any Service] = configuration.enabledBackends.compactMap { guards[$0.id] }
        if let sqlite = repository as? SQLiteImageRepository { services.append(SQLiteCheckpointerShutdown(repository: sqlite)) }
        let staging: StagingArea
        if let stagingOptions = configuration.stagingStore, stagingOptions.isNFSConfigured || stagingOptions.requireMountpoint {
            // A staging store on a share of its own: its own guard, like any store (reads and writes refused
            // while its share is gone, never written through a bare mount point).
            let stagingGuard = try makeMountGuard(stagingOptions, logger: logger)
            services.append(stagingGuard)
            staging = StagingArea(
                store: FilesystemImageStore(
                    directory: stagingOptions.datadir, chunkSize: options.chunkSize, hashAlgorithm: configuration.hashingAlgorithm,
                    timeout: stagingOptions.guardTimeout, directIO: stagingOptions.directIO,
                    flushAfter: stagingOptions.flushAfterMiB << 20,
                    createDirectory: false,
                    replicaID: replicaID, logger: logger),
                writeGuard: stagingGuard, stageHost: configuration.workerSelfReferenceURL)
        } else {
            // Inside the store's datadir (same filesystem, behind the store's guard), or a local directory.
            let sameShare = configuration.stagingStore == nil
            var stagingGuard: any WriteGuard = UnguardedStore()
            if sameShare, let mountGuard { stagingGuard = mountGuard }
            let stagingOptions = configuration.stagingStore ?? options
            staging = StagingArea(
                store: FilesystemImageStore(
                    directory: configuration.stagingDirectory, chunkSize: options.chunkSize,
                    hashAlgorithm: configuration.hashingAlgorithm,
                    timeout: options.guardTimeout,
                    directIO: stagingOptions.directIO, flushAfter: stagingOptions.flushAfterMiB << 20, createDirectory: true,
                    replicaID: replicaID,
                    logger: logger),
                writeGuard: stagingGuard, stageHost: configuration.workerSelfReferenceURL)
        }
        var dependencies = ApplicationDependencies(
            repository: repository, store: store, writeGuard: stores.default.writeGuard, services: services,
            staging: staging, mountGuard: mountGuard, replicaID: replicaID)
        dependencies.stores = stores
        dependencies.mountGuards = guards
        return dependencies
    }

    /// The stores of these dependencies: `stores`, or the one `store` as the configuration's default
    /// backend (dependencies made by hand, in tests).
    func imageStores(_ configuration: ServiceConfiguration) -> ImageStores {
        if let stores { return stores }
        return ImageStores(
            [
                NamedStore(
                    id: configuration.defaultBackend, store: store, writeGuard: writeGuard, weight: configuration.store.weight,
                    reservedSpace: configuration.store.reservedSpace)
            ], defaultID: configuration.defaultBackend, isMultiStore: configuration.isMultiStore)
    }

    /// The mount guards by store id, the default store's included.
    func guardsByStore(_ configuration: ServiceConfiguration) -> [String: MountGuard] {
        var guards = mountGuards
        if guards[configuration.defaultBackend] == nil, let mountGuard { guards[configuration.defaultBackend] = mountGuard }
        return guards
    }

    /// A staging area for dependencies that name none (tests): a directory inside a filesystem store,
    /// behind the store's guard, or in memory beside an in-memory store.
    public static func stagingArea(beside store: any ImageDataStore, writeGuard: any WriteGuard, logger: Logger) -> StagingArea {
        if let filesystem = store as? FilesystemImageStore {
            return StagingArea(
                store: FilesystemImageStore(
                    directory: filesystem.directory + "/" + ServiceConfiguration.stagingDirectoryName,
                    directIO: filesystem.directIO, flushAfter: filesystem.flushAfter, createDirectory: true, logger: logger),
                writeGuard: writeGuard)
        }
        return StagingArea(store: InMemoryImageStore(), writeGuard: writeGuard)
    }

    /// The catalogue kept with `repository`: in its SQLite or PostgreSQL database, or in memory beside an
    /// in-memory one.
    public static func metadefs(beside repository: any ImageRepository) -> any MetadefRepository {
        CatalogueRepositories.metadefs(beside: repository, logger: Logger(label: "imagestore.metadata"))
    }

    /// The metadata database of the configuration (`[database] connection` and pool options).
    public static func makeRepository(_ configuration: ServiceConfiguration, logger: Logger) throws -> any ImageRepository {
        try makeRepository(configuration.database, options: configuration.databaseOptions, logger: logger)
    }

    /// Bench switch, not an option (and not in docs/configuration.md): `IMAGESTORE_BENCH_AUTOCHECKPOINT` set
    /// in the environment keeps SQLite's own WAL checkpoints inside the COMMIT instead of the checkpointer's
    /// thread, for scripts/bench-create-ab's same-binary A/B. Read here, where the application is assembled.
    static var benchAutocheckpoint: Bool { ProcessInfo.processInfo.environment["IMAGESTORE_BENCH_AUTOCHECKPOINT"] != nil }

    /// The metadata repository for `[database] connection` (also used by `imagestore db`): SQLite (its
    /// directory created), or a pool to PostgreSQL (no connection opened yet: a database that is down
    /// makes requests answer 503 until it is back, it does not stop start-up).
    public static func makeRepository(
        _ location: DatabaseLocation, options: DatabaseOptions, logger: Logger
    ) throws -> any ImageRepository {
        switch location {
        case .sqlite(let path):
            let timeout = options.sqliteTimeout
            // Opening (and migrating) touches the file system: under a deadline too, so a database put on a
            // share that hangs stops start-up with a message instead of hanging it. Two request deadlines, at
            // least 10 s: a migration of a large catalogue may take a while.
            let opening = max(timeout * 2, .seconds(10))
            let outcome = BlockingCallExecutor(name: "imagestore.db-open").runAndWait(deadline: opening) {
                Result<SQLiteImageRepository, any Error> {
                    if path != DatabaseLocation.memoryPath {
                        try FileManager.default.createDirectory(
                            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                    }
                    return try SQLiteImageRepository(
                        path: path, logger: logger, timeout: timeout, walCheckpoints: benchAutocheckpoint ? .sqliteAutocheckpoint : .checkpointer)
                }
            }
            switch outcome {
            case .completed(let result): return try result.get()
            case .timedOut:
                throw ImageStoreError(
                    .dependencyUnavailable,
                    "the metadata database \(path) did not open within \(opening.wholeMilliseconds) ms "
                        + "(twice [database] pool_timeout, at least 10 s): is it on a share that does not answer? SQLite must be local")
            }
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
            // A start-up problem of the configuration, reported like every other bad option.
            throw ConfigurationError(path: nil, key: "filesystem_nfs_mount_options", reason: "\(error)")
        }
        let probe = settings.nfsTarget.map { LibNFSProbe(target: $0, logger: logger) }
        return MountGuard(settings: settings, probe: probe, identity: identity, logger: logger)
    }
}

/// Assembles the ImageStore application: the only place where configuration, dependencies, routes,
/// middleware and background services are put together. `imagestore serve` and the tests call it.
/// - Parameter reloader: when given, SIGHUP's reload reaches the policy and the health check through it.
public func buildApplication(
    configuration: ServiceConfiguration, dependencies: ApplicationDependencies? = nil, logger: Logger,
    reloader: ConfigurationReloader? = nil
) throws -> some ApplicationProtocol {
    var dependencies = try dependencies ?? .make(from: configuration, logger: logger)
    let policy = Reloadable(try makePolicy(configuration.policy, logger: logger))
    let healthcheckOptions = Reloadable(configuration.healthcheck)
    let authentication = try makeAuthentication(configuration, &dependencies, logger: logger)
    let staging =
        dependencies.staging ?? ApplicationDependencies.stagingArea(beside: dependencies.store, writeGuard: dependencies.writeGuard, logger: logger)
    let registry = dependencies.repository as? any ReplicaRegistry
    let lease = registry.map { _ in
        ReplicaLease(replicaID: dependencies.replicaID, leaseTime: configuration.replicaLeaseTime)
    }
    let service = ImageService(
        repository: dependencies.repository, store: dependencies.store, writeGuard: dependencies.writeGuard,
        limits: .init(
            imageSizeCap: configuration.imageSizeCap, userStorageQuota: configuration.userStorageQuota,
            reservedSpace: configuration.store.reservedSpace),
        requireFormatMatch: configuration.requireImageFormatMatch,
        gptNonfatalChecks: configuration.gptSafetyChecksNonfatal, processToken: dependencies.replicaID,
        staging: staging, lease: lease, stores: dependencies.imageStores(configuration), logger: logger)
    var fetcher: WebImageFetcher?
    if configuration.enabledImportMethods.contains(ImportMethod.webDownload(uri: "").name) {
        fetcher = WebImageFetcher(filter: configuration.importFilter, readTimeout: webDownloadReadTimeout)
    }
    let importer = ImageImporter(
        service: service, tasks: dependencies.tasks, storeID: configuration.defaultBackend, fetcher: fetcher, logger: logger)
    let forwarder = StageHostForwarder(selfURL: configuration.workerSelfReferenceURL)

    let storeGuards = dependencies.guardsByStore(configuration)
    let healthMonitor = HealthMonitor(
        options: configuration.healthcheck, mountGuard: dependencies.mountGuard,
        repository: dependencies.repository, storeGuards: healthStoreGuards(configuration, storeGuards), logger: logger)
    if let reloader {
        let (mountGuard, repository) = (dependencies.mountGuard, dependencies.repository)
        let perStore = healthStoreGuards(configuration, storeGuards)
        reloader.attach(
            .init(
                policy: policy, healthcheck: healthcheckOptions,
                rebuildHealth: { options in
                    await healthMonitor.reconfigure(options: options, mountGuard: mountGuard, repository: repository, storeGuards: perStore)
                }))
    }
    let metrics = configuration.metrics.enabled ? ServiceMetrics() : nil
    if let metrics, let instrumentation = (dependencies.repository as? any MetadataInstrumented)?.instrumentation {
        let engine = instrumentation.engine
        instrumentation.observe { operation, duration, failed in
            metrics.metadataAccess(engine: engine, operation: operation, duration: duration, failed: failed)
        }
    }
    let router = buildRouter(
        configuration: configuration, dependencies: dependencies, service: service, importer: importer,
        healthMonitor: healthMonitor, policy: policy, healthcheckOptions: healthcheckOptions, authentication: authentication,
        metrics: metrics, forwarder: forwarder, logger: logger
    ).router
    var services = dependencies.services + [healthMonitor, ImportShutdown(importer: importer, fetcher: fetcher), forwarder]
    if let registry, let lease {
        services.append(ReplicaHeartbeat(registry: registry, service: service, lease: lease, logger: logger))
    }
    if let metrics, let port = configuration.metrics.bindPort {
        let controller = metricsController(metrics, configuration, dependencies, healthMonitor)
        services.append(controller.application(host: configuration.metrics.bindHost ?? configuration.bindHost, port: port, logger: logger))
        logger.info("metrics: /metrics on a listener of its own", metadata: ["port": "\(port)"])
    }

    let clientSocketTimeout = configuration.clientSocketTimeout
    let bringUp = StoreBringUp(
        stores: service.stores.all.map(\.store), service: service, tasks: dependencies.tasks, interval: configuration.store.guardInterval,
        logger: logger)
    var app = Application(
        router: router,
        server: .http1(
            configuration: .init(
                additionalChannelHandlers: serverChannelHandlers(clientSocketTimeout: clientSocketTimeout))),
        configuration: .init(
            address: .hostname(configuration.bindHost, port: configuration.bindPort), serverName: "imagestore"),
        services: services + [bringUp],
        logger: logger
    )
    let mountGuards = dependencies.guardsByStore(configuration).sorted { $0.key < $1.key }
    app.beforeServerStarts {
        // The first guard check, the first health round (so the first probe answers with a real result)
        // and the store's bring-up (directory, recovery) before serving — but never more than
        // `startupBudget`: on a hung share the server listens anyway (/livez 200, store disabled) and
        // what did not finish goes on in the background.
        let finished: Void? = await value(within: startupBudget) {
            async let checked: Void = withTaskGroup(of: Void.self) { group in
                // Every store's guard at once: a hung share must not delay the others' first check.
                for (id, mountGuard) in mountGuards {
                    group.addTask {
                        let state = await mountGuard.runAllChecks()
                        if state.enabled {
                            logger.info("store enabled: every guard check passes", metadata: ["store": "\(id)"])
                        } else {
                            logger.error("store disabled at start-up", metadata: ["store": "\(id)", "reason": "\(state.reason ?? "")"])
                        }
                    }
                }
            }
            async let round: Void = healthMonitor.runRound()
            _ = await (checked, round)
            await bringUp.attempt()
        }
        if finished == nil {
            logger.warning(
                "the store did not answer within the start-up budget: serving with the store disabled; its checks and recovery go on in the background",
                metadata: ["budget_ms": "\(startupBudget.wholeMilliseconds)"])
        }
    }
    return app
}

/// `/metrics` for every store's mount guard and the health monitor's backends.
func metricsController(
    _ metrics: ServiceMetrics, _ configuration: ServiceConfiguration, _ dependencies: ApplicationDependencies,
    _ healthMonitor: HealthMonitor
) -> MetricsController {
    let guards = dependencies.guardsByStore(configuration)
    let instrumentation = (dependencies.repository as? any MetadataInstrumented)?.instrumentation
    var poolSize: Int?
    if case .postgresql = configuration.database { poolSize = configuration.databaseOptions.maxPoolSize }
    return MetricsController(
        metrics: metrics,
        guards: configuration.enabledBackends.map { backend in
            let mountGuard = guards[backend.id]
            return (storeID: backend.id, state: { mountGuard?.state })
        },
        healthMonitor: healthMonitor, metadata: instrumentation, poolSize: poolSize)
}

/// Every guarded store's guard for the health monitor, in configuration order.
func healthStoreGuards(
    _ configuration: ServiceConfiguration, _ guards: [String: MountGuard]
) -> [(id: String, mountGuard: any GuardedStore)] {
    configuration.enabledBackends.compactMap { backend in guards[backend.id].map { (backend.id, $0) } }
}

/// How long a `web-download` server may stay silent before the import fails (tests shorten it).
nonisolated(unsafe) var webDownloadReadTimeout: TimeAmount = .seconds(60)

/// Stops running imports on shutdown: each fails cleanly (image `queued`, nothing staged), as a crash
/// would be repaired at the next start.
struct ImportShutdown: Service {
    let importer: ImageImporter
    let fetcher: WebImageFetcher?
    func run() async throws {
        try? await gracefulShutdown()
        await importer.cancelAll()
        await fetcher?.shutdown()
    }
}

/// Stops SQLite's WAL checkpointer thread on shutdown (a write after it is recovered from the WAL at the next
/// open, as after any exit).
struct SQLiteCheckpointerShutdown: Service {
    let repository: SQLiteImageRepository
    func run() async throws {
        try? await gracefulShutdown()
        await repository.stopCheckpointer()
    }
}

/// The most start-up waits on the store before listening (`imagestore serve` must listen within 2 s).
let startupBudget = Duration.milliseconds(1000)

/// Creates the store directory (when the store may) and runs start-up recovery, retrying every
/// `interval` until both succeed with the store writable: a share that is hung or missing at start-up
/// is brought up by itself once it answers. Every store call is under the store's deadline.
final class StoreBringUp: Service {
    private let stores: [any ImageDataStore]
    private let service: ImageService
    private let tasks: any TaskRepository
    private let interval: Duration
    private let logger: Logger
    private let state = Mutex<(done: Bool, running: Bool, failures: Int)>((false, false, 0))

    init(stores: [any ImageDataStore], service: ImageService, tasks: any TaskRepository, interval: Duration, logger: Logger) {
        self.stores = stores
        self.service = service
        self.tasks = tasks
        self.interval = interval
        self.logger = logger
    }

    var isDone: Bool { state.withLock { $0.done } }

    /// One attempt (skipped while another runs or once done).
    func attempt() async {
        let claimed = state.withLock { state -> Bool in
            guard !state.done, !state.running else { return false }
            state.running = true
            return true
        }
        guard claimed else { return }
        var done = false
        do {
            // Each store on its own: one that is gone must not keep the others from recovery (which only
            // touches stores whose guard allows writes). All gone: postponed, as for a single store.
            var prepared = 0
            var firstError: (any Error)?
            for store in stores {
                do {
                    try await store.prepare()
                    prepared += 1
                } catch {
                    if firstError == nil { firstError = error }
                }
            }
            if prepared == 0, let firstError { throw firstError }
            let report = try await service.recoverAfterRestart()
            for task in report.interruptedImports {
                _ = try? await tasks.updateTask(task) { task in
                    task.status = .failure
                    task.message = "The import was interrupted by a restart of the server; import the image again."
                }
            }
            done = report.storeChecked && prepared == stores.count
            logger.info(
                done ? "start-up recovery done" : "start-up recovery: metadata done, the store is not writable yet",
                metadata: [
                    "uploads_reset": "\(report.uploadsReset)", "temp_files_removed": "\(report.temporaryFilesRemoved)",
                    "deletes_finished": "\(report.deletesFinished)", "orphans_removed": "\(report.orphanedDataRemoved)",
                    "missing_data_reset": "\(report.missingDataReset)", "store_checked": "\(report.storeChecked)",
                    "imports_failed": "\(report.interruptedImports.count)", "staged_removed": "\(report.stagedDataRemoved)",
                ])
        } catch {
            // Never fatal: with the share missing or hung the service must still run (store disabled).
            let first = state.withLock { $0.failures == 0 }
            if first {
                logger.warning("start-up recovery postponed: the store is not reachable; retrying", metadata: ["error": "\(error)"])
            }
        }
        state.withLock { state in
            state.running = false
            state.done = done
            if !done { state.failures += 1 }
        }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !self.isDone && !Task.isCancelled {
                do { try await Task.sleep(for: self.interval) } catch { break }
                await self.attempt()
            }
        }
        // A service that returns ends the whole group (the server with it): stay until shutdown.
        try? await gracefulShutdown()
    }
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
        validator = CachingTokenValidator(keystone, ttl: options.tokenCacheTime.fractionalSeconds, capacity: options.tokenCacheSize)
        dependencies.tokenValidator = validator
    }
    logger.info("authentication: Keystone", metadata: ["auth_url": "\(options.authURL)", "token_cache_time": "\(options.tokenCacheTime.components.seconds)"])
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
    let importer = ImageImporter(
        service: service, tasks: dependencies.tasks, storeID: configuration.defaultBackend, fetcher: nil, logger: logger)
    // Never started: only its routes are wanted.
    let healthMonitor = HealthMonitor(
        options: configuration.healthcheck, mountGuard: nil, repository: dependencies.repository, logger: logger)
    return buildRouter(
        configuration: configuration, dependencies: dependencies, service: service, importer: importer,
        healthMonitor: healthMonitor, policy: Reloadable(.glanceDefaults), healthcheckOptions: Reloadable(configuration.healthcheck),
        authentication: .noauth, metrics: nil, logger: logger
    ).entries.map { (method: $0.method.rawValue, path: $0.path) }
}

/// The router with every controller's routes and the 405 answers; `buildApplication` and
/// `registeredRoutes` both use it, so the route list has a single source.
func buildRouter(
    configuration: ServiceConfiguration, dependencies: ApplicationDependencies, service: ImageService,
    importer: ImageImporter, healthMonitor: HealthMonitor, policy: Reloadable<PolicyEnforcer>,
    healthcheckOptions: Reloadable<HealthcheckOptions>, authentication: Authentication, metrics: ServiceMetrics?,
    forwarder: StageHostForwarder? = nil, logger: Logger
) -> RouteTable {
    // Never started (so its client never made) when the caller gives none: `registeredRoutes`.
    let forwarder = forwarder ?? StageHostForwarder(selfURL: configuration.workerSelfReferenceURL)
    let router = Router(context: AppRequestContext.self)
    if let metrics {
        // Outermost: it sees the status the request middleware's error mapping produced.
        router.add(middleware: MetricsMiddleware(metrics: metrics))
        if configuration.metrics.bindPort == nil {
            metricsController(metrics, configuration, dependencies, healthMonitor).addRoute(to: router)
        }
    }
    router.add(
        middleware: RequestMiddleware(
            logger: logger, errors: ErrorTable(storeUnavailable: .init(code: configuration.storeUnavailableStatus.rawValue)),
            storeID: configuration.defaultBackend))
    router.add(middleware: AuthMiddleware(policies: policy, authentication: authentication))
    let routes = RouteTable(router: router)
    let multiStore = configuration.isMultiStore
    let access = ImageAccess(repository: dependencies.repository)
    // /v2/info/stores lists the store when multi-store is on or the store is guarded: images then say
    // where they are (`stores`), which Tempest's import waiter compares with that list.
    let listsStore = multiStore || dependencies.writeGuard is MountGuard
    VersionsController().addRoutes(to: routes)
    SchemasController(formats: configuration.imageFormats).addRoutes(to: routes)
    ImagesController(
        repository: dependencies.repository, service: service, access: access, limits: configuration.imageLimits,
        formats: configuration.imageFormats,
        stores: listsStore ? service.stores : nil,
        locations: !configuration.showImageDirectURL && !configuration.showMultipleLocations
            ? nil
            : LocationView(
                stores: service.stores,
                datadirs: Dictionary(
                    uniqueKeysWithValues: configuration.enabledBackends.map { ($0.id, configuration.options(forStore: $0.id).datadir) }),
                showDirectURL: configuration.showImageDirectURL, showLocations: configuration.showMultipleLocations),
        importMethods: configuration.enabledImportMethods, forwarder: forwarder
    ).addRoutes(to: routes)
    ImageDataController(access: access, service: service).addRoutes(to: routes)
    ImportController(
        access: access, service: service, importer: importer, methods: configuration.enabledImportMethods,
        multiStore: multiStore, storeID: configuration.defaultBackend,
        permitsURI: { [importer] uri in await importer.permits(uri) },
        stageHost: configuration.workerSelfReferenceURL, forwarder: forwarder
    ).addRoutes(to: routes)
    MembersController(repository: dependencies.repository, access: access, limits: configuration.imageLimits).addRoutes(to: routes)
    MetadefsController(repository: dependencies.metadefs).addRoutes(to: routes)
    TasksController(repository: dependencies.tasks, access: access).addRoutes(to: routes)
    let guards = dependencies.guardsByStore(configuration)
    InfoController(
        importMethods: configuration.enabledImportMethods,
        stores: configuration.enabledBackends.map { backend in
            let options = configuration.options(forStore: backend.id)
            let mountGuard = guards[backend.id]
            return InfoController.StoreInfo(
                id: backend.id, description: options.description, weight: options.weight, datadir: options.datadir,
                chunkSize: options.chunkSize, guardState: { mountGuard?.state })
        },
        multiStore: multiStore, defaultBackend: configuration.defaultBackend
    ).addRoutes(to: routes)
    HealthcheckController(monitor: healthMonitor, options: healthcheckOptions).addRoutes(to: routes)
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
            maxConnections: options.maxPoolSize, timeout: options.postgresTimeout)
    }
}

/// The HTTP/1 pipeline's own handlers: 100-continue, and `client_socket_timeout` (0: none) counted while the
/// server waits for the client (Hummingbird's `idleTimeout` stays off: it also counts while the server
/// itself is not reading).
func serverChannelHandlers(clientSocketTimeout: Duration) -> [any RemovableChannelHandler] {
    guard clientSocketTimeout > .zero else { return [ExpectContinueHandler()] }
    return [ExpectContinueHandler(), ClientSilenceHandler(timeout: .nanoseconds(clientSocketTimeout.wholeNanoseconds))]
}
