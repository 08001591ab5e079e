import Foundation
import ImageStoreTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The harness other test targets rely on: if it misbehaves, their results mean nothing.
@Suite struct TestSupportTests {
    /// The state letter of `pid` in /proc/PID/stat (R, S, T for stopped, Z…).
    func processState(_ pid: pid_t) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        return stat[stat.index(close, offsetBy: 2)]
    }

    @Test func managedProcess_signalsTerminatesAndIsIdempotent() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let process = try ManagedProcess(
            "sh", arguments: ["-c", "echo out; echo err >&2; exec sleep 30"],
            stdoutPath: dir.appending("out"), stderrPath: dir.appending("err"))
        defer { process.killAndWait() }
        #expect(process.isRunning)
        // The output is there once the shell has exec'ed sleep (its command name in /proc changes); bounded wait.
        var sleeping = false
        for _ in 0..<400 where !sleeping {
            sleeping = (try? String(contentsOfFile: "/proc/\(process.pid)/comm", encoding: .utf8)) == "sleep\n"
            if !sleeping { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(sleeping)

        try await process.suspend()
        #expect(processState(process.pid) == "T")

        // Still stopped: terminate() also sends SIGCONT so SIGTERM can act; sleep dies of it well within the grace.
        await process.terminate(grace: .seconds(5))
        #expect(!process.isRunning)
        let status = try #require(process.exitStatus)
        #expect(status & 0x7f == SIGTERM)  // WTERMSIG
        #expect(!process.signal(SIGKILL), "no signal after reaping: the pid may be reused")
        await process.terminate()  // idempotent
        process.killAndWait()
        #expect(try String(contentsOfFile: dir.appending("out"), encoding: .utf8) == "out\n")
        #expect(try String(contentsOfFile: dir.appending("err"), encoding: .utf8) == "err\n")
    }

    @Test func managedProcess_whenExecutableMissing_throws() {
        #expect(throws: TestSupportError.self) { try ManagedProcess("no-such-program-imagestore") }
    }

    @Test func freeTCPPort_isBindableAndNotListening() throws {
        let port = try freeTCPPort()
        #expect((1024...65535).contains(port))
        #expect(!tcpPortAccepts(port))
    }

    @Test func temporaryDirectory_removeDeletesEverything() throws {
        let dir = try TemporaryDirectory()
        #expect(dir.path.hasPrefix("/tmp/"))
        let nested = try dir.makeDirectory("a/b")
        try Data("x".utf8).write(to: URL(fileURLWithPath: nested + "/f"))
        dir.remove()
        #expect(!FileManager.default.fileExists(atPath: dir.path))
        dir.remove()  // idempotent
    }

    @Test func mounts_tmpfsAndBindMount_areVisibleThenUnmounted() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let small = try dir.makeDirectory("small")
        let view = try dir.makeDirectory("view")
        try Mounts.tmpfs(at: small, sizeBytes: 1 << 20)
        defer { Mounts.unmount(small) }
        #expect(Mounts.isMountPoint(small))

        try Mounts.bindMount(source: small, target: view)
        defer { Mounts.unmount(view) }
        try Data("through the bind".utf8).write(to: URL(fileURLWithPath: view + "/f"))
        #expect(FileManager.default.contents(atPath: small + "/f") == Data("through the bind".utf8))

        // The tmpfs is 1 MiB: a 2 MiB write must fail with ENOSPC.
        let fd = open(small + "/big", O_WRONLY | O_CREAT, 0o644)
        #expect(fd >= 0)
        let chunk = [UInt8](repeating: 1, count: 2 << 20)
        let written = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let writeErrno = errno
        close(fd)
        #expect(written < chunk.count)
        if written < 0 { #expect(writeErrno == ENOSPC) }

        #expect(Mounts.unmount(view))
        #expect(!Mounts.isMountPoint(view))
        #expect(Mounts.unmount(small))
        #expect(!Mounts.isMountPoint(small))
        #expect(!Mounts.unmount(small), "not mounted any more")
    }

    @Test(GaneshaServer.requiredTrait)
    func ganeshaServer_twoAtOnce_haveTheirOwnPortsAndExports() async throws {
        let a = try GaneshaServer()
        defer { a.shutdown() }
        let b = try GaneshaServer()
        defer { b.shutdown() }
        async let startA: Void = a.start()
        async let startB: Void = b.start()
        _ = try await (startA, startB)
        #expect(a.port != b.port)
        #expect(a.exportDirectory != b.exportDirectory)
        #expect(tcpPortAccepts(a.port))
        #expect(tcpPortAccepts(b.port))

        let pidA = try #require(a.pid)
        await a.kill()
        #expect(kill(pidA, 0) != 0, "the killed server is gone")
        #expect(!tcpPortAccepts(a.port))
        #expect(tcpPortAccepts(b.port), "the other server is untouched")

        try await a.restart()
        #expect(a.pid != pidA)
        #expect(tcpPortAccepts(a.port))

        let directory = a.directory.path
        a.shutdown()
        a.shutdown()  // idempotent
        #expect(!FileManager.default.fileExists(atPath: directory))
        #expect(!tcpPortAccepts(a.port))
    }
}
