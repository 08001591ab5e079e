import Foundation
import ImageStoreTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The FUSE passthrough filesystem in Fixtures/gatefs.c, compiled and mounted for one test: the mount
/// shows `backing`, and each kind of call can be made to hang (like a hard NFS mount whose server
/// stopped answering) or fail with EIO, and released, on demand.
final class GateFS: Sendable {
    enum Op: String, Sendable {
        case all, getattr, mkdir, unlink, rename, open, create, read, write, fsync, readdir, statfs
    }

    let dir: TemporaryDirectory
    /// What the mount shows (the "share" as the NFS server has it).
    let backing: String
    let control: String
    let mountpoint: String
    let process: ManagedProcess

    private init(dir: TemporaryDirectory, backing: String, control: String, mountpoint: String, process: ManagedProcess) {
        self.dir = dir
        self.backing = backing
        self.control = control
        self.mountpoint = mountpoint
        self.process = process
    }

    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/gatefs.c").path

    /// Compiles and mounts gatefs in a new temporary directory; `prepare` fills the backing directory first.
    static func mount(prepare: (String) throws -> Void = { _ in }) async throws -> GateFS {
        let dir = try TemporaryDirectory(prefix: "imagestore-gatefs")
        let binary = dir.appending("gatefs")
        let cc = try ManagedProcess(
            "sh", arguments: ["-c", "gcc -O2 -o '\(binary)' '\(source)' $(pkg-config fuse3 --cflags --libs)"],
            stderrPath: dir.appending("gcc.log"))
        guard await cc.waitForExit(timeout: .seconds(60)) == 0 else {
            let log = (try? String(contentsOfFile: dir.appending("gcc.log"), encoding: .utf8)) ?? ""
            dir.remove()
            throw TestSupportError("compiling gatefs failed (needs gcc, pkg-config, libfuse3-dev): \(log)")
        }
        let backing = try dir.makeDirectory("backing")
        let control = try dir.makeDirectory("control")
        let mountpoint = try dir.makeDirectory("mnt")
        try prepare(backing)
        let process = try ManagedProcess(
            binary, arguments: [backing, control, mountpoint, "-f"], stdoutPath: dir.appending("gatefs.log"),
            stderrPath: dir.appending("gatefs.log"))
        let fs = GateFS(dir: dir, backing: backing, control: control, mountpoint: mountpoint, process: process)
        let clock = ContinuousClock()
        let end = clock.now + .seconds(10)
        while !Mounts.isMountPoint(mountpoint) {
            guard process.isRunning, clock.now < end else {
                let log = (try? String(contentsOfFile: dir.appending("gatefs.log"), encoding: .utf8)) ?? ""
                fs.tearDown()
                throw TestSupportError("gatefs did not mount \(mountpoint): \(log)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return fs
    }

    /// From now on calls of `op` block (for `.write`: after `afterBytes` more bytes went through).
    func hang(_ op: Op, afterBytes: Int = 0) throws {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: control)) ?? [] where name.hasPrefix("blocked-") {
            unlink(control + "/" + name)
        }
        if op == .write || op == .all {
            try "\(afterBytes)".write(toFile: control + "/write-ok-bytes", atomically: true, encoding: .utf8)
        }
        try Data().write(to: URL(fileURLWithPath: control + "/hang-\(op.rawValue)"))
    }

    /// Blocked calls return (within 10 ms) and new ones answer at once.
    func release(_ op: Op) { unlink(control + "/hang-\(op.rawValue)") }

    /// How long ago the first call of `op` blocked at the gate set by the last `hang` (nil: none did).
    /// Measures a deadline from the moment the share stopped answering, not from the request's start.
    func sinceBlocked(_ op: Op) -> Duration? {
        guard let text = try? String(contentsOfFile: control + "/blocked-\(op.rawValue)", encoding: .utf8),
            let blocked = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return .nanoseconds(Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec) - blocked)
    }

    func releaseAll() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: control)) ?? [] where name.hasPrefix("hang-") {
            unlink(control + "/" + name)
        }
    }

    /// Names in the backing directory `sub` (hidden ones included), read without going through the mount.
    func backingFiles(_ sub: String = "") -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: backing + (sub.isEmpty ? "" : "/" + sub))) ?? []).sorted()
    }

    /// Release everything, unmount (lazily if still busy), stop the daemon, remove the directory. Idempotent.
    func tearDown() {
        releaseAll()
        if Mounts.isMountPoint(mountpoint) { Mounts.unmount(mountpoint) }
        process.killAndWait()
        if !Mounts.isMountPoint(mountpoint) { dir.remove() }
    }
}
