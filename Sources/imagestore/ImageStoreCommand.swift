import ArgumentParser
import Foundation
import Hummingbird
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreGuard
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
        subcommands: [Serve.self, Check.self, InitStore.self, Database.self],
        defaultSubcommand: nil
    )
}

/// Options shared by subcommands that read the configuration.
struct ConfigOptions: ParsableArguments {
    @Option(name: .customLong("config-file"), help: "A glance-api.conf-style INI file (see etc/imagestore.conf.sample).")
    var configFile: String?

    func load(logger: Logger) throws -> ServiceConfiguration {
        guard let configFile else {
            let base = FileManager.default.currentDirectoryPath + "/data"
            return ServiceConfiguration.embeddedDefault(baseDirectory: base)
        }
        let configuration = try ServiceConfiguration.load(path: configFile)
        for warning in configuration.warnings { logger.warning("\(warning)") }
        return configuration
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the API server.",
        discussion: "Stops gracefully on SIGTERM/SIGINT.")

    @OptionGroup var config: ConfigOptions

    @Option(help: "HOST:PORT to listen on; overrides bind_host and bind_port.")
    var bind: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        var logger = Logger(label: "imagestore")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        var configuration: ServiceConfiguration
        do {
            configuration = try config.load(logger: logger)
        } catch {
            throw ValidationError("configuration: \(error)")
        }
        if let bind {
            guard let colon = bind.lastIndex(of: ":"), let port = Int(bind[bind.index(after: colon)...]),
                (0...65535).contains(port)
            else { throw ValidationError("--bind must be HOST:PORT, got \(bind)") }
            configuration.bindHost = String(bind[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            configuration.bindPort = port
        }
        let app = try buildApplication(configuration: configuration, logger: logger)
        // SIGTERM (Kubernetes) or SIGINT: stop accepting, let requests in flight finish for at most
        // `shutdown_drain_timeout`, then cancel the rest: cancelled uploads remove their temporary file
        // and put their image back to `queued` before the process exits.
        var group = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = .milliseconds(Int64(configuration.drainTimeout * 1000))
        do {
            try await ServiceGroup(configuration: group).run()
        } catch is CancellationError {
            // The drain timeout passed and the remaining requests were cancelled (and cleaned up).
            logger.notice("stopped after the drain timeout; requests still running were cancelled")
        }
    }
}

struct InitStore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-store",
        abstract: "Create the store directory's marker file (.glance).",
        discussion: """
            The marker belongs on the mounted NFS share: run this only with the share mounted at DIR. \
            ImageStore itself never creates the marker, so its absence means "this is not the share".
            """)

    @Argument(help: "The store directory (filesystem_store_datadir).")
    var directory: String

    @Option(help: "Marker file name (filesystem_store_marker_file).")
    var marker: String = ".glance"

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("\(directory) is not a directory")
        }
        let path = (directory as NSString).appendingPathComponent(marker)
        guard FileManager.default.createFile(atPath: path, contents: Data()) else {
            throw ValidationError("could not create \(path)")
        }
        print("created \(path)")
        print("warning: the marker belongs on the mounted share; if \(directory) is not the mounted NFS share, remove it.")
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every mount guard check once and print the results.",
        discussion: """
            Checks the configuration, the marker file, the mount point and the NFS server (libnfs) exactly as \
            the server does before a write. Exit status 0 only when every check passes (skipped checks are \
            not configured). Run it before enabling the service.
            """)

    @OptionGroup var config: ConfigOptions

    func run() async throws {
        var logger = Logger(label: "imagestore.check")
        logger.logLevel = .critical
        let configuration: ServiceConfiguration
        do {
            configuration = try config.load(logger: logger)
        } catch {
            print("configuration: \(error)")
            throw ExitCode(2)
        }
        let mountGuard: MountGuard
        do {
            mountGuard = try ApplicationDependencies.makeMountGuard(configuration.store, logger: logger)
        } catch {
            print("configuration: \(error)")
            throw ExitCode(2)
        }
        let state = await mountGuard.runAllChecks()
        let rows = state.orderedResults.map { result in
            [result.check.rawValue, result.verdict.rawValue.uppercased(), result.detail, "\(result.elapsed.milliseconds)"]
        }
        print(CheckTable.render(header: ["CHECK", "RESULT", "DETAIL", "MS"], rows: rows))
        // The logger is silenced to keep the table readable, but warnings (unknown options, unknown NFS mount
        // options) are exactly what a deployer runs `check` to see.
        for warning in configuration.warnings + (mountGuard.settings.nfsTarget?.options.warnings ?? []) {
            print("warning: \(warning)")
        }
        if let free = state.freeBytes, let total = state.totalBytes {
            print("free space: \(free / (1 << 20)) MiB of \(total / (1 << 20)) MiB")
        }
        print(state.enabled ? "store: enabled" : "store: disabled (\(state.reason ?? ""))")
        if !state.enabled { throw ExitCode(1) }
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

extension Duration {
    var milliseconds: String {
        let ms = Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
        return String(format: "%.1f", ms)
    }
}

/// `imagestore db …`: maintenance of the metadata database.
struct Database: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Metadata database maintenance.", subcommands: [LoadMetadefs.self])
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
        let metadefs = ApplicationDependencies.metadefs(beside: repository)
        let report = try await MetadefLoader.load(directory: directory, into: metadefs, overwrite: overwrite)
        for name in report.loaded { print("loaded \(name)") }
        for name in report.skipped { print("skipped \(name) (exists; --overwrite replaces it)") }
        print("\(report.loaded.count) loaded, \(report.skipped.count) skipped")
    }
}
