import ImageStoreCore

/// The server's whole configuration, read from a glance-api.conf-style file, typed and validated
/// up front: a bad value throws a `ConfigurationError` (start-up stops), an unknown section or
/// option only adds a line to `warnings`.
///
/// ```swift
/// let config = try ServiceConfiguration.load(path: "/etc/imagestore/imagestore.conf")
/// for warning in config.warnings { logger.warning("\(warning)") }
/// ```
///
/// Options keep Glance's names and sections; see `docs/configuration.md` and
/// `etc/imagestore.conf.sample` for every option.
public struct ServiceConfiguration: Sendable {
    /// The file the configuration came from; nil for the embedded default.
    public var sourcePath: String?
    /// `[DEFAULT] bind_host`: the address to listen on.
    public var bindHost: String
    /// `[DEFAULT] bind_port`.
    public var bindPort: Int
    /// `[DEFAULT] image_size_cap`: the largest image accepted, in bytes.
    public var imageSizeCap: Int64
    /// `[DEFAULT] user_storage_quota`: bytes each owner may store; 0 means no quota.
    public var userStorageQuota: Int64
    /// `[DEFAULT] enabled_backends`; in legacy mode (not set) a single `file` backend.
    public var enabledBackends: [StoreBackend]
    /// `[glance_store] default_backend`: the backend that stores images.
    public var defaultBackend: String
    /// The default backend's options (its `[<id>]` section, or `[glance_store]` in legacy mode).
    public var store: FilesystemStoreOptions {
        didSet { storeOptions[defaultBackend] = store }
    }
    /// Every enabled backend's options by id (each from its own `[<id>]` section); the default
    /// backend's are `store`. Stores missing here (configurations built in code) use `store`'s.
    public var storeOptions: [String: FilesystemStoreOptions] = [:]
    /// `[database] connection`.
    public var database: DatabaseLocation
    /// `[database] max_pool_size`, `pool_timeout`.
    public var databaseOptions = DatabaseOptions()
    /// `[paste_deploy] flavor` as written (`noauth`, `keystone`, `keystone+cachemanagement`…).
    public var pasteFlavor: String
    /// What the flavor means here: noauth or Keystone tokens.
    public var authFlavor: AuthFlavor = .noauth
    /// `[keystone_authtoken]`, read when the flavor is `keystone`.
    public var keystone: KeystoneAuthOptions?
    /// `[oslo_policy]`.
    public var policy = PolicyOptions()
    /// `[DEFAULT] image_property_quota`, `image_tag_quota`, `image_member_quota`, `image_location_quota`.
    public var imageLimits = ImageLimits()
    /// `[paste_deploy] config_file`: the paste file whose `[app:healthcheck]` was applied.
    public var pasteConfigFile: String?
    /// `[healthcheck]`, overridden by the paste file's `[app:healthcheck]`.
    public var healthcheck: HealthcheckOptions
    /// `[DEFAULT] debug`, `log_file`, `use_json`, `use_stderr` (oslo.log's names).
    public var logging = LoggingOptions()
    /// `[metrics]`: the Prometheus endpoint.
    public var metrics = MetricsOptions()
    /// `[DEFAULT] shutdown_drain_timeout` (seconds): how long in-flight requests get to finish on shutdown.
    public var drainTimeout: Duration
    /// `[DEFAULT] client_socket_timeout` (Glance's name, seconds): how long a connection may stay silent,
    /// also in the middle of an upload body, before it is closed (the upload is then cleaned up); 0 disables.
    public var clientSocketTimeout: Duration = Self.defaultClientSocketTimeout
    /// `[DEFAULT] replica_lease_time` (seconds): how long a replica may go without a heartbeat (sent every
    /// third of it) before another replica takes over what it was writing (docs/scaling.md).
    public var replicaLeaseTime: Duration = Self.defaultReplicaLeaseTime
    /// `[image_format] require_image_format_match`: uploads whose data is not their `disk_format` are
    /// refused (415). Failed safety checks (a qcow2 backing file…) are refused either way.
    public var requireImageFormatMatch = true
    /// `[image_format] gpt_safety_checks_nonfatal`: safety checks (`mbr`) whose failure does not refuse
    /// data found to be a GPT/MBR disk. Empty (Glance's default): every check is fatal.
    public var gptSafetyChecksNonfatal: Set<String> = []
    /// `[image_format] disk_formats` and `container_formats`: the values images may have (400 for any
    /// other on create and PATCH), and the enums of `/v2/schemas/image`.
    public var imageFormats = ImageFormats()
    /// `[DEFAULT] store_unavailable_status`: how a write to a gone or hung store is answered — 410 (the
    /// default: the store is gone, do not retry) or 503 with `Retry-After` for clients that should
    /// retry (Nova and Cinder retry 503, not 410).
    public var storeUnavailableStatus: StoreUnavailableStatus = .gone
    /// `[DEFAULT] hashing_algorithm`: the algorithm of new images' `os_hash_value` (Glance's option and
    /// default, sha512); `checksum` stays md5.
    public var hashingAlgorithm: HashAlgorithm = .default
    /// `[DEFAULT] enabled_import_methods`: the interoperable import methods offered (`/v2/info/import`).
    public var enabledImportMethods: [String] = ImportMethod.allNames
    /// `[os_glance_staging_store]`, when the section is there: the staging store's own options (its own
    /// mount guard when it is on a share). nil: staging lives in `<datadir>/os_glance_staging_store`, on
    /// the store's filesystem and behind the store's guard.
    public var stagingStore: FilesystemStoreOptions?
    /// `[import_filtering_opts]`: which `web-download` URIs may be fetched.
    public var importFilter = ImportFilter()
    /// `[DEFAULT] show_image_direct_url`: images show `direct_url`, the `file://` URL of their best copy.
    public var showImageDirectURL = false
    /// `[DEFAULT] show_multiple_locations`: images show `locations` (read-only here): every copy's
    /// `file://` URL with `{"store": id}` metadata in multi-store mode.
    public var showMultipleLocations = false
    /// `[DEFAULT] worker_self_reference_url`: recorded as `os_glance_stage_host` on staged images.
    public var workerSelfReferenceURL: String?
    /// Unknown sections and options, and options that were ignored, each naming file, line,
    /// section and key. Log them at start-up.
    public var warnings: [String]
    /// The parsed file itself, for modules that read options of their own; nil for the embedded default.
    public var file: INIFile?

