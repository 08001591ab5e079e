import Foundation
import Synchronization
import Testing

/// A real Keystone 30 for a test: SQLite and fernet keys in a temp dir, uWSGI on a free loopback port,
/// stopped by PID (also when the test fails; `deinit` kills it). Set up by `scripts/keystone_local.py`
/// from the venv `scripts/openstack-venvs keystone` installs (scripts/test does).
///
/// ```swift
/// let keystone = try await KeystoneServer.start()
/// defer { keystone.stopNow() }
/// let glance = try await keystone.registerImageService(imageURL: "http://127.0.0.1:9292")
/// let alice = try await keystone.user(project: "alpha", roles: ["member", "reader"])
/// ```
public final class KeystoneServer: Sendable {
    public static let skipVariable = "IMAGESTORE_SKIP_KEYSTONE_TESTS"
    public static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    public static let venv = repositoryRoot + "/.venv-keystone"
    static let script = repositoryRoot + "/scripts/keystone_local.py"

    /// True when the Keystone venv is missing and IMAGESTORE_SKIP_KEYSTONE_TESTS=1 asks to skip. Without
    /// the variable a missing venv makes `start()` throw, so the test fails loudly instead of passing.
    public static var skipRequested: Bool {
        ProcessInfo.processInfo.environment[skipVariable] == "1" && !FileManager.default.isExecutableFile(atPath: venv + "/bin/uwsgi")
    }
    public static var requiredTrait: ConditionTrait {
        .disabled(if: skipRequested, "no .venv-keystone (scripts/openstack-venvs keystone) and IMAGESTORE_SKIP_KEYSTONE_TESTS=1")
    }

    public let directory: TemporaryDirectory
    /// `http://127.0.0.1:PORT` (the auth URL; `/v3` is under it).
    public let url: String
    public let adminPassword: String
    public let process: ManagedProcess

    private init(directory: TemporaryDirectory, url: String, adminPassword: String, process: ManagedProcess) {
        self.directory = directory
        self.url = url
        self.adminPassword = adminPassword
        self.process = process
    }

    deinit { killGroup() }

    /// A user made by `user(project:roles:)`.
    public struct User: Sendable, Decodable {
        public let user_id: String
        public let user_name: String
        public let password: String
        public let project_id: String
        public let project_name: String

        public init(user_id: String, user_name: String, password: String, project_id: String, project_name: String) {
            self.user_id = user_id
            self.user_name = user_name
            self.password = password
            self.project_id = project_id
            self.project_name = project_name
        }
    }

    struct Prepared: Decodable {
        let url: String
        let admin_password: String
        let command: [String]
        let environment: [String: String]
    }

    /// Prepares (database, keys, bootstrap admin) and starts Keystone; answers once `GET /v3` is 200.
    public static func start(timeout: Duration = .seconds(120)) async throws -> KeystoneServer {
        guard FileManager.default.isExecutableFile(atPath: venv + "/bin/uwsgi") else {
            throw TestSupportError("no Keystone venv at \(venv): run scripts/openstack-venvs keystone (scripts/test does)")
        }
        let directory = try TemporaryDirectory(prefix: "imagestore-keystone")
        do {
            let port = try freeTCPPort()
            let prepared = try JSONDecoder().decode(
                Prepared.self, from: Data(try await runScript(["prepare", directory.path, "--port", "\(port)"], in: directory).utf8))
            let process = try ManagedProcess(
                prepared.command[0], arguments: Array(prepared.command.dropFirst()), environment: prepared.environment,
                stdoutPath: directory.appending("keystone.log"), stderrPath: directory.appending("keystone.log"))
            let server = KeystoneServer(directory: directory, url: prepared.url, adminPassword: prepared.admin_password, process: process)
            // The script's admin calls find the PID here (for `stop`, which we do ourselves anyway).
            try await server.waitUntilReady(timeout: timeout)
            return server
        } catch {
            directory.remove()
            throw error
        }
    }

    private func waitUntilReady(timeout: Duration) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            guard process.isRunning else {
                let log = (try? String(contentsOfFile: directory.appending("keystone.log"), encoding: .utf8)) ?? ""
                throw TestSupportError("Keystone exited at start: \(log.suffix(2000))")
            }
            if (try? await Self.get(url + "/v3")) == 200 { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        await process.terminate()
        throw TestSupportError("Keystone did not answer within \(timeout)")
    }

