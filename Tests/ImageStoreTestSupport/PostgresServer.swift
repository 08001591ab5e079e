import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL 15 (Debian's postgresql-15) for a test: a private cluster made by initdb in a temp
/// dir, listening on a free loopback port with password (SCRAM) authentication, stopped by PID (also when
/// the test fails: `deinit` kills it). As root the cluster runs as the `postgres` user, since PostgreSQL
/// refuses to run as root.
///
/// ```swift
/// let server = try await PostgresServer.start()
/// defer { server.stopNow() }
/// let url = try await server.createDatabase()   // postgresql://imagestore:…@127.0.0.1:PORT/db_…
/// ```
public final class PostgresServer: Sendable {
    public static let binaries = "/usr/lib/postgresql/15/bin"
    public static let username = "imagestore"

    public let directory: TemporaryDirectory
    public let port: Int
    public let password: String
    /// With `start(tls: true)`: the CA that signed the server's certificate (for `localhost` and 127.0.0.1).
    public let certificates: TestCertificates?
    private let process: Mutex<ManagedProcess?>

    public var dataDirectory: String { directory.appending("data") }
    /// Where the server's log goes.
    public var logPath: String { directory.appending("postgres.log") }

    private init(directory: TemporaryDirectory, port: Int, password: String, certificates: TestCertificates?, process: ManagedProcess) {
        self.directory = directory
        self.port = port
        self.password = password
        self.certificates = certificates
        self.process = Mutex(process)
    }

    deinit { stopNow() }

    /// The server's PID while it runs.
    public var pid: pid_t? { process.withLock { $0?.isRunning == true ? $0?.pid : nil } }

    /// Makes the cluster (initdb) and starts it; answers once it accepts connections.
    /// - Parameter tls: `ssl = on` with a certificate signed by a CA made for this server (`certificates`);
    ///   clients may still connect without TLS.
    public static func start(timeout: Duration = .seconds(60), tls: Bool = false) async throws -> PostgresServer {
        guard FileManager.default.isExecutableFile(atPath: binaries + "/initdb") else {
            throw TestSupportError("no PostgreSQL 15 at \(binaries): apt-get install postgresql-15 (scripts/test does)")
        }
        let directory = try TemporaryDirectory(prefix: "imagestore-postgres")
        do {
            let password = UUID().uuidString
            try password.write(toFile: directory.appending("pwfile"), atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: directory.appending("socket"), withIntermediateDirectories: true)
            let certificates = tls ? try await TestCertificates.make(in: try directory.makeDirectory("tls")) : nil
            // Also the key file: PostgreSQL reads it as the postgres user and refuses one it does not own.
            try chownToPostgres(directory.path)
            let initdb = try ManagedProcess(
                "/usr/bin/env",
                arguments: asPostgresUser([
                    binaries + "/initdb", "-D", directory.appending("data"), "-U", username,
                    "--pwfile=" + directory.appending("pwfile"), "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                    "--no-sync",
                ]),
                stdoutPath: directory.appending("initdb.log"), stderrPath: directory.appending("initdb.log"))
            guard let status = await initdb.waitForExit(timeout: timeout), status == 0 else {
                await initdb.kill()
                let log = (try? String(contentsOfFile: directory.appending("initdb.log"), encoding: .utf8)) ?? ""
                throw TestSupportError("initdb failed: \(log.suffix(2000))")
            }
            let port = try freeTCPPort()
            let process = try launch(directory: directory, port: port, certificates: certificates)
            // From here the server owns the directory: its deinit stops the process and removes it.
            let server = PostgresServer(
                directory: directory, port: port, password: password, certificates: certificates, process: process)
            try await server.waitUntilReady(timeout: timeout)
            return server
        } catch {
            directory.remove()
            throw error
        }
    }

    /// `postgresql://imagestore:PASSWORD@127.0.0.1:PORT/NAME`.
    public func url(database: String) -> String {
        "postgresql://\(Self.username):\(password)@127.0.0.1:\(port)/\(database)"
    }

    /// Creates a fresh empty database and returns its URL.
    public func createDatabase(_ name: String = "db_" + UUID().uuidString.prefix(8).lowercased()) async throws -> String {
        try await psql("CREATE DATABASE \(name)")
        return url(database: name)
    }

    /// Runs SQL through psql against `database`; returns its unaligned, tuples-only output.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") async throws -> String {
        let out = directory.appending("psql-\(UUID().uuidString).out")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let process = try ManagedProcess(
            "/usr/bin/psql",
            arguments: ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.username, "-d", database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            environment: ["PGPASSWORD": password], stdoutPath: out, stderrPath: out)
        guard let status = await process.waitForExit(timeout: .seconds(30)) else {
            await process.kill()
            throw TestSupportError("psql did not finish: \(sql)")
        }
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        guard status == 0 else { throw TestSupportError("psql failed (\(status)): \(sql): \(output)") }
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Fast shutdown (SIGINT: open sessions are disconnected), SIGKILL if it lingers; waits for the exit.
    public func stop() async {
        guard let process = process.withLock({ $0 }) else { return }
        if process.isRunning {
            process.signal(SIGINT)
            process.signal(SIGCONT)
            if await process.waitForExit(timeout: .seconds(10)) == nil { await process.kill() }
        }
    }

    /// Starts the server again on the same port and data (after `stop`).
    public func restart(timeout: Duration = .seconds(60)) async throws {
        await stop()
        let process = try Self.launch(directory: directory, port: port, certificates: certificates)
        self.process.withLock { $0 = process }
        try await waitUntilReady(timeout: timeout)
    }

    /// Kills the server and removes its directory (synchronous, for `defer`). Idempotent.
    public func stopNow() {
        process.withLock { process in
            if let process, process.isRunning {
                process.signal(SIGINT)
                // Give the postmaster a moment to stop its children; then make sure.
                for _ in 0..<200 where process.isRunning { usleep(10_000) }
                process.killAndWait()
            }
        }
        directory.remove()
    }

    private func waitUntilReady(timeout: Duration) async throws {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while clock.now < end {
            guard let process = process.withLock({ $0 }), process.isRunning else {
                let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                throw TestSupportError("PostgreSQL exited at start-up: \(log.suffix(2000))")
            }
            if tcpPortAccepts(port), (try? await psql("SELECT 1")) == "1" { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSupportError("PostgreSQL did not accept connections on port \(port) within \(timeout)")
    }

    private static func launch(directory: TemporaryDirectory, port: Int, certificates: TestCertificates?) throws -> ManagedProcess {
        var tls: [String] = []
        if let certificates {
            tls = ["-c", "ssl=on", "-c", "ssl_cert_file=\(certificates.certificatePath)", "-c", "ssl_key_file=\(certificates.keyPath)"]
        }
        return try ManagedProcess(
            "/usr/bin/env",
            arguments: asPostgresUser(
                [
                    binaries + "/postgres", "-D", directory.appending("data"), "-p", "\(port)", "-h", "127.0.0.1",
                    "-k", directory.appending("socket"), "-c", "fsync=off", "-c", "full_page_writes=off",
                    "-c", "max_connections=200", "-c", "shared_buffers=64MB",
                ] + tls),
            stdoutPath: directory.appending("postgres.log"), stderrPath: directory.appending("postgres.log"))
    }

    /// As root, the command under `setpriv` as the postgres user (which execs, so the PID is the server's).
    private static func asPostgresUser(_ command: [String]) -> [String] {
        guard geteuid() == 0 else { return command }
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + command
    }

    private static func chownToPostgres(_ path: String) throws {
        guard geteuid() == 0 else { return }
        guard let user = getpwnam("postgres") else {
            throw TestSupportError("running as root, but there is no postgres user to run PostgreSQL as")
        }
        let uid = user.pointee.pw_uid, gid = user.pointee.pw_gid
        for entry in [path] + ((FileManager.default.subpaths(atPath: path) ?? []).map { path + "/" + $0 }) {
            guard chown(entry, uid, gid) == 0 else {
                throw TestSupportError("chown \(entry): \(String(cString: strerror(errno)))")
            }
        }
    }
}

/// One PostgreSQL server shared by the tests that run at the same time (initdb costs seconds), each test in
/// a database of its own. Started by the first `acquire`, stopped (by PID) and removed when the last user
/// releases it, so none outlives the test run.
public actor SharedPostgresServer {
    public static let shared = SharedPostgresServer()

    private var server: PostgresServer?
    private var starting: Task<PostgresServer, any Error>?
    private var users = 0

    /// The running server, started if needed. Pair with `release()`.
    public func acquire() async throws -> PostgresServer {
        users += 1
        if let server { return server }
        let task = starting ?? Task { try await PostgresServer.start() }
        starting = task
        do {
            let started = try await task.value
            starting = nil
            server = started
            return started
        } catch {
            starting = nil
            users -= 1
            throw error
        }
    }

    public func release() async {
        users -= 1
        guard users == 0, let server else { return }
        self.server = nil
        await server.stop()
        server.stopNow()
    }

    /// Runs `body` with a fresh database's URL on the shared server.
    public static func withDatabase<T: Sendable>(_ body: (PostgresServer, String) async throws -> T) async throws -> T {
        let server = try await shared.acquire()
        do {
            let url = try await server.createDatabase()
            let value = try await body(server, url)
            await shared.release()
            return value
        } catch {
            await shared.release()
            throw error
        }
    }
}