    // MARK: Defaults

    public static let defaultBindHost = "0.0.0.0"
    public static let defaultReplicaLeaseTime: Duration = .seconds(30)
    public static let defaultBindPort = 9292
    /// 1 TiB, Glance's default.
    public static let defaultImageSizeCap: Int64 = 1_099_511_627_776
    /// 8 EiB - 1, Glance's maximum for `image_size_cap`.
    public static let maxImageSizeCap: Int64 = 9_223_372_036_854_775_807
    /// No quota.
    public static let defaultUserStorageQuota: Int64 = 0
    public static let defaultPasteFlavor = "noauth"
    public static let defaultDrainTimeout: Duration = .seconds(30)
    public static let defaultClientSocketTimeout: Duration = .seconds(900)
    /// The flavors this server implements (`keystone+…` variants are read as `keystone`).
    public static let supportedPasteFlavors: Set<String> = ["noauth", "keystone"]

    public init(
        sourcePath: String? = nil, bindHost: String = Self.defaultBindHost, bindPort: Int = Self.defaultBindPort,
        imageSizeCap: Int64 = Self.defaultImageSizeCap, userStorageQuota: Int64 = Self.defaultUserStorageQuota,
        enabledBackends: [StoreBackend] = [StoreBackend(id: StoreBackend.legacyID, type: "file")],
        defaultBackend: String = StoreBackend.legacyID, store: FilesystemStoreOptions = FilesystemStoreOptions(),
        database: DatabaseLocation = .defaultLocation, pasteFlavor: String = Self.defaultPasteFlavor,
        pasteConfigFile: String? = nil, healthcheck: HealthcheckOptions = HealthcheckOptions(),
        drainTimeout: Duration = Self.defaultDrainTimeout, warnings: [String] = [], file: INIFile? = nil
    ) {
        self.sourcePath = sourcePath
        self.bindHost = bindHost
        self.bindPort = bindPort
        self.imageSizeCap = imageSizeCap
        self.userStorageQuota = userStorageQuota
        self.enabledBackends = enabledBackends
        self.defaultBackend = defaultBackend
        self.store = store
        self.storeOptions = [defaultBackend: store]
        self.database = database
        self.pasteFlavor = pasteFlavor
        self.pasteConfigFile = pasteConfigFile
        self.healthcheck = healthcheck
        self.drainTimeout = drainTimeout
        self.warnings = warnings
        self.file = file
    }

    // MARK: Loading

    /// Reads and validates a configuration file (and the paste file it names, if any).
    /// Paths inside the file are used as given, like oslo.config: relative ones are relative to the
    /// working directory, not to the file.
    /// - Throws: `ConfigurationError` for a missing or unreadable file, a syntax error or a bad value.
    public static func load(path: String) throws -> ServiceConfiguration {
        try parse(text: readTextFile(path), path: path)
    }

    /// Reads a configuration file with the environment and secrets layers over it (see
    /// `ConfigurationLayers`): what they set replaces the file's value, then everything is validated once.
    /// - Throws: `ConfigurationError`, naming the variable or secrets file for a bad value from a layer.
    public static func load(path: String, layers: ConfigurationLayers) throws -> ServiceConfiguration {
        var reader = ConfigurationReader(file: try layers.apply(to: INIFile(text: readTextFile(path), path: path)))
        return try reader.read()
    }

