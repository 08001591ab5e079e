import Foundation
import Synchronization
import Testing

/// A real nfs-ganesha (NFSv4, VFS backend) serving a fresh export directory on its own 127.0.0.1 port, for tests.
/// Every instance has its own port, directories, config, log and pid file, so tests may run several at once.
///
///     let server = try GaneshaServer()
///     defer { server.shutdown() }
///     try Data().write(to: URL(fileURLWithPath: server.exportDirectory + "/marker"))  // before start: see below
///     try await server.start()
///
/// Put files into the export before `start()` (or change them through NFS): ganesha caches what it has seen, and
/// files changed behind its back can show stale results.
public final class GaneshaServer: Sendable {
    public static let executable = "ganesha.nfsd"
    public static let skipVariable = "IMAGESTORE_SKIP_NFS_TESTS"

    /// True when ganesha is missing and IMAGESTORE_SKIP_NFS_TESTS=1 asks to skip: use with
    /// `@Test(.disabled(if: GaneshaServer.skipRequested, GaneshaServer.skipMessage))`. Without the variable a missing
    /// ganesha makes `start()` throw, so the test fails loudly instead of passing vacuously.
    public static var skipRequested: Bool {
        ProcessInfo.processInfo.environment[skipVariable] == "1" && !isInstalled
    }
    public static let skipMessage: Comment = "ganesha.nfsd is not installed and IMAGESTORE_SKIP_NFS_TESTS=1"
    public static var isInstalled: Bool { ManagedProcess.resolve(executable) != nil }

    /// The trait for tests that need a real server.
    public static var requiredTrait: ConditionTrait { .disabled(if: skipRequested, skipMessage) }

    public let directory: TemporaryDirectory
    /// The directory ganesha exports.
    public let exportDirectory: String
    /// The NFSv4 path clients mount.
    public let pseudoPath = "/images"
    public let host = "127.0.0.1"
    public let logPath: String
    public let configPath: String
    private let state: Mutex<State>

    private struct State {
        var port: Int
        var process: ManagedProcess?
        var stopped = false
    }

    /// The port ganesha listens on (fixed once started; `restart()` keeps it).
    public var port: Int { state.withLock { $0.port } }
    /// Between `stop()` and `resume()`.
    public var isStopped: Bool { state.withLock { $0.stopped } }
    /// The running process, if any.
    public var pid: pid_t? { state.withLock { $0.process?.pid } }
    /// The libnfs URL of the export.
    public var url: String { "nfs://\(host)\(pseudoPath)?version=4&nfsport=\(port)" }

    public init() throws {
        directory = try TemporaryDirectory(prefix: "imagestore-ganesha")
        exportDirectory = try directory.makeDirectory("export")
        try directory.makeDirectory("recovery")
        logPath = directory.appending("ganesha.log")
        configPath = directory.appending("ganesha.conf")
        state = Mutex(State(port: try freeTCPPort()))
    }

