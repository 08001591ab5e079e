import ArgumentParser
import Foundation
import Hummingbird
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreGuard
import ImageStoreLogging
import ImageStoreMetadata
import ImageStoreNFS
import Logging
import ServiceLifecycle
import UnixSignals

@main
struct ImageStoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imagestore",
        abstract: "An OpenStack Image API v2 (Glance) server that never writes to a missing NFS share.",
        discussion: """
            With no configuration file, `imagestore serve` runs on an embedded default: SQLite and a store \
            directory under ./data, listening on 127.0.0.1:9292, noauth (development only).
            """,
        subcommands: [Serve.self, Check.self, InitStore.self, Database.self, HashSpeed.self],
        defaultSubcommand: nil
    )
}

/// Options shared by subcommands that read the configuration.
struct ConfigOptions: ParsableArguments {
    @Option(name: .customLong("config-file"), help: "A glance-api.conf-style INI file (see etc/imagestore.conf.sample).")
    var configFile: String?

    @Option(
        name: .customLong("secrets-dir"),
        help: "A directory of <section>.<key> files (a Kubernetes Secret volume) overriding the file and IMAGESTORE__SECTION__KEY variables; default $IMAGESTORE_SECRETS_DIR.")
    var secretsDirectory: String?

    func load(logger: Logger) throws -> ServiceConfiguration {
        // Environment variables and the secrets directory override the file, or the embedded default when
        // there is none (docs/kubernetes.md).
        let layers = ConfigurationLayers.process(secretsDirectory: secretsDirectory)
        let configuration: ServiceConfiguration
        if let configFile {
            configuration = try ServiceConfiguration.load(path: configFile, layers: layers)
        } else {
            configuration = try ServiceConfiguration.embeddedDefault(
                baseDirectory: FileManager.default.currentDirectoryPath + "/data", layers: layers)
        }
        for warning in configuration.warnings { logger.warning("\(warning)") }
        return configuration
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the API server.",
        discussion: "Stops gracefully on SIGTERM/SIGINT. SIGHUP reloads logging, [healthcheck] and the policy file (docs/configuration.md).")

    @OptionGroup var config: ConfigOptions

    @Option(help: "HOST:PORT to listen on; overrides bind_host and bind_port.")
    var bind: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical; overrides [DEFAULT] debug.")
    var logLevel: String?