    /// Parses and validates configuration text; `path` names it in messages.
    /// - Throws: `ConfigurationError` for a syntax error or a bad value.
    public static func parse(text: String, path: String) throws -> ServiceConfiguration {
        var reader = ConfigurationReader(file: try INIFile(text: text, path: path))
        return try reader.read()
    }

    /// The configuration used when no file is given: everything under `baseDirectory`, for a
    /// developer's machine or a quick try. Listens on 127.0.0.1:9292, images in
    /// `<base>/images`, metadata in `<base>/imagestore.db`, no authentication, no mount guard.
    public static func embeddedDefault(baseDirectory: String) -> ServiceConfiguration {
        let base = baseDirectory.hasSuffix("/") && baseDirectory.count > 1 ? String(baseDirectory.dropLast()) : baseDirectory
        return ServiceConfiguration(
            bindHost: "127.0.0.1",
            store: FilesystemStoreOptions(datadir: base + "/images"),
            database: .sqlite(path: base + "/imagestore.db")
        )
    }

    /// The embedded default with the environment and secrets layers over it, so `IMAGESTORE__…`
    /// variables and a secrets directory work without a configuration file too. The result is still the
    /// embedded default (`sourcePath` nil: unguarded unless a layer sets NFS or mount-point options).
    /// - Throws: `ConfigurationError`, naming the variable or secrets file for a bad value.
    public static func embeddedDefault(baseDirectory: String, layers: ConfigurationLayers) throws -> ServiceConfiguration {
        let defaults = embeddedDefault(baseDirectory: baseDirectory)
        guard case .sqlite(let databasePath) = defaults.database else { return defaults }
        // The defaults as the file a deployer would write, so the layers and the reader apply exactly as
        // they do over a real file (one parser, one validation).
        let text = """
            [DEFAULT]
            bind_host = \(defaults.bindHost)
            [glance_store]
            filesystem_store_datadir = \(defaults.store.datadir)
            [database]
            connection = sqlite:///\(databasePath)

            """
        var reader = ConfigurationReader(file: try layers.apply(to: INIFile(text: text, path: embeddedDefaultName)))
        var configuration = try reader.read()
        configuration.sourcePath = nil
        return configuration
    }

    /// How messages name the embedded default's settings.
    public static let embeddedDefaultName = "(embedded default)"

    /// Whether the store is guarded (marker, mount point, NFS server checked before writes): any
    /// deployed configuration (a configuration file) or NFS/mount-point options. The embedded default's
    /// ./data directory is a plain local directory with no share to lose. The server and
    /// `imagestore check` both decide by this.
    public var isGuarded: Bool {
        sourcePath != nil || store.isNFSConfigured || store.requireMountpoint
    }

    /// The options of enabled backend `id` (its own section); `store` for an id without its own entry.
    public func options(forStore id: String) -> FilesystemStoreOptions {
        id == defaultBackend ? store : storeOptions[id] ?? store
    }

    /// Two enabled stores whose `filesystem_store_datadir` is the same directory, if any (the first and
    /// the second in `enabled_backends` order). Each store must have its own: what one store holds is
    /// what another's reconciliation would remove.
    public func storesSharingADirectory() -> (String, String)? {
        var seen: [String: String] = [:]
        for backend in enabledBackends {
            var path = options(forStore: backend.id).datadir
            while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
            if let first = seen[path] { return (first, backend.id) }
            seen[path] = backend.id
        }
        return nil
    }

    /// Whether store `id` is guarded, by the rule of `isGuarded`.
    public func isGuarded(store id: String) -> Bool {
        let options = options(forStore: id)
        return sourcePath != nil || options.isNFSConfigured || options.requireMountpoint
    }

    /// Where staged data lives: `[os_glance_staging_store] filesystem_store_datadir`, or a directory inside
    /// the store's datadir (same filesystem, same guard).
    public var stagingDirectory: String {
        if let stagingStore { return stagingStore.datadir }
        return (store.datadir.hasSuffix("/") ? String(store.datadir.dropLast()) : store.datadir) + "/" + Self.stagingDirectoryName
    }

    public static let stagingDirectoryName = "os_glance_staging_store"

    /// Whether `enabled_backends` names stores (multi-store, as Glance exposes it: `/v2/info/stores`,
    /// the `stores` image field). The legacy single `[glance_store]` store is not multi-store.
    public var isMultiStore: Bool {
        !(enabledBackends.count == 1 && enabledBackends[0].id == StoreBackend.legacyID)
    }
}

/// The status a write to an unavailable store gets (`store_unavailable_status`).
public enum StoreUnavailableStatus: Int, Sendable, Equatable {
    case gone = 410
    case serviceUnavailable = 503
}
