import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process a test owns: spawned with posix_spawn (stdout/stderr to files, stdin from /dev/null), signalled by
/// pid, reaped with waitpid. Foundation's `Process` is avoided on purpose: it reaps children itself, which races with
/// our waitpid and would let a reused pid be signalled.
public final class ManagedProcess: Sendable {
    public let pid: pid_t
    public let executable: String
    public let stdoutPath: String
    public let stderrPath: String

    /// Exit status once reaped (nil while running). After reaping, no signal is ever sent: the pid may be reused.
    private let reaped = Mutex<Int32?>(nil)

    /// Spawns `executable` (absolute path, or found in PATH) with `arguments`. `environment` entries are added to
    /// (or replace) this process's environment.
    public init(
        _ executable: String, arguments: [String] = [], environment: [String: String] = [:],
        stdoutPath: String = "/dev/null", stderrPath: String = "/dev/null"
    ) throws {
        guard let resolved = ManagedProcess.resolve(executable) else {
            throw TestSupportError("executable not found: \(executable)")
        }
        self.executable = resolved
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath

        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let argv = [resolved] + arguments
        let envp = env.map { "\($0.key)=\($0.value)" }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group: a ^C on the test run does not reach it, and our signals reach only it.
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)

        var child: pid_t = 0
        let status = withCStringArray(argv) { cArgv in
            withCStringArray(envp) { cEnv in
                posix_spawn(&child, resolved, &actions, &attributes, cArgv, cEnv)
            }
        }
        guard status == 0 else {
            throw TestSupportError("posix_spawn \(resolved) failed: \(String(cString: strerror(status)))")
        }
        pid = child
    }

    deinit {
        // A test that forgot to stop its process must not leak it.
        killAndWait()
    }

    /// True until the process has exited (and been reaped).
    public var isRunning: Bool { poll() == nil }

    /// The raw waitpid status once exited.
    public var exitStatus: Int32? { poll() }

    /// Sends `signal` unless the process was already reaped. Returns whether it was sent.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        reaped.withLock { status in
            guard status == nil else { return false }
            return Glibc.kill(pid, signal) == 0
        }
    }

    /// SIGSTOP, then waits until every thread of the process shows as stopped: delivery is asynchronous, and a
    /// many-threaded server on a busy machine can go on answering for milliseconds after `kill` returns.
    public func suspend(timeout: Duration = .seconds(5)) async throws {
        guard signal(SIGSTOP) else { throw TestSupportError("SIGSTOP to \(pid) failed: not running") }
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while !allThreadsStopped() {
            guard clock.now < end else { throw TestSupportError("process \(pid) not stopped within \(timeout)") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// SIGCONT.
    public func resume() {
        signal(SIGCONT)
    }

    /// Whether every thread in /proc/PID/task is in state T (stopped) or t (traced).
    private func allThreadsStopped() -> Bool {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"), !tasks.isEmpty
        else { return false }
        return tasks.allSatisfy { task in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")"),
                let state = stat[stat.index(after: close)...].split(separator: " ").first
            else { return false }
            return state == "T" || state == "t"
        }
    }

    /// Waits (polling, never blocking a thread) until the process exits or `timeout` passes. Returns the status.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(10)) async -> Int32? {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while true {
            if let status = poll() { return status }
            if clock.now >= end { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// SIGTERM (plus SIGCONT, so a stopped process can act on it), then SIGKILL after `grace`; waits for the exit.
    /// Idempotent.
    public func terminate(grace: Duration = .seconds(3)) async {
        guard isRunning else { return }
        signal(SIGTERM)
        signal(SIGCONT)
        if await waitForExit(timeout: grace) != nil { return }
        await kill()
    }

    /// SIGKILL and wait for the exit. Idempotent.
    public func kill() async {
        guard isRunning else { return }
        signal(SIGKILL)
        await waitForExit(timeout: .seconds(30))
    }

    /// SIGKILL and a blocking wait, for synchronous clean-up (`defer`); a killed process exits at once, stopped or
    /// not. Idempotent.
    public func killAndWait() {
        reaped.withLock { reapedStatus in
            guard reapedStatus == nil else { return }
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            reapedStatus = status
        }
    }

    /// Non-blocking reap.
    private func poll() -> Int32? {
        reaped.withLock { reapedStatus in
            if let reapedStatus { return reapedStatus }
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r == -1 && errno == ECHILD) {
                reapedStatus = status
                return status
            }
            return nil
        }
    }

    static func resolve(_ executable: String) -> String? {
        if executable.contains("/") { return access(executable, X_OK) == 0 ? executable : nil }
        let path =
            ProcessInfo.processInfo.environment["PATH"]
            ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"] {
            let candidate = "\(dir)/\(executable)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}

/// Calls `body` with a NULL-terminated C array of the strings, valid for the call only.
private func withCStringArray<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return body(pointers)
}

/// A TCP port on 127.0.0.1 free right now (bind to port 0, read it back, close). Another process could take it
/// before it is used; `GaneshaServer` retries with a new port if its bind fails.
public func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(fd, sa, length) == 0 && getsockname(fd, sa, &length) == 0
        }
    }
    guard bound else { throw TestSupportError("bind 127.0.0.1:0: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` right now.
public func tcpPortAccepts(_ port: Int, host: String = "127.0.0.1") -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr(host)
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            connect(fd, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}