    /// Starts ganesha and waits until it serves: first until the port accepts TCP, then until `ready` says so (by
    /// default: `nfs-ls` mounts the export, when libnfs-utils is installed), because ganesha accepts connections
    /// slightly before it answers NFS. Throws (with the log's tail) if it exits or is not ready within `timeout`.
    public func start(
        timeout: Duration = .seconds(20), ready: (@Sendable (GaneshaServer) async -> Bool)? = nil
    ) async throws {
        guard GaneshaServer.isInstalled else {
            throw TestSupportError(
                "\(GaneshaServer.executable) not found: install nfs-ganesha and nfs-ganesha-vfs, "
                    + "or set \(GaneshaServer.skipVariable)=1 to skip the NFS tests")
        }
        // A port that was free when chosen can be taken before ganesha binds it: retry with a new one, but only on
        // the first start (a restart must keep its port).
        let firstStart = state.withLock { $0.process == nil }
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await launchAndWait(timeout: timeout, ready: ready ?? GaneshaServer.nfsLsReady)
                return
            } catch let error as LaunchError where error.portInUse && firstStart && attempt < 4 {
                state.withLock { $0.port = (try? freeTCPPort()) ?? $0.port }
            } catch let error as LaunchError {
                throw TestSupportError(error.message)
            }
        }
    }

    private struct LaunchError: Error {
        var message: String
        var portInUse: Bool
    }

    private func launchAndWait(timeout: Duration, ready: @Sendable (GaneshaServer) async -> Bool) async throws {
        let port = self.port
        try writeConfig(port: port)
        let logOffset = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
        let process = try ManagedProcess(
            GaneshaServer.executable,
            arguments: ["-F", "-f", configPath, "-L", logPath, "-p", directory.appending("ganesha.pid")],
            stdoutPath: directory.appending("stdout.log"), stderrPath: directory.appending("stderr.log"))
        state.withLock {
            $0.process = process
            $0.stopped = false
        }

        let clock = ContinuousClock()
        let end = clock.now + timeout
        var tcpUp = false
        while clock.now < end {
            if !process.isRunning {
                let tail = logTail(from: logOffset)
                throw LaunchError(
                    message: "ganesha exited during start (status \(process.exitStatus ?? -1)); log:\n\(tail)",
                    portInUse: tail.contains("Address already in use") || tail.contains("Cannot bind"))
            }
            if !tcpUp {
                tcpUp = tcpPortAccepts(port, host: host)
            } else if await ready(self) {
                return
            }
            try await Task.sleep(for: .milliseconds(tcpUp ? 20 : 10))
        }
        await process.kill()
        throw LaunchError(
            message:
                "ganesha not ready on port \(port) within \(timeout) (tcp: \(tcpUp)); log:\n\(logTail(from: logOffset))",
            portInUse: false)
    }

    /// Readiness by mounting the export with libnfs-utils' `nfs-ls`; TCP alone when it is not installed.
    @Sendable public static func nfsLsReady(_ server: GaneshaServer) async -> Bool {
        guard ManagedProcess.resolve("nfs-ls") != nil else { return true }
        guard let ls = try? ManagedProcess("nfs-ls", arguments: [server.url]) else { return false }
        guard let status = await ls.waitForExit(timeout: .seconds(5)) else {
            await ls.kill()
            return false
        }
        return status == 0
    }

    private func writeConfig(port: Int) throws {
        let config = """
            NFS_CORE_PARAM {
                Bind_addr = \(host);
                NFS_Port = \(port);
                Enable_NLM = false;
                Enable_RQUOTA = false;
                Protocols = 4;
            }
            NFSv4 {
                # No grace period: a restarted server serves at once.
                Graceless = true;
                RecoveryBackend = fs;
                RecoveryRoot = \(directory.appending("recovery"));
            }
            EXPORT {
                Export_Id = 1;
                Path = \(exportDirectory);
                Pseudo = \(pseudoPath);
                Access_Type = RW;
                Squash = No_Root_Squash;
                Protocols = 4;
                Transports = TCP;
                SecType = sys;
                FSAL { Name = VFS; }
            }

            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// The log written since `offset` (last 40 lines), for error messages.
    public func logTail(from offset: Int = 0) -> String {
        guard let data = FileManager.default.contents(atPath: logPath) else { return "(no log)" }
        let text = String(decoding: data.dropFirst(offset), as: UTF8.self)
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(40).joined(separator: "\n")
    }

    private var process: ManagedProcess? { state.withLock { $0.process } }

    /// SIGKILL: the server is gone at once (connections reset). Waits until it is reaped.
    public func kill() async {
        await process?.kill()
    }

    /// SIGSTOP: the server hangs (connections stay open, nothing answers). Returns once all its threads are
    /// stopped, so the next request really meets a hung server.
    public func stop() async throws {
        guard let process else { throw TestSupportError("ganesha is not running") }
        try await process.suspend()
        state.withLock { $0.stopped = true }
    }

    /// SIGCONT after `stop()`. Safe to call in a `defer`, also when not stopped.
    public func resume() {
        process?.resume()
        state.withLock { $0.stopped = false }
    }

    /// Kills the running server (if any) and starts a new one on the same port and export.
    public func restart(
        timeout: Duration = .seconds(20), ready: (@Sendable (GaneshaServer) async -> Bool)? = nil
    )
        async throws
    {
        await kill()
        try await start(timeout: timeout, ready: ready)
    }

    /// Kills the server (if running), waits for it and removes its directories. Synchronous so it fits a `defer`;
    /// always safe, any number of times.
    public func shutdown() {
        process?.killAndWait()
        directory.remove()
    }
}
