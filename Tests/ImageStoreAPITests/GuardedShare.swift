import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreTestSupport
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real NFS share for the guard scenarios: ganesha exports a directory holding the marker, and that
/// export is bind-mounted (as root) onto the store directory, so the mount point check is real and the
/// bytes the server writes land in the exported directory.
///
///     let share = try await GuardedShare.make()
///     defer { share.tearDown() }
final class GuardedShare: Sendable {
    let ganesha: GaneshaServer
    let temp: TemporaryDirectory
    /// The store directory (`filesystem_store_datadir`), the bind mount's target.
    let datadir: String
    /// The bind mount's filesystem type as /proc/self/mountinfo shows it (ext4, overlay, xfs…).
    let fsType: String

    static let markerName = ".glance"

    private init(ganesha: GaneshaServer, temp: TemporaryDirectory, datadir: String, fsType: String) {
        self.ganesha = ganesha
        self.temp = temp
        self.datadir = datadir
        self.fsType = fsType
    }

    /// Starts ganesha (unless `startGanesha` is false: its port is reserved for a later `start()`) and mounts
    /// the export on the store directory. Cleans up everything itself if any step fails.
    static func make(startGanesha: Bool = true) async throws -> GuardedShare {
        let ganesha = try GaneshaServer()
        var temp: TemporaryDirectory?
        var datadir: String?
        do {
            // Before start: ganesha must not see the export change behind its back.
            try Data().write(to: URL(fileURLWithPath: ganesha.exportDirectory + "/" + markerName))
            if startGanesha { try await ganesha.start() }
            let dir = try TemporaryDirectory(prefix: "imagestore-guard-api")
            temp = dir
            let images = try dir.makeDirectory("images")
            try Mounts.bindMount(source: ganesha.exportDirectory, target: images)
            datadir = images
            let fsType = try #require(mountedFSType(images), "no mountinfo entry for \(images)")
            return GuardedShare(ganesha: ganesha, temp: dir, datadir: images, fsType: fsType)
        } catch {
            if let datadir { Mounts.unmount(datadir) }
            ganesha.shutdown()
            temp?.remove()
            throw error
        }
    }

    /// Unmounts the store directory, kills ganesha (also a stopped one) and removes every directory. Idempotent.
    func tearDown() {
        ganesha.resume()
        while Mounts.isMountPoint(datadir) { guard Mounts.unmount(datadir) else { break } }
        ganesha.shutdown()
        // Only once nothing is mounted: removing through a mount would empty the export instead.
        if !Mounts.isMountPoint(datadir) { temp.remove() }
    }

    var exportDirectory: String { ganesha.exportDirectory }
    var markerPath: String { datadir + "/" + Self.markerName }

    /// The store options of a deployment on this share.
    func storeOptions(host: String? = "127.0.0.1") -> FilesystemStoreOptions {
        FilesystemStoreOptions(
            datadir: datadir, mountTypes: ["nfs", "nfs4", fsType], isNFSConfigured: true, nfsHost: host,
            nfsSharePath: ganesha.pseudoPath, nfsMountOptions: "vers=4,port=\(ganesha.port),timeo=5",
            guardInterval: .milliseconds(200), guardTimeout: .milliseconds(500), guardMaxAge: .milliseconds(100))
    }

    /// As if read from a file (so the guard is on), SQLite beside the store, a free port.
    func configuration(host: String? = "127.0.0.1") -> ServiceConfiguration {
        var configuration = ServiceConfiguration.embeddedDefault(baseDirectory: temp.path)
        configuration.sourcePath = temp.appending("imagestore.conf")
        configuration.bindPort = 0
        configuration.store = storeOptions(host: host)
        return configuration
    }

    /// The same deployment as an INI file, for `imagestore check`.
    func writeConfigFile(host: String? = "127.0.0.1") throws -> String {
        let options = storeOptions(host: host)
        let path = temp.appending("imagestore-\(UUID().uuidString.prefix(8)).conf")
        let text = """
            [DEFAULT]
            enabled_backends = default_backend:file

            [glance_store]
            default_backend = default_backend

            [default_backend]
            filesystem_store_datadir = \(options.datadir)
            filesystem_store_mount_types = \(options.mountTypes.joined(separator: ","))
            filesystem_is_nfs_configured = true
            \(host.map { "filesystem_nfs_host = \($0)" } ?? "")
            filesystem_nfs_share_path = \(options.nfsSharePath ?? "")
            filesystem_nfs_mount_options = \(options.nfsMountOptions ?? "")
            mount_guard_timeout = \(options.guardTimeout.wholeMilliseconds)

            [database]
            connection = sqlite:///\(temp.appending("imagestore.db"))

            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Names in the store directory (as the server sees it), hidden ones included.
    func storeFiles() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: datadir).sorted() }
    /// Names in the exported directory (what the share holds).
    func shareFiles() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: exportDirectory).sorted() }
    func shareBytes(_ id: String) -> [UInt8]? {
        FileManager.default.contents(atPath: exportDirectory + "/" + id).map { Array($0) }
    }

    /// Runs the real application on this configuration behind a real HTTP server.
    func run<T>(
        _ configuration: ServiceConfiguration? = nil, _ body: @Sendable (any TestClientProtocol) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "test.guard")
        logger.logLevel = .critical
        let app = try buildApplication(configuration: configuration ?? self.configuration(), logger: logger)
        return try await app.test(.live, body)
    }
}

/// The filesystem type of the mount on `path` per /proc/self/mountinfo (the topmost one).
func mountedFSType(_ path: String) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
    return text.split(separator: "\n").compactMap { line -> (String, String)? in
        let fields = line.split(separator: " ")
        guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { return nil }
        return (fields[4].replacingOccurrences(of: "\\040", with: " "), String(fields[dash + 1]))
    }.last { $0.0 == path }?.1
}

extension TestClientProtocol {
    /// The default store's `guard` object from `/v2/info/stores/detail`.
    func guardState() async throws -> JSONValue? {
        let (response, body) = try await json("/v2/info/stores/detail", method: .get)
        guard response.status == .ok else { return nil }
        return body?["stores"]?.arrayValue?.first?["guard"]
    }

    /// Waits until the background check reports `state` ("enabled"/"disabled"); fails the test otherwise.
    /// Returns the guard object that showed it (a later one may differ: checks go on every interval).
    @discardableResult
    func waitForGuard(_ state: String, timeout: Duration = .seconds(15)) async throws -> JSONValue? {
        let end = ContinuousClock.now + timeout
        var last: JSONValue?
        while ContinuousClock.now < end {
            last = try await guardState()
            // A check must have run: the state before the first one (enabled, no last_check) says nothing.
            if last?["state"]?.stringValue == state, last?["last_check"]?.stringValue != nil { return last }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("guard not \(state) within \(timeout); last: \(last.map { $0.serialized() } ?? "nil")")
        return nil
    }

    func delete(_ id: String) async throws -> TestResponse {
        try await execute(uri: "/v2/images/\(id)", method: .delete)
    }

    func status(of id: String) async throws -> String? {
        try await image(id)["status"]?.stringValue
    }
}
