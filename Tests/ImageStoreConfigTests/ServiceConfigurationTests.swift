import ImageStoreConfig
import ImageStoreCore
import Testing

@Suite struct ServiceConfigurationTests {
    static let path = "/etc/imagestore/imagestore.conf"

    private func parse(_ text: String) throws -> ServiceConfiguration {
        try ServiceConfiguration.parse(text: text, path: Self.path)
    }

    // MARK: Good files

    @Test func parse_whenFullFile_readsEveryOption() throws {
        let config = try parse(
            """
            [DEFAULT]
            bind_host = 192.0.2.10
            bind_port = 8292
            image_size_cap = 2147483648
            user_storage_quota = 10GB
            enabled_backends = fast:file
            shutdown_drain_timeout = 12.5

            [glance_store]
            default_backend = fast

            [fast]
            filesystem_store_datadir = /mnt/share/images
            filesystem_store_file_perm = 0640
            filesystem_store_chunk_size = 1048576
            store_description = NFS share
            weight = 3
            filesystem_store_marker_file = /mnt/share/.imagestore
            filesystem_store_require_mountpoint = true
            filesystem_store_mountpoint = /mnt/share
            filesystem_store_mount_types = nfs4, fuse.sshfs
            filesystem_is_nfs_configured = yes
            filesystem_nfs_host = nfs.example.org
            filesystem_nfs_share_path = /exports/glance
            filesystem_nfs_mount_options = vers=4.1,timeo=50
            mount_guard_interval = 2.5
            mount_guard_timeout = 1500
            mount_guard_max_age = 0

            [database]
            connection = sqlite:////var/lib/imagestore/meta.db

            [paste_deploy]
            flavor = noauth

            [healthcheck]
            backends = enable_by_files, disable_by_files_ports, nfs
            detailed = On
            allowed_source_ranges = 10.0.0.0/8, fd00::/8, 192.0.2.1
            ignore_proxied_requests = 1
            disable_by_file_path = /etc/imagestore/disabled
            disable_by_file_paths = 9292:/etc/imagestore/d9292, 9293:/x:y
            enable_by_file_paths = /mnt/share/images/.glance
            interval = 3
            check_timeout = 700
            failure_threshold = 2
            """)
        #expect(config.sourcePath == Self.path)
        #expect(config.bindHost == "192.0.2.10")
        #expect(config.bindPort == 8292)
        #expect(config.imageSizeCap == 2_147_483_648)
        #expect(config.userStorageQuota == 10 << 30)
        #expect(config.enabledBackends == [StoreBackend(id: "fast", type: "file")])
        #expect(config.defaultBackend == "fast")
        #expect(config.drainTimeout == .milliseconds(12_500))
        #expect(
            config.store
                == FilesystemStoreOptions(
                    datadir: "/mnt/share/images", filePerm: 0o640, chunkSize: 1_048_576, description: "NFS share",
                    weight: 3, markerFile: "/mnt/share/.imagestore", requireMountpoint: true, mountpointPath: "/mnt/share",
                    mountTypes: ["nfs4", "fuse.sshfs"], isNFSConfigured: true, nfsHost: "nfs.example.org",
                    nfsSharePath: "/exports/glance", nfsMountOptions: "vers=4.1,timeo=50", guardInterval: .milliseconds(2500),
                    guardTimeout: .milliseconds(1500), guardMaxAge: .zero))
        #expect(config.store.markerPath == "/mnt/share/.imagestore")
        #expect(config.store.effectiveMountpoint == "/mnt/share")
        #expect(config.database == .sqlite(path: "/var/lib/imagestore/meta.db"))
        #expect(config.pasteFlavor == "noauth")
        #expect(config.pasteConfigFile == nil)
        #expect(
            config.healthcheck
                == HealthcheckOptions(
                    backends: ["enable_by_files", "disable_by_files_ports", "nfs"], detailed: true,
                    allowedSourceRanges: ["10.0.0.0/8", "fd00::/8", "192.0.2.1"].map { IPNetwork($0)! }, ignoreProxiedRequests: true,
                    disableByFilePath: "/etc/imagestore/disabled",
                    disableByFilePaths: ["9292": "/etc/imagestore/d9292", "9293": "/x:y"],
                    enableByFilePaths: ["/mnt/share/images/.glance"], checkInterval: .seconds(3), checkTimeout: .milliseconds(700),
                    failureThreshold: 2))
        #expect(config.warnings == [])
        #expect(config.file?.value(section: "fast", key: "weight") == "3")
    }

    @Test(arguments: [
        ("0", ReservedSpace.bytes(0)), ("1048576", .bytes(1_048_576)), ("10GB", .bytes(10 << 30)), ("5%", .percent(5)),
        ("0.5%", .percent(0.5)), ("99%", .percent(99)),
    ])
    func parse_reservedSpace_bytesUnitsOrPercent(text: String, expected: ReservedSpace) throws {
        let config = try parse("[glance_store]\nfilesystem_store_reserved_space = \(text)\n")
        #expect(config.store.reservedSpace == expected)
        #expect(config.warnings == [])
    }

    @Test func reservedSpace_percentOfTheFilesystem_roundsUp() {
        #expect(ReservedSpace.percent(50).bytes(ofTotal: 8 << 20) == 4 << 20)
        #expect(ReservedSpace.percent(0.5).bytes(ofTotal: 1001) == 6)
        #expect(ReservedSpace.bytes(7).bytes(ofTotal: 1) == 7)
        #expect(ReservedSpace.none.isNone && !ReservedSpace.percent(1).isNone)
    }

    /// glance_store 5.4.0's `filesystem_store_timeout` (whole seconds, 0 = off) sets the same deadline as
    /// `mount_guard_timeout`; with both, the smaller wins and a warning names both.
    @Test(arguments: [
        ("filesystem_store_timeout = 3", 3000, false),
        ("filesystem_store_timeout = 0", 2000, false),
        ("filesystem_store_timeout = 3\nmount_guard_timeout = 1500", 1500, true),
        ("mount_guard_timeout = 9000\nfilesystem_store_timeout = 4", 4000, true),
        ("filesystem_store_timeout = 0\nmount_guard_timeout = 9000", 9000, false),
    ])
    func storeTimeout_isMountGuardTimeout_smallerWins(lines: String, milliseconds: Int, warns: Bool) throws {
        let config = try parse("[glance_store]\n" + lines)
        #expect(config.store.guardTimeout == .milliseconds(milliseconds))
        let warning = config.warnings.first { $0.contains("filesystem_store_timeout") }
        #expect((warning != nil) == warns, "\(config.warnings)")
        if warns { #expect(warning?.contains("using the smaller, \(milliseconds) ms") == true, "\(warning ?? "")") }
    }

    @Test func hashingAlgorithm_isReadCaseInsensitively_andDefaultsToSHA512() throws {
        #expect(try parse("[DEFAULT]\nhashing_algorithm = SHA256").hashingAlgorithm == .sha256)
        #expect(try parse("[DEFAULT]\nhashing_algorithm = sha384").hashingAlgorithm == .sha384)
        #expect(try parse("").hashingAlgorithm == .sha512)
    }

    @Test func storeThreadPoolAndUnavailableStatus_areRead() throws {
        let config = try parse("[DEFAULT]\nstore_unavailable_status = 503\n[glance_store]\nfilesystem_store_thread_pool_size = 10")
        #expect(config.storeUnavailableStatus == .serviceUnavailable)
        #expect(config.store.threadPoolSize == 10)
        #expect(config.warnings.isEmpty, "\(config.warnings)")
        let defaults = try parse("")
        #expect(defaults.storeUnavailableStatus == .gone)
        #expect(defaults.store.threadPoolSize == FilesystemStoreOptions.defaultThreadPoolSize)
    }

    @Test func storeDirectIO_isRead_andOffByDefault() throws {
        let config = try parse("[glance_store]\nfilesystem_store_direct_io = true")
        #expect(config.store.directIO == true)
        #expect(config.warnings.isEmpty, "\(config.warnings)")
        #expect(try parse("").store.directIO == FilesystemStoreOptions.defaultDirectIO)
        #expect(!FilesystemStoreOptions.defaultDirectIO)
    }

    @Test func storeFlushAfter_isReadInMiB_onByDefault_zeroTurnsItOff() throws {
        let config = try parse("[glance_store]\nfilesystem_store_flush_after = 8")
        #expect(config.store.flushAfterMiB == 8)
        #expect(config.warnings.isEmpty, "\(config.warnings)")
        #expect(try parse("[glance_store]\nfilesystem_store_flush_after = 0").store.flushAfterMiB == 0)
        #expect(try parse("").store.flushAfterMiB == FilesystemStoreOptions.defaultFlushAfterMiB)
        #expect(FilesystemStoreOptions.defaultFlushAfterMiB > 0)
    }

    @Test func parse_whenEmptyFile_usesEveryDefault() throws {
        let config = try parse("")
        #expect(config.bindHost == "0.0.0.0")
        #expect(config.bindPort == 9292)
        #expect(config.imageSizeCap == 1_099_511_627_776)
        #expect(config.userStorageQuota == 0)
        #expect(config.enabledBackends == [StoreBackend(id: "file", type: "file")])
        #expect(config.defaultBackend == "file")
        #expect(config.drainTimeout == .seconds(30))
        #expect(config.database == .sqlite(path: "/var/lib/glance/glance.sqlite"))
        #expect(config.pasteFlavor == "noauth")
        #expect(config.pasteConfigFile == nil)
        #expect(config.warnings == [])

        let store = config.store
        #expect(store.datadir == "/var/lib/glance/images")
        #expect(store.filePerm == 0)
        #expect(store.chunkSize == 65536)
        #expect(store.description == nil)
        #expect(store.weight == 0)
        #expect(store.markerFile == ".glance")
        #expect(store.markerPath == "/var/lib/glance/images/.glance")
        #expect(store.requireMountpoint == false)
        #expect(store.mountpointPath == nil)
        #expect(store.effectiveMountpoint == "/var/lib/glance/images")
        #expect(store.mountTypes == ["nfs", "nfs4"])
        #expect(store.isNFSConfigured == false)
        #expect(store.nfsHost == nil)
        #expect(store.nfsSharePath == nil)
        #expect(store.nfsMountOptions == nil)
        #expect(store.guardInterval == .seconds(5))
        #expect(store.guardTimeout == .milliseconds(2000))
        #expect(store.guardMaxAge == .milliseconds(1000))

        let health = config.healthcheck
        #expect(health.backends == [])
        #expect(health.detailed == false)
        #expect(health.allowedSourceRanges == [])
        #expect(health.ignoreProxiedRequests == false)
        #expect(health.disableByFilePath == nil)
        #expect(health.disableByFilePaths == [:])
        #expect(health.enableByFilePaths == [])
        #expect(health.checkInterval == .seconds(5))
        #expect(health.checkTimeout == .milliseconds(1000))
        #expect(health.failureThreshold == 1)
    }

    @Test func parse_whenOptionOnlyInDefault_fallsBackForEverySection() throws {
        let config = try parse(
            """
            [DEFAULT]
            enabled_backends = main:file
            default_backend = main
            filesystem_store_datadir = /from/default
            connection = sqlite:///relative.db
            detailed = true
            [main]
            weight = 9
            """)
        #expect(config.defaultBackend == "main")
        #expect(config.store.datadir == "/from/default")
        #expect(config.store.weight == 9)
        #expect(config.database == .sqlite(path: "relative.db"))
        #expect(config.healthcheck.detailed)
        #expect(config.warnings == [])
    }

    @Test func parse_metrics_ownSectionOnly_defaultsOff() throws {
        #expect(try parse("").metrics == MetricsOptions())
        let config = try parse(
            """
            [DEFAULT]
            bind_host = 0.0.0.0
            bind_port = 9292
            [metrics]
            enabled = true
            """)
        // [DEFAULT]'s bind_port is the API's: [metrics] must not inherit it (both would bind 9292).
        #expect(config.metrics == MetricsOptions(enabled: true, bindHost: nil, bindPort: nil))
        let own = try parse("[metrics]\nenabled = yes\nbind_host = 10.0.0.5\nbind_port = 9102\n")
        #expect(own.metrics == MetricsOptions(enabled: true, bindHost: "10.0.0.5", bindPort: 9102))
        #expect(own.warnings == [])
        #expect(throws: ConfigurationError.self) { try parse("[metrics]\nbind_port = 0\n") }
        #expect(throws: ConfigurationError.self) { try parse("[metrics]\nenabled = maybe\n") }
    }

    @Test func parse_whenCommentsAndContinuationLines_readsTheValues() throws {
        let config = try parse(
            """
            # comment
            ; comment
            [healthcheck]
              # indented comment
            backends = enable_by_files,
                nfs
            enable_by_file_paths = /a
                /b
            """)
        #expect(config.healthcheck.backends == ["enable_by_files", "nfs"])
        #expect(config.healthcheck.enableByFilePaths == ["/a", "/b"])
    }

    @Test func parse_whenLegacyGlanceStoreSection_readsStoreOptionsFromIt() throws {
        let config = try parse(
            """
            [glance_store]
            stores = file,http
            default_store = file
            filesystem_store_datadir = /srv/images
            filesystem_store_chunk_size = 10
            """)
        #expect(config.enabledBackends == [StoreBackend(id: "file", type: "file")])
        #expect(config.defaultBackend == "file")
        #expect(config.store.datadir == "/srv/images")
        #expect(config.store.chunkSize == 10)
        #expect(config.warnings == [])
    }

    @Test func parse_whenTwoBackendsAndDefault_usesTheDefaultsSection() throws {
        let config = try parse(
            """
            [DEFAULT]
            enabled_backends = fast:file, slow:file
            [glance_store]
            default_backend = slow
            [fast]
            filesystem_store_datadir = /fast
            [slow]
            filesystem_store_datadir = /slow
            store_description = cheap disks
            """)
        #expect(config.enabledBackends == [StoreBackend(id: "fast", type: "file"), StoreBackend(id: "slow", type: "file")])
        #expect(config.defaultBackend == "slow")
        #expect(config.store.datadir == "/slow")
        #expect(config.store.description == "cheap disks")
        // Every store is served, each with the options of its own section.
        #expect(config.options(forStore: "fast").datadir == "/fast")
        #expect(config.options(forStore: "slow").datadir == "/slow")
        #expect(config.warnings == [])
    }

    @Test func parse_whenTwoBackends_readsEachStoresOwnGuardAndWeight() throws {
        let config = try parse(
            """
            [DEFAULT]
            enabled_backends = fast:file, nfs:file
            [glance_store]
            default_backend = fast
            [fast]
            filesystem_store_datadir = /fast
            weight = 100
            filesystem_store_reserved_space = 10%
            [nfs]
            filesystem_store_datadir = /mnt/nfs/images
            filesystem_store_require_mountpoint = true
            filesystem_store_marker_file = .nfsmarker
            filesystem_store_chunk_size = 4096
            weight = -5
            """)
        let fast = config.options(forStore: "fast")
        let nfs = config.options(forStore: "nfs")
        #expect(fast.weight == 100)
        #expect(fast.reservedSpace == .percent(10))
        #expect(!fast.requireMountpoint)
        #expect(nfs.datadir == "/mnt/nfs/images")
        #expect(nfs.requireMountpoint)
        #expect(nfs.markerPath == "/mnt/nfs/images/.nfsmarker")
        #expect(nfs.chunkSize == 4096)
        #expect(nfs.weight == -5)
        #expect(config.isGuarded(store: "nfs"))
        #expect(config.warnings == [])
    }

    @Test func parse_locationOptions_defaultOff() throws {
        let off = try parse("[DEFAULT]\n")
        #expect(!off.showImageDirectURL)
        #expect(!off.showMultipleLocations)
        let on = try parse("[DEFAULT]\nshow_image_direct_url = true\nshow_multiple_locations = True\n")
        #expect(on.showImageDirectURL)
        #expect(on.showMultipleLocations)
        #expect(on.warnings == [])
        #expect(throws: ConfigurationError.self) { try parse("[DEFAULT]\nshow_image_direct_url = maybe\n") }
    }

    @Test func parse_whenTwoStoresShareADirectory_isAnError() throws {
        do {
            _ = try parse(
                """
                [DEFAULT]
                enabled_backends = fast:file, nfs:file
                [glance_store]
                default_backend = fast
                [fast]
                filesystem_store_datadir = /srv/images
                [nfs]
                filesystem_store_datadir = /srv/images/
                """)
            Issue.record("two stores on one directory were accepted")
        } catch let error as ConfigurationError {
            #expect(error.section == "nfs")
            #expect(error.reason.contains("same filesystem_store_datadir as store \"fast\""), "\(error)")
        }
    }

    @Test func parse_whenASecondStoresOptionIsBad_isAnError() throws {
        #expect(throws: ConfigurationError.self) {
            try parse(
                """
                [DEFAULT]
                enabled_backends = fast:file, nfs:file
                [glance_store]
                default_backend = fast
                [nfs]
                weight = heavy
                """)
        }
    }

    @Test func parse_whenStoreOptionsInGlanceStoreWithMultiStore_warnsTheyAreIgnored() throws {
        let config = try parse(
            """
            [DEFAULT]
            enabled_backends = main:file
            [glance_store]
            default_backend = main
            filesystem_store_datadir = /ignored
            """)
        #expect(config.store.datadir == "/var/lib/glance/images")
        #expect(
            config.warnings == [
                "\(Self.path):5: [glance_store] filesystem_store_datadir: ignored: enabled_backends is set, so the store's options are read from [main]"
            ])
    }

    @Test func parse_whenNFSConfigured_forcesTheMountpointCheck() throws {
        let config = try parse(
            """
            [glance_store]
            filesystem_is_nfs_configured = true
            filesystem_nfs_host = 192.0.2.5
            filesystem_nfs_share_path = /exports/images
            filesystem_store_require_mountpoint = false
            """)
        #expect(config.store.isNFSConfigured)
        #expect(config.store.requireMountpoint)
        #expect(
            config.warnings == [
                "\(Self.path):5: [glance_store] filesystem_store_require_mountpoint: overridden to true: filesystem_is_nfs_configured = true requires the mount point check"
            ])
    }

    // MARK: Warnings

    @Test func parse_whenUnknownOptionsAndSections_warnsInsteadOfFailing() throws {
        let config = try parse(
            """
            [DEFAULT]
            verbose = true
            filesystem_store_datadir = /known/through/fallback
            [database]
            max_overflow = 5
            [cors]
            allowed_origin = *
            [healthcheck]
            path = /healthcheck
            """)
        #expect(
            config.warnings.sorted() == [
                "\(Self.path):2: [DEFAULT] verbose: unknown option, ignored",
                "\(Self.path):5: [database] max_overflow: unknown option, ignored",
                "\(Self.path):6: [cors]: unknown section, ignored",
                "\(Self.path):9: [healthcheck] path: ignored: the health check always answers at /healthcheck (the option was removed in oslo.middleware 7.0)",
            ])
        #expect(config.store.datadir == "/known/through/fallback")
    }

    // MARK: Logging (oslo.log's names)

    @Test func parse_loggingOptions_withOsloLogsNamesAndDefaults() throws {
        #expect(try parse("[DEFAULT]\n").logging == LoggingOptions())
        let config = try parse(
            """
            [DEFAULT]
            debug = true
            log_file = /var/log/imagestore/api.log
            use_json = yes
            use_stderr = 1
            """)
        #expect(config.logging == LoggingOptions(debug: true, logFile: "/var/log/imagestore/api.log", useJSON: true, useStderr: true))
        #expect(config.warnings == [])
        #expect(throws: ConfigurationError.self) { try parse("[DEFAULT]\ndebug = maybe\n") }
    }

    // MARK: Values

    @Test(arguments: [
        ("0", Int64(0)),
        ("1", 1),
        ("100B", 100),
        ("2KB", 2048),
        ("3MB", 3 << 20),
        ("10GB", 10 << 30),
        ("1TB", 1 << 40),
        ("8388607TB", 8_388_607 << 40),
    ])
    func parse_whenQuotaWithUnit_convertsWith1024(text: String, bytes: Int64) throws {
        #expect(try parse("[DEFAULT]\nuser_storage_quota = \(text)\n").userStorageQuota == bytes)
    }

    @Test(arguments: ["10 GB", "-1", "abc", "10gb", "10G", "GB", "", "+5", "1.5GB", "8388608TB"])
    func parse_whenBadQuota_throwsNamingTheOption(text: String) throws {
        let error = try #require(throws: ConfigurationError.self) {
            try parse("[DEFAULT]\nuser_storage_quota = \(text)\n")
        }
        #expect(error.description.hasPrefix("\(Self.path):2: [DEFAULT] user_storage_quota: \"\(text)\" is not a size"))
    }

    @Test(arguments: [
        ("true", true), ("TRUE", true), ("yes", true), ("On", true), ("1", true),
        ("false", false), ("No", false), ("off", false), ("0", false),
    ])
    func parse_whenBooleanWord_readsItLikeOslo(text: String, value: Bool) throws {
        #expect(try parse("[healthcheck]\ndetailed = \(text)\n").healthcheck.detailed == value)
    }

    @Test(arguments: [
        ("sqlite:////var/lib/x.db", DatabaseLocation.sqlite(path: "/var/lib/x.db")),
        ("sqlite:///rel/x.db", .sqlite(path: "rel/x.db")),
        ("sqlite://", .sqlite(path: ":memory:")),
        ("sqlite:///:memory:", .sqlite(path: ":memory:")),
        ("postgresql://glance:secret@db.example.org:5432/glance", .postgresql(PostgresURL(username: "glance", password: "secret", host: "db.example.org", database: "glance"))),
        ("postgresql+psycopg2://glance@/glance?host=/run/postgresql", .postgresql(PostgresURL(username: "glance", host: nil, unixSocketDirectory: "/run/postgresql", database: "glance"))),
    ])
    func parse_whenDatabaseURL_readsTheLocation(url: String, location: DatabaseLocation) throws {
        #expect(try parse("[database]\nconnection = \(url)\n").database == location)
    }

    @Test func parse_whenPostgresURLHasOptions_readsThemTyped() throws {
        let config = try parse(
            """
            [database]
            connection = postgresql+psycopg2://gl%40nce:p%3Ass@[::1]:6543/images?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=5
            max_pool_size = 12
            pool_timeout = 2.5
            """)
        let url = PostgresURL(
            username: "gl@nce", password: "p:ss", host: "::1", port: 6543, database: "images", tlsMode: .verifyFull,
            rootCertificatePath: "/etc/ca.pem")
        #expect(config.database == .postgresql(url))
        #expect(config.databaseOptions == DatabaseOptions(maxPoolSize: 12, poolTimeout: .milliseconds(2500)))
        #expect(config.warnings == [])
        #expect(!url.description.contains("p:ss"))
    }

    @Test(arguments: [
        ("[database]\nmax_pool_size = 0", "max_pool_size", "between 1 and 1000"),
        ("[database]\npool_timeout = 0", "pool_timeout", "greater than 0"),
        ("[database]\nconnection = postgresql://u:secret@h/db?sslmode=always", "connection", "sslmode \"always\" is not one of"),
        ("[database]\nconnection = postgresql://u:secret@h:99999/db", "connection", "port is not a number"),
    ])
    func parse_whenBadDatabaseOption_throwsNamingTheKey(text: String, key: String, fragment: String) throws {
        let error = try #require(throws: ConfigurationError.self) { try parse(text) }
        #expect(error.description.contains("[database] \(key): "), "\(error)")
        #expect(error.reason.contains(fragment), "\(error)")
        #expect(!error.description.contains("secret"))
    }

    @Test(arguments: [
        ("mysql+pymysql://glance:secret@db/glance", "\"mysql+pymysql\" databases are not supported"),
        ("postgresql://glance:secret@db.example.org", "the PostgreSQL URL does not name a database"),
        ("postgresql://db/", "the PostgreSQL URL does not name a database"),
        ("sqlite:///", "is not a SQLite URL with a file path"),
        ("sqlite:///x.db?mode=ro", "is not a SQLite URL with a file path"),
        ("", "must not be empty"),
    ])
    func parse_whenBadDatabaseURL_throwsNamingTheKey(url: String, fragment: String) throws {
        let error = try #require(throws: ConfigurationError.self) { try parse("[database]\nconnection = \(url)\n") }
        #expect(error.description.hasPrefix("\(Self.path):2: [database] connection: "))
        #expect(error.reason.contains(fragment))
        #expect(!error.description.contains("secret"))  // URLs may carry passwords: never echoed
    }

    /// Each row: the file, then the line, section and key the error must name, and part of the reason.
    @Test(arguments: [
        ("[DEFAULT]\nbind_port = abc", 2, "DEFAULT", "bind_port", "\"abc\" is not an integer between 1 and 65535"),
        ("[DEFAULT]\nbind_port = 0", 2, "DEFAULT", "bind_port", "\"0\" is not an integer between 1 and 65535"),
        ("[DEFAULT]\nbind_port = 65536", 2, "DEFAULT", "bind_port", "between 1 and 65535"),
        ("[DEFAULT]\nbind_host =", 2, "DEFAULT", "bind_host", "must not be empty"),
        ("[DEFAULT]\nbind_host = a b", 2, "DEFAULT", "bind_host", "is not a host name or IP address"),
        ("[DEFAULT]\nimage_size_cap = -1", 2, "DEFAULT", "image_size_cap", "between 0 and 9223372036854775807"),
        ("[DEFAULT]\nimage_size_cap = 9223372036854775808", 2, "DEFAULT", "image_size_cap", "between 0 and"),
        ("[DEFAULT]\nshutdown_drain_timeout = -1", 2, "DEFAULT", "shutdown_drain_timeout", "at least 0"),
        ("[DEFAULT]\nenabled_backends = a", 2, "DEFAULT", "enabled_backends", "\"a\" is not id:type"),
        ("[DEFAULT]\nenabled_backends = a:s3", 2, "DEFAULT", "enabled_backends", "store \"a\" has type \"s3\": only \"file\" is supported"),
        ("[DEFAULT]\nenabled_backends = os_glance_x:file", 2, "DEFAULT", "enabled_backends", "starts with \"os_glance_\""),
        ("[DEFAULT]\nenabled_backends = a:file,a:file", 2, "DEFAULT", "enabled_backends", "given twice"),
        ("[DEFAULT]\nenabled_backends = database:file", 2, "DEFAULT", "enabled_backends", "is the name of another section"),
        ("[DEFAULT]\nenabled_backends = a:file\n[glance_store]\ndefault_backend = b", 4, "glance_store", "default_backend", "\"b\" is not one of the enabled_backends ids (a)"),
        ("[DEFAULT]\nenabled_backends = a:file, c:file\n[glance_store]\n", 3, "glance_store", "default_backend", "must be set to one of the enabled_backends ids (a, c)"),
        ("[glance_store]\ndefault_store = swift", 2, "glance_store", "default_store", "the only store type is \"file\""),
        ("[glance_store]\nfilesystem_store_datadir =", 2, "glance_store", "filesystem_store_datadir", "must not be empty"),
        ("[glance_store]\nfilesystem_store_file_perm = 0200", 2, "glance_store", "filesystem_store_file_perm", "does not let the owner read (0400)"),
        ("[glance_store]\nfilesystem_store_file_perm = 0968", 2, "glance_store", "filesystem_store_file_perm", "is not an octal file mode"),
        ("[glance_store]\nfilesystem_store_file_perm = 17777", 2, "glance_store", "filesystem_store_file_perm", "is not an octal file mode"),
        ("[glance_store]\nfilesystem_store_chunk_size = 0", 2, "glance_store", "filesystem_store_chunk_size", "an integer of at least 1"),
        ("[glance_store]\nweight = heavy", 2, "glance_store", "weight", "\"heavy\" is not an integer"),
        ("[glance_store]\nfilesystem_store_marker_file =", 2, "glance_store", "filesystem_store_marker_file", "must not be empty"),
        ("[glance_store]\nfilesystem_store_require_mountpoint = maybe", 2, "glance_store", "filesystem_store_require_mountpoint", "\"maybe\" is not a boolean"),
        (
            "[glance_store]\nfilesystem_store_datadir = /var/lib/x\nfilesystem_store_mountpoint = /mnt", 3, "glance_store", "filesystem_store_mountpoint",
            "is neither the datadir \"/var/lib/x\" nor a directory above it"
        ),
        ("[glance_store]\nfilesystem_store_datadir = /var/lib/xy\nfilesystem_store_mountpoint = /var/lib/x", 3, "glance_store", "filesystem_store_mountpoint", "nor a directory above it"),
        ("[glance_store]\nfilesystem_store_mount_types = ,", 2, "glance_store", "filesystem_store_mount_types", "at least one filesystem type"),
        ("[glance_store]\nfilesystem_nfs_share_path = exports", 2, "glance_store", "filesystem_nfs_share_path", "not an absolute export path"),
        ("[glance_store]\nmount_guard_interval = 0", 2, "glance_store", "mount_guard_interval", "greater than 0"),
        ("[glance_store]\nmount_guard_timeout = 0", 2, "glance_store", "mount_guard_timeout", "at least 1"),
        ("[glance_store]\nmount_guard_max_age = -1", 2, "glance_store", "mount_guard_max_age", "at least 0"),
        ("[glance_store]\nfilesystem_store_timeout = -1", 2, "glance_store", "filesystem_store_timeout", "between 0 and 86400"),
        ("[glance_store]\nfilesystem_store_timeout = 1.5", 2, "glance_store", "filesystem_store_timeout", "is not an integer"),
        ("[glance_store]\nfilesystem_store_thread_pool_size = 0", 2, "glance_store", "filesystem_store_thread_pool_size", "between 1 and 256"),
        ("[glance_store]\nfilesystem_store_direct_io = sometimes", 2, "glance_store", "filesystem_store_direct_io", "\"sometimes\" is not a boolean"),
        ("[glance_store]\nfilesystem_store_flush_after = -1", 2, "glance_store", "filesystem_store_flush_after", "between 0 and 1024"),
        ("[glance_store]\nfilesystem_store_flush_after = 16M", 2, "glance_store", "filesystem_store_flush_after", "is not an integer"),
        ("[DEFAULT]\nstore_unavailable_status = 404", 2, "DEFAULT", "store_unavailable_status", "must be 410 (the store is gone) or 503"),
        ("[DEFAULT]\nhashing_algorithm = blake2b", 2, "DEFAULT", "hashing_algorithm", "\"blake2b\" is not a hashing algorithm ImageStore has (sha1, sha256, sha384, sha512)"),
        ("[DEFAULT]\nstore_unavailable_status = gone", 2, "DEFAULT", "store_unavailable_status", "is not an integer"),
        ("[glance_store]\nfilesystem_store_reserved_space = lots", 2, "glance_store", "filesystem_store_reserved_space", "\"lots\" is not a size"),
        ("[glance_store]\nfilesystem_store_reserved_space = -1", 2, "glance_store", "filesystem_store_reserved_space", "is not a size"),
        ("[glance_store]\nfilesystem_store_reserved_space = 100%", 2, "glance_store", "filesystem_store_reserved_space", "\"100%\" is not a percentage from 0% to below 100%"),
        ("[glance_store]\nfilesystem_store_reserved_space = x%", 2, "glance_store", "filesystem_store_reserved_space", "is not a percentage"),
        ("[paste_deploy]\nflavor = trusted-auth", 2, "paste_deploy", "flavor", "is not a supported flavor: use \"keystone\" or \"noauth\""),
        (
            "[paste_deploy]\nflavor = keystone\n[keystone_authtoken]\nusername = g\npassword = p\nproject_name = s", 3, "keystone_authtoken", "auth_url",
            "must be set when [paste_deploy] flavor is keystone"
        ),
        (
            "[paste_deploy]\nflavor = keystone\n[keystone_authtoken]\nauth_url = ftp://k\nusername = g\npassword = p\nproject_name = s", 4, "keystone_authtoken", "auth_url",
            "is not an http:// or https:// URL"
        ),
        (
            "[paste_deploy]\nflavor = keystone\n[keystone_authtoken]\nauth_url = http://k:5000\nauth_type = v3token\nusername = g\npassword = p\nproject_name = s", 5, "keystone_authtoken",
            "auth_type", "the only auth_type is \"password\""
        ),
        (
            "[paste_deploy]\nflavor = keystone\n[keystone_authtoken]\nauth_url = http://k:5000\nusername = g\npassword = p", 3, "keystone_authtoken", "project_name",
            "project_name or project_id must be set"
        ),
        (
            "[paste_deploy]\nflavor = keystone\n[keystone_authtoken]\nauth_url = http://k:5000\nusername = g\npassword = p\nproject_name = s\ninterface = private", 8, "keystone_authtoken",
            "interface", "is not one of public, internal, admin"
        ),
        (
            "[paste_deploy]\nflavor = keystone\n[keystone_authtoken]\nauth_url = http://k:5000\nusername = g\npassword = p\nproject_name = s\ntoken_cache_time = -2", 8, "keystone_authtoken",
            "token_cache_time", "is not an integer of at least -1"
        ),
        (
            "[paste_deploy]\nflavor = keystone\n[keystone_authtoken]\nauth_url = http://k:5000\nusername = g\npassword = p\nproject_name = s\nhttp_connect_timeout = 0", 8, "keystone_authtoken",
            "http_connect_timeout", "greater than 0"
        ),
        ("[DEFAULT]\nimage_tag_quota = many", 2, "DEFAULT", "image_tag_quota", "is not an integer"),
        ("[oslo_policy]\nenforce_scope = maybe", 2, "oslo_policy", "enforce_scope", "is not a boolean"),
        ("[healthcheck]\nbackends = disable_by_file, enable_by_files", 2, "healthcheck", "backends", "`enable_by_files` plugin and `disable_by_file` plugin should not be enabled at the same time."),
        (
            "[healthcheck]\nbackends = nfs, http", 2, "healthcheck", "backends",
            "unknown backend \"http\"; known backends: disable_by_file, disable_by_files_ports, enable_by_files, nfs, mountpoint, store, database"
        ),
        ("[healthcheck]\nallowed_source_ranges = 10.0.0.0/33", 2, "healthcheck", "allowed_source_ranges", "\"10.0.0.0/33\" is not an IPv4 or IPv6 network"),
        ("[healthcheck]\nallowed_source_ranges = example.org", 2, "healthcheck", "allowed_source_ranges", "is not an IPv4 or IPv6 network"),
        ("[healthcheck]\nallowed_source_ranges = ::1/129", 2, "healthcheck", "allowed_source_ranges", "is not an IPv4 or IPv6 network"),
        ("[healthcheck]\nallowed_source_ranges = 10.0.0.0/+8", 2, "healthcheck", "allowed_source_ranges", "is not an IPv4 or IPv6 network"),
        ("[healthcheck]\ndisable_by_file_paths = web:/x", 2, "healthcheck", "disable_by_file_paths", "\"web:/x\" is not port:path"),
        ("[healthcheck]\ndisable_by_file_paths = 9292", 2, "healthcheck", "disable_by_file_paths", "is not port:path"),
        ("[healthcheck]\ndisable_by_file_paths = 1:/a, 1:/b", 2, "healthcheck", "disable_by_file_paths", "port 1 is given twice"),
        ("[healthcheck]\ninterval = 0", 2, "healthcheck", "interval", "greater than 0"),
        ("[healthcheck]\ncheck_timeout = 1.5", 2, "healthcheck", "check_timeout", "\"1.5\" is not an integer of at least 1"),
        ("[healthcheck]\nfailure_threshold = 0", 2, "healthcheck", "failure_threshold", "at least 1"),
        ("[healthcheck]\nignore_proxied_requests = 2", 2, "healthcheck", "ignore_proxied_requests", "is not a boolean"),
        ("[DEFAULT]\ndetailed = perhaps\n[healthcheck]\n", 2, "DEFAULT", "detailed", "is not a boolean"),
    ])
    func parse_whenBadValue_throwsNamingFileLineSectionAndKey(
        text: String, line: Int, section: String, key: String, fragment: String
    ) throws {
        let error = try #require(throws: ConfigurationError.self) { try parse(text) }
        #expect(error.path == Self.path)
        #expect(error.line == line)
        #expect(error.section == section)
        #expect(error.key == key)
        #expect(error.description.hasPrefix("\(Self.path):\(line): [\(section)] \(key): "))
        #expect(error.reason.contains(fragment))
    }

    @Test func parse_whenKeystoneFlavor_readsKeystonemiddlewareOptions() throws {
        let config = try parse(
            """
            [DEFAULT]
            image_property_quota = -1
            image_member_quota = 5
            [paste_deploy]
            flavor = keystone+cachemanagement
            [keystone_authtoken]
            auth_uri = http://public.example:5000/v3
            auth_url = http://keystone.example:5000/v3/
            auth_type = password
            username = glance
            password = secret
            project_name = service
            user_domain_name = Default
            project_domain_id = default
            region_name = RegionTwo
            interface = publicURL
            service_token_roles = Service, admin
            service_token_roles_required = false
            token_cache_time = 60
            http_connect_timeout = 2.5
            http_request_max_retries = 0
            memcached_servers = 127.0.0.1:11211
            [oslo_policy]
            policy_file = policies/custom.yaml
            enforce_new_defaults = false
            policy_dirs = policy.d
            """)
        #expect(config.authFlavor == .keystone)
        let keystone = try #require(config.keystone)
        #expect(keystone.authURL == "http://keystone.example:5000/v3")
        #expect(keystone.authenticateURI == "http://public.example:5000/v3")
        #expect(keystone.username == "glance" && keystone.password == "secret" && keystone.projectName == "service")
        #expect(keystone.userDomainName == "Default" && keystone.projectDomainID == "default")
        #expect(keystone.regionName == "RegionTwo" && keystone.interface == "public")
        #expect(keystone.serviceTokenRoles == ["service", "admin"] && !keystone.serviceTokenRolesRequired)
        #expect(keystone.tokenCacheTime == .seconds(60) && keystone.httpConnectTimeout == .milliseconds(2500) && keystone.httpRequestMaxRetries == 0)
        #expect(config.imageLimits == ImageLimits(properties: -1, tags: 128, members: 5, locations: 10))
        #expect(config.policy.policyFile == "/etc/imagestore/policies/custom.yaml" && config.policy.policyFileIsExplicit)
        let warnings = config.warnings.joined(separator: "\n")
        for fragment in [
            "flavor: read as \"keystone\"", "auth_uri: deprecated", "memcached_servers: not implemented by ImageStore",
            "enforce_new_defaults: ignored", "policy_dirs: not implemented by ImageStore",
        ] {
            #expect(warnings.contains(fragment), "no warning containing \(fragment) in:\n\(warnings)")
        }
    }

    @Test func parse_whenNoauth_keystoneSectionIsWarnedAbout_andPolicyFileIsImplicit() throws {
        let config = try parse("[keystone_authtoken]\nauth_url = http://k\n")
        #expect(config.authFlavor == .noauth && config.keystone == nil)
        #expect(config.warnings.contains { $0.contains("[keystone_authtoken]: ignored: [paste_deploy] flavor is noauth") })
        #expect(config.policy.policyFile == "/etc/imagestore/policy.yaml" && !config.policy.policyFileIsExplicit)
        #expect(config.imageLimits == ImageLimits())
    }

    @Test func parse_whenBadPort_messageReadsAsDocumented() throws {
        let text = String(repeating: "# padding\n", count: 10) + "[DEFAULT]\nbind_port = abc\n"
        let error = try #require(throws: ConfigurationError.self) {
            try ServiceConfiguration.parse(text: text, path: "/etc/imagestore.conf")
        }
        #expect(error.description == "/etc/imagestore.conf:12: [DEFAULT] bind_port: \"abc\" is not an integer between 1 and 65535")
    }

    // MARK: Loading

    @Test func load_whenFile_readsItAndRecordsThePath() throws {
        try withTemporaryDirectory { dir in
            let path = try writeFile(dir, "imagestore.conf", "[DEFAULT]\nbind_port = 9393\n")
            let config = try ServiceConfiguration.load(path: path)
            #expect(config.bindPort == 9393)
            #expect(config.sourcePath == path)
        }
    }

    @Test func load_whenFileMissing_throwsNamingIt() throws {
        try withTemporaryDirectory { dir in
            let error = try #require(throws: ConfigurationError.self) {
                try ServiceConfiguration.load(path: dir + "/none.conf")
            }
            #expect(error.description == "\(dir)/none.conf: file not found")
        }
    }

    @Test func embeddedDefault_placesEverythingUnderTheBaseDirectory() {
        let config = ServiceConfiguration.embeddedDefault(baseDirectory: "/tmp/imagestore/")
        #expect(config.sourcePath == nil)
        #expect(config.file == nil)
        #expect(config.bindHost == "127.0.0.1")
        #expect(config.bindPort == 9292)
        #expect(config.store.datadir == "/tmp/imagestore/images")
        #expect(config.database == .sqlite(path: "/tmp/imagestore/imagestore.db"))
        #expect(config.pasteFlavor == "noauth")
        #expect(config.store.requireMountpoint == false)
        #expect(config.store.isNFSConfigured == false)
        #expect(config.healthcheck.backends == [])
        #expect(config.defaultBackend == "file")
        #expect(config.warnings == [])
    }

    /// The Glance spec: NFS configured without host or share disables the store; it does not stop start-up.
    @Test func nfsWithoutHostOrShare_isAWarning_notAnError() throws {
        let config = try ServiceConfiguration.parse(
            text: "[glance_store]\nfilesystem_is_nfs_configured = true\nfilesystem_nfs_share_path = /e\n", path: "/x.conf")
        #expect(config.store.isNFSConfigured)
        #expect(config.store.nfsHost == nil)
        #expect(config.warnings.contains { $0.contains("filesystem_nfs_host must be set") && $0.contains("/x.conf:2") })
    }

    @Test func imageFormatSection_requireMatch_andNonfatalGptChecks() throws {
        let defaults = try parse("")
        #expect(defaults.requireImageFormatMatch)
        #expect(defaults.gptSafetyChecksNonfatal.isEmpty)
        for list in ["mbr", "[mbr]", "mbr, gptmbr"] {
            let config = try parse("[image_format]\nrequire_image_format_match = false\ngpt_safety_checks_nonfatal = \(list)\n")
            #expect(!config.requireImageFormatMatch)
            #expect(config.gptSafetyChecksNonfatal.contains("mbr"))
            #expect(config.warnings.isEmpty, "\(config.warnings)")
        }
    }

    /// Glance's ListOpts and defaults; also read from [DEFAULT] (Glance's deprecated location for them).
    @Test func imageFormatSection_diskAndContainerFormats() throws {
        let defaults = try parse("")
        #expect(defaults.imageFormats.disk == ["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"])
        #expect(defaults.imageFormats.container == ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"])
        let config = try parse("[image_format]\ndisk_formats = qcow2, raw\ncontainer_formats = [bare,ovf]\n")
        #expect(config.imageFormats == ImageFormats(disk: ["qcow2", "raw"], container: ["bare", "ovf"]))
        #expect(config.warnings.isEmpty, "\(config.warnings)")
        let legacy = try parse("[DEFAULT]\ndisk_formats = raw\n")
        #expect(legacy.imageFormats.disk == ["raw"])
        #expect(legacy.imageFormats.container == ImageFormats.defaultContainer)
        #expect(legacy.warnings.isEmpty, "\(legacy.warnings)")
        // An empty list: only null is left, as in Glance.
        #expect(try parse("[image_format]\ndisk_formats =\n").imageFormats.disk == [])
    }
}