    func run() async throws {
        var quiet = Logger(label: "imagestore")
        quiet.logLevel = .critical
        var configuration: ServiceConfiguration
        let output: LogOutput
        do {
            // Warnings are logged below, once the log goes where the configuration says.
            configuration = try config.load(logger: quiet)
            output = try LogOutput(options: configuration.logging)
        } catch {
            throw ValidationError("configuration: \(error)")
        }
        // swift-log's one process-wide factory: every Logger made from here on (ours, Hummingbird's,
        // the libraries') writes through `output`, which SIGHUP reconfigures.
        LoggingSystem.bootstrap { label in OsloLogHandler(label: label, output: output) }
        var logger = Logger(label: "imagestore")
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level: unknown level \(logLevel)") }
            logger.logLevel = level
        }
        defer { output.flush() }
        for warning in configuration.warnings { logger.warning("\(warning)") }
        if let bind {
            guard let colon = bind.lastIndex(of: ":"), let port = Int(bind[bind.index(after: colon)...]),
                (0...65535).contains(port)
            else { throw ValidationError("--bind must be HOST:PORT, got \(bind)") }
            configuration.bindHost = String(bind[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            configuration.bindPort = port
        }
        if case .postgresql(let url) = configuration.database {
            // A database that is down is not a start-up error (requests answer 503 until it is up); TLS
            // that cannot work is a configuration error, said once, clearly, instead of endless 503s.
            let settings = PostgresImageRepository.Settings(url, options: configuration.databaseOptions)
            switch await PostgresImageRepository.checkConnection(settings, logger: logger) {
            case .connected(let tls):
                logger.info("metadata database answered", metadata: ["tls": "\(tls)", "sslmode": "\(settings.tls.sslmode)"])
                // Missing migrations now, under a start-up deadline, rather than in the first request under
                // pool_timeout (a new table or index on a large catalogue may take longer than a request
                // may wait). Replicas starting together apply each once (advisory lock). If this fails,
                // the first request tries again, as before.
                var migrating = settings
                migrating.maxConnections = 1
                migrating.timeout = max(settings.timeout, .seconds(120))
                do {
                    let schema = try PostgresImageRepository(settings: migrating, logger: logger)
                    defer { schema.close() }
                    let applied = try await schema.migrate()
                    if !applied.isEmpty { logger.notice("metadata schema migrated", metadata: ["applied": "\(applied.joined(separator: ", "))"]) }
                } catch {
                    logger.warning("the metadata schema could not be migrated at start-up: \(error); the first request tries again")
                }
            case .tlsFailed(let reason):
                logger.critical("[database] connection: \(reason)")
                throw ValidationError("[database] connection: \(reason)")
            case .unavailable(let reason):
                logger.warning("the metadata database does not answer at start-up: \(reason); requests that need it answer 503 until it does")
            }
        }
        let reloader = ConfigurationReloader(configuration: configuration, logging: { output.apply($0) }, logger: logger)
        let app = try buildApplication(configuration: configuration, logger: logger, reloader: reloader)
        // SIGHUP (logrotate, or an operator after editing the file): reload what is safe. Trapped before
        // the server listens, so a SIGHUP can never take the default action (terminate).
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let bind = self.bind
        let reload = HangupReload(signals: hangups, reloader: reloader, logger: logger) { [config, logger, configuration] in
            var reloaded = try config.load(logger: logger)
            // --bind is part of the command line, not of the file: it stays.
            if bind != nil { (reloaded.bindHost, reloaded.bindPort) = (configuration.bindHost, configuration.bindPort) }
            return reloaded
        }
        // SIGTERM (Kubernetes) or SIGINT: stop accepting, let requests in flight finish for at most
        // `shutdown_drain_timeout`, then cancel the rest: cancelled uploads remove their temporary file
        // and put their image back to `queued` before the process exits.
        var group = ServiceGroupConfiguration(
            services: [.init(service: app), .init(service: reload, successTerminationBehavior: .ignore)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = configuration.drainTimeout
        do {
            try await ServiceGroup(configuration: group).run()
        } catch is CancellationError {
            // The drain timeout passed and the remaining requests were cancelled (and cleaned up).
            logger.notice("stopped after the drain timeout; requests still running were cancelled")
        }
    }
}

/// Reloads the configuration on each SIGHUP (`ConfigurationReloader` says what is applied). A file that
/// no longer loads is logged and changes nothing: the server goes on with what it has.
struct HangupReload: Service {
    let signals: UnixSignalsSequence
    let reloader: ConfigurationReloader
    let logger: Logger
    let load: @Sendable () throws -> ServiceConfiguration

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                logger.notice("SIGHUP: reloading the configuration")
                do {
                    await reloader.reload(try load())
                } catch {
                    logger.error("SIGHUP: configuration not reloaded, nothing changed: \(error)")
                }
            }
        }
    }
}