    /// The image service in the catalog at `imageURL`, and its user `glance` (roles admin and service in
    /// project `service`), as a deployer registers Glance.
    public func registerImageService(imageURL: String) async throws -> User {
        try JSONDecoder().decode(User.self, from: Data(try await Self.runScript(["register-image", directory.path, imageURL], in: directory).utf8))
    }

    /// A new user with `roles` in `project` (created when missing).
    public func user(project: String, roles: [String]) async throws -> User {
        try JSONDecoder().decode(User.self, from: Data(try await Self.runScript(["user", directory.path, project] + roles, in: directory).utf8))
    }

    /// A project-scoped token for `user`.
    public func token(for user: User) async throws -> String {
        try await Self.runScript(["token", directory.path, user.user_name, user.password, user.project_name], in: directory)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Stops Keystone (SIGTERM, then SIGKILL) and removes its directory. Idempotent. uWSGI runs a master
    /// and workers in the process group `ManagedProcess` gave it: every signal goes to the whole group.
    public func stop() async {
        if process.isRunning { kill(-process.pid, SIGCONT) }
        await process.terminate()
        killGroup()
        directory.remove()
    }

    /// Synchronous stop, for `defer`.
    public func stopNow() {
        killGroup()
        directory.remove()
    }

    /// SIGSTOP to every process of Keystone (master and workers), then waits until all are stopped:
    /// Keystone hangs as a wedged server does, connections accepted and never answered.
    public func suspend(timeout: Duration = .seconds(10)) async throws {
        guard process.isRunning else { throw TestSupportError("Keystone is not running") }
        kill(-process.pid, SIGSTOP)
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if Self.groupMembers(process.pid).allSatisfy({ Self.isStopped($0) }) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestSupportError("Keystone's processes did not all stop within \(timeout)")
    }

    /// SIGCONT to every process of Keystone.
    public func resume() {
        if process.isRunning { kill(-process.pid, SIGCONT) }
    }

    private func killGroup() {
        if process.isRunning {
            kill(-process.pid, SIGCONT)
            kill(-process.pid, SIGKILL)
        }
        process.killAndWait()
        // Workers outlive a killed master for a moment; a group kill reaches them even then.
        kill(-process.pid, SIGKILL)
    }

    /// PIDs whose process group is `group` (from /proc/PID/stat).
    static func groupMembers(_ group: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let fields = statFields(pid), fields.count > 2 else { return false }
            return Int32(fields[2]) == group
        }
    }

    /// Fields of /proc/PID/stat after the command name: state, ppid, pgrp, …
    static func statFields(_ pid: pid_t) -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    static func isStopped(_ pid: pid_t) -> Bool {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.allSatisfy { task in
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                let close = text.lastIndex(of: ")")
            else { return true }  // gone
            let state = text[text.index(after: close)...].split(separator: " ").first ?? ""
            return state == "T" || state == "t"
        }
    }

    // MARK: Helpers

    /// Runs the helper script with the Keystone venv's Python; returns its stdout, throws with its log on failure.
    static func runScript(_ arguments: [String], in directory: TemporaryDirectory) async throws -> String {
        let output = directory.appending("script-\(UUID().uuidString).out")
        let errors = directory.appending("script-\(UUID().uuidString).err")
        let process = try ManagedProcess(venv + "/bin/python", arguments: [script] + arguments, stdoutPath: output, stderrPath: errors)
        guard let status = await process.waitForExit(timeout: .seconds(300)) else {
            await process.kill()
            throw TestSupportError("keystone_local.py \(arguments.first ?? "") did not finish in 300 s")
        }
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let log = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
            throw TestSupportError("keystone_local.py \(arguments.joined(separator: " ")) failed (\(status)): \(log.suffix(2000))")
        }
        return text
    }

    /// The status of a GET (curl, so the test support needs no HTTP client of its own), nil when no answer.
    static func get(_ url: String) async throws -> Int? {
        let directory = try TemporaryDirectory(prefix: "imagestore-curl")
        defer { directory.remove() }
        let output = directory.appending("status")
        let process = try ManagedProcess(
            "curl", arguments: ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", url], stdoutPath: output)
        _ = await process.waitForExit(timeout: .seconds(5))
        return Int((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").flatMap { $0 == 0 ? nil : $0 }
    }
}