struct InitStore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-store",
        abstract: "Write the store directory's marker file (.glance) with a new store id.",
        discussion: """
            The marker belongs on the mounted NFS share: run this only with the share mounted at DIR. \
            ImageStore itself never creates the marker, so its absence means "this is not the share". \
            The store id it holds is recorded by the server at its first check; a share whose marker \
            carries another id is refused ("wrong share"). An existing empty marker (Glance's) is \
            given an id with --adopt.
            """)

    @Argument(help: "The store directory (filesystem_store_datadir); with --config-file, the configured one.")
    var directory: String?

    @Option(help: "Marker file name (filesystem_store_marker_file); an absolute path is used as it is.")
    var marker: String?

    @Option(name: .customLong("config-file"), help: "Take the store directory and marker from this configuration file.")
    var configFile: String?

    @Flag(help: "Write a store id into an existing marker that has none (Glance's empty .glance).")
    var adopt = false

    @Option(
        name: .customLong("store-id"),
        help: "Write this store id instead of a new one (to give a replacement share the id the server recorded).")
    var storeID: String?

    @Option(name: .customLong("store"), help: "With --config-file and enabled_backends: the store whose directory and marker to use (default: default_backend).")
    var store: String?

    /// Seconds any one filesystem call may take: a hung share must not hang the command.
    static let deadline: Duration = .seconds(10)

    func run() async throws {
        if let storeID, storeID.isEmpty || storeID.contains(where: { $0.isWhitespace || $0 == "#" || $0 == "=" }) {
            throw ValidationError("--store-id must be one word without spaces, '#' or '='")
        }
        var chosen = self.directory
        var markerName = marker ?? FilesystemStoreOptions.defaultMarkerFile
        if let configFile {
            let store: FilesystemStoreOptions
            do {
                let configuration = try ServiceConfiguration.load(path: configFile)
                store = try Check.options(of: self.store, in: configuration)
            } catch let error as ValidationError {
                throw error
            } catch {
                throw ValidationError("configuration: \(error)")
            }
            chosen = chosen ?? store.datadir
            markerName = marker ?? store.markerFile
        }
        guard let directory = chosen else { throw ValidationError("give the store directory, or --config-file") }
        let path = markerName.hasPrefix("/") ? markerName : (directory as NSString).appendingPathComponent(markerName)
        let executor = BlockingCallExecutor(name: "init-store")
        func blocking<T: Sendable>(_ what: String, _ body: @escaping @Sendable () -> T) async throws -> T {
            guard case .completed(let value) = await executor.run(deadline: Self.deadline, body) else {
                throw ValidationError("\(what) did not answer within \(Self.deadline): is the share hung?")
            }
            return value
        }
        let isDirectory = try await blocking("stat \(directory)") { () -> Bool in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        guard isDirectory else { throw ValidationError("\(directory) is not a directory") }
        let existing: StoreMarker?
        switch try await blocking("reading \(path)", { StoreMarker.readText(at: path) }) {
        case .success(let text): existing = StoreMarker(parsing: text)
        case .failure(let error) where error.code == .ENOENT: existing = nil
        case .failure(let error): throw ValidationError("cannot read \(path): \(String(cString: strerror(error.code.rawValue)))")
        }
        var written = StoreMarker.new()
        if let storeID { written.storeID = storeID }
        switch (existing, adopt) {
        case (nil, true):
            throw ValidationError("there is no marker at \(path) to adopt; run without --adopt to create one")
        case (let marker?, false) where marker.storeID == nil:
            throw ValidationError(
                "\(path) exists without a store id (Glance's empty marker); run with --adopt to write one into it")
        case (let marker?, false):
            throw ValidationError("\(path) already holds store id \(marker.storeID ?? ""); nothing changed")
        case (let marker?, true) where marker.storeID != nil && (storeID == nil || storeID == marker.storeID):
            print("\(path) already holds store id \(marker.storeID ?? ""); nothing changed")
            return
        default:
            break
        }
        let marker = written
        let outcome = try await blocking("writing \(path)") { () -> String? in
            do {
                try marker.write(to: path)
                return nil
            } catch {
                return "\(error.localizedDescription)"
            }
        }
        if let outcome { throw ValidationError("could not write \(path): \(outcome)") }
        print("\(existing == nil ? "created" : "wrote") \(path) with store id \(written.storeID ?? "")")
        print("warning: the marker belongs on the mounted share; if \(directory) is not the mounted NFS share, remove it.")
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every mount guard check once and print the results.",
        discussion: """
            Checks the configuration, the marker file (and the store id recorded for it), the mount point and \
            the NFS server (libnfs) exactly as the server does before a write. Exit status 0 only when every \
            check passes (skipped checks are not configured), 1 when the store would be disabled, 2 when the \
            configuration cannot be used. Run it before enabling the service; --json for automation.
            """)

    @OptionGroup var config: ConfigOptions
    @Flag(help: "Print one JSON object (the same facts as the table) instead of the table.")
    var json = false
    @Option(name: .customLong("store"), help: "With enabled_backends: the store to check (default: default_backend); each store has its own guard.")
    var storeID: String?

    /// The options of store `id` (nil: the default backend); an id that is not enabled is a usage error.
    static func options(of id: String?, in configuration: ServiceConfiguration) throws -> FilesystemStoreOptions {
        guard let id else { return configuration.store }
        guard configuration.enabledBackends.contains(where: { $0.id == id }) else {
            throw ValidationError(
                "store \"\(id)\" is not one of enabled_backends (\(configuration.enabledBackends.map(\.id).joined(separator: ", ")))")
        }
        return configuration.options(forStore: id)
    }

    /// What `check` found: printed as a table for people or as JSON for automation.
    struct Report: Encodable {
        struct Row: Encodable {
            var check: String
            var result: String
            var detail: String
            var ms: Double
        }
        var store: String  // "enabled", "disabled", or "unusable" (configuration error)
        var reason: String?
        var guarded = true
        var checks: [Row] = []
        var freeBytes: Int64?
        var totalBytes: Int64?
        var warnings: [String] = []
        var exitCode: Int32

        enum CodingKeys: String, CodingKey {
            case store, reason, guarded, checks, warnings
            case freeBytes = "free_bytes", totalBytes = "total_bytes", exitCode = "exit_code"
        }
    }

    func run() async throws {
        let report = await makeReport()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            printTable(report)
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }

    private func makeReport() async -> Report {
        var logger = Logger(label: "imagestore.check")
        logger.logLevel = .critical
        let configuration: ServiceConfiguration
        do {
            configuration = try config.load(logger: logger)
        } catch {
            return Report(store: "unusable", reason: "configuration: \(error)", exitCode: 2)
        }
        // The server runs the embedded default unguarded; saying its marker fails would contradict a
        // server that accepts writes on the same defaults.
        let storeID = self.storeID ?? configuration.defaultBackend
        let options: FilesystemStoreOptions
        do {
            options = try Self.options(of: storeID, in: configuration)
        } catch {
            return Report(store: "unusable", reason: "configuration: \(error)", exitCode: 2)
        }
        guard configuration.isGuarded(store: storeID) else {
            return Report(
                store: "enabled",
                reason: "embedded default: \(configuration.store.datadir) is a plain local directory, not guarded; "
                    + "pass --config-file to check a deployed store",
                guarded: false, exitCode: 0)
        }
        // The share's id is compared with the one the server recorded (never recording one itself), when
        // the database is there to ask: a check that cannot reach it says so and checks the rest.
        var identity: StoreIdentityRecord?
        var identityNote: String?
        if case .sqlite(let path) = configuration.database, !FileManager.default.fileExists(atPath: path) {
            identityNote = "store id not compared: no database at \(path) yet (the server records it on its first check)"
        } else {
            do {
                let repository = try ApplicationDependencies.makeRepository(configuration, logger: logger)
                identity = .readOnly(repository: repository, store: storeID)
            } catch {
                identityNote = "store id not compared: the metadata database did not open: \(error)"
            }
        }
        let mountGuard: MountGuard
        do {
            mountGuard = try ApplicationDependencies.makeMountGuard(options, identity: identity, logger: logger)
        } catch {
            return Report(store: "unusable", reason: "configuration: \(error)", exitCode: 2)
        }
        let state = await mountGuard.runAllChecks()
        // The logger is silenced to keep the output readable, but warnings (unknown options, unknown NFS
        // mount options) are exactly what a deployer runs `check` to see.
        let warnings =
            configuration.warnings + (mountGuard.settings.nfsTarget?.options.warnings ?? []) + [identityNote].compactMap { $0 }
        return Report(
            store: state.enabled ? "enabled" : "disabled", reason: state.enabled ? nil : state.reason ?? "",
            checks: state.orderedResults.map {
                Report.Row(check: $0.check.rawValue, result: $0.verdict.rawValue, detail: $0.detail, ms: $0.elapsed.fractionalMilliseconds)
            },
            freeBytes: state.freeBytes, totalBytes: state.totalBytes, warnings: warnings, exitCode: state.enabled ? 0 : 1)
    }

    private func printTable(_ report: Report) {
        if report.store == "unusable" {
            print(report.reason ?? "configuration: unusable")
            return
        }
        guard report.guarded else {
            print("store: enabled (\(report.reason ?? ""))")
            return
        }
        let rows = report.checks.map { [$0.check, $0.result.uppercased(), $0.detail, String(format: "%.1f", $0.ms)] }
        print(CheckTable.render(header: ["CHECK", "RESULT", "DETAIL", "MS"], rows: rows))
        for warning in report.warnings { print("warning: \(warning)") }
        if let free = report.freeBytes, let total = report.totalBytes {
            print("free space: \(free / (1 << 20)) MiB of \(total / (1 << 20)) MiB")
        }
        print(report.store == "enabled" ? "store: enabled" : "store: disabled (\(report.reason ?? ""))")
    }
}

/// `imagestore db …`: glance-manage's schema verbs, and moving a catalogue between engines.
struct Database: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Manage the metadata database (SQLite or PostgreSQL).",
        subcommands: [Sync.self, Version.self, Copy.self, LoadMetadefs.self])

    /// The repository for `[database] connection` of the configuration, or for `--connection`.
    static func open(
        _ config: ConfigOptions, connection: String?, migrate: Bool = true, logger: Logger
    ) throws -> any ImageRepository & MetadataSchemaVersioned {
        let configuration = try config.load(logger: logger)
        var location = configuration.database
        if let connection {
            switch DatabaseLocation.parse(connection) {
            case .success(let parsed): location = parsed
            case .failure(let reason): throw ValidationError("--connection: \(reason)")
            }
        }
        if case .sqlite(let path) = location, !migrate {
            guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("no SQLite database at \(path)") }
            return try SQLiteImageRepository(path: path, logger: logger, migrate: false)
        }
        let repository = try ApplicationDependencies.makeRepository(location, options: configuration.databaseOptions, logger: logger)
        guard let versioned = repository as? any ImageRepository & MetadataSchemaVersioned else {
            throw ValidationError("this database has no schema versions")
        }
        return versioned
    }

    /// For PostgreSQL, one direct connection first: a TLS or login problem is printed as such (exit 1)
    /// instead of the pool's "did not answer within …" at the deadline.
    static func checkConnection(_ repository: any ImageRepository, role: String = "database") async throws {
        guard let postgres = repository as? PostgresImageRepository else { return }
        switch await PostgresImageRepository.checkConnection(postgres.settings, logger: quietLogger) {
        case .connected: return
        case .tlsFailed(let reason), .unavailable(let reason):
            print("cannot connect to the \(role): \(reason)")
            await postgres.shutdown()
            throw ExitCode(1)
        }
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "imagestore.db")
        logger.logLevel = .error
        return logger
    }

    struct Sync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or upgrade the schema (glance-manage db sync).",
            discussion: "Applies, in order, every migration the database lacks; running it again changes nothing.")
        @OptionGroup var config: ConfigOptions
        @Option(help: "A database URL instead of the configuration's [database] connection.")
        var connection: String?

        func run() async throws {
            let repository = try Database.open(config, connection: connection, logger: Database.quietLogger)
            try await Database.checkConnection(repository)
            let applied = try await repository.migrate()
            let all = try await repository.appliedMigrations()
            print(applied.isEmpty ? "already current" : "applied: \(applied.joined(separator: ", "))")
            print("version: \(all.last ?? "none")")
            if let postgres = repository as? PostgresImageRepository { await postgres.shutdown() }
        }
    }

    struct Version: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the schema version: the last migration applied (glance-manage db version).",
            discussion: "Exit status 1 when the database lacks migrations this build knows (run db sync).")
        @OptionGroup var config: ConfigOptions
        @Option(help: "A database URL instead of the configuration's [database] connection.")
        var connection: String?

        func run() async throws {
            let repository = try Database.open(config, connection: connection, migrate: false, logger: Database.quietLogger)
            try await Database.checkConnection(repository)
            let applied = try await repository.appliedMigrations()
            if let postgres = repository as? PostgresImageRepository { await postgres.shutdown() }
            let known = type(of: repository).knownMigrations
            print(applied.last ?? "none")
            let missing = known.filter { !applied.contains($0) }
            if !missing.isEmpty {
                print("not applied: \(missing.joined(separator: ", ")) (run imagestore db sync)")
                throw ExitCode(1)
            }
        }
    }

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a whole catalogue into an empty PostgreSQL database.",
            discussion: """
                Copies every image (all statuses, dates unchanged) with its tags, properties and members from \
                --from (sqlite:////path.db or postgresql://…) into --to (postgresql://…), in one transaction, \
                then checks the row counts. Image data is not touched: point the new configuration at the same \
                store directory. Stop the servers using --from first.
                """)
        @Option(help: "The source database URL (sqlite:////absolute/path.db or postgresql://…).")
        var from: String
        @Option(help: "The destination PostgreSQL URL (postgresql://user:password@host/db); must hold no images.")
        var to: String

        func run() async throws {
            let logger = Database.quietLogger
            guard case .success(let source) = DatabaseLocation.parse(from) else { throw ValidationError("--from is not a database URL") }
            guard case .success(.postgresql(let destinationURL)) = DatabaseLocation.parse(to) else {
                throw ValidationError("--to must be a postgresql:// URL naming a database")
            }
            if case .sqlite(let path) = source, !FileManager.default.fileExists(atPath: path) {
                throw ValidationError("no SQLite database at \(path)")
            }
            let options = DatabaseOptions(maxPoolSize: 2, poolTimeout: .seconds(60))
            let sourceRepository = try ApplicationDependencies.makeRepository(source, options: options, logger: logger)
            let destination = try PostgresImageRepository(settings: .init(destinationURL, options: options), logger: logger)
            try await Database.checkConnection(sourceRepository, role: "source (--from)")
            try await Database.checkConnection(destination, role: "destination (--to)")
            do {
                let counts = try await CatalogueCopy.copy(from: sourceRepository, to: destination)
                print("copied: \(counts)")
                print("counts checked: the destination holds exactly what was read")
            } catch {
                print("copy failed: \(error)")
                await destination.shutdown()
                throw ExitCode(1)
            }
            await destination.shutdown()
            if let postgres = sourceRepository as? PostgresImageRepository { await postgres.shutdown() }
        }
    }
}

enum CheckTable {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// Glance's `glance-manage db_load_metadefs`: loads namespace JSON files (Glance's `etc/metadefs`, or ours).
struct LoadMetadefs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load-metadefs",
        abstract: "Load metadata definition namespaces from the *.json files of a directory.",
        discussion: "A namespace that already exists is skipped unless --overwrite (then it is replaced).")

    @OptionGroup var config: ConfigOptions

    @Argument(help: "Directory of namespace JSON files (e.g. etc/metadefs).")
    var directory: String

    @Flag(help: "Replace namespaces that already exist.")
    var overwrite = false

    func run() async throws {
        var logger = Logger(label: "imagestore.db")
        logger.logLevel = .warning
        let configuration = try config.load(logger: logger)
        let repository = try ApplicationDependencies.makeRepository(configuration, logger: logger)
        try await Database.checkConnection(repository)
        let metadefs = ApplicationDependencies.metadefs(beside: repository)
        let report = try await MetadefLoader.load(directory: directory, into: metadefs, overwrite: overwrite)
        if let postgres = repository as? PostgresImageRepository { await postgres.shutdown() }
        for name in report.loaded { print("loaded \(name)") }
        for name in report.skipped { print("skipped \(name) (exists; --overwrite replaces it)") }
        print("\(report.loaded.count) loaded, \(report.skipped.count) skipped")
    }
}
