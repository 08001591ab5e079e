import Foundation
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreGuard
import ImageStoreHealth
import ImageStoreTestSupport
import Testing

@Suite struct HealthBackendTests {
    let timeout = Duration.seconds(2)

    @Test func disableByFile_withoutPath_isOK() async {
        let result = await DisableByFileCheck(path: nil, timeout: timeout).check()
        #expect(result.available)
        #expect(result.reason == "OK")
        #expect(result.details == "No 'disable_by_file_path' configuration value specified")
    }

    @Test func disableByFile_whenFileExists_isDisabled_andOKOnceRemoved() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.appending("disable")
        let check = DisableByFileCheck(path: path, timeout: timeout)
        let absent = await check.check()
        #expect(absent.available && absent.reason == "OK" && absent.details == "Path '\(path)' was not found")
        try Data().write(to: URL(fileURLWithPath: path))
        let present = await check.check()
        #expect(!present.available)
        #expect(present.reason == "DISABLED BY FILE")
        #expect(present.details == "Path '\(path)' was found")
    }

    @Test func disableByFilesPorts_whenFileExists_isDisabledWithoutDetails() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.appending("disable-9292")
        let check = DisableByFilesPortsCheck(port: 9292, path: path, timeout: timeout)
        let absent = await check.check()
        #expect(absent.available && absent.reason == "OK" && absent.details == nil)
        try Data().write(to: URL(fileURLWithPath: path))
        let result = await check.check()
        #expect(!result.available && result.reason == "DISABLED BY FILE" && result.details == nil)
    }

    @Test func enableByFiles_reportsTheFirstMissingPath() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (a, b, c) = (dir.appending("a"), dir.appending("b"), dir.appending("c"))
        try Data().write(to: URL(fileURLWithPath: a))
        let missing = await EnableByFilesCheck(paths: [a, b, c], timeout: timeout).check()
        #expect(!missing.available)
        #expect(missing.reason == "FILE PATH MISSING")
        #expect(missing.details == "File path \(b) is missing")
        try Data().write(to: URL(fileURLWithPath: b))
        try Data().write(to: URL(fileURLWithPath: c))
        let ok = await EnableByFilesCheck(paths: [a, b, c], timeout: timeout).check()
        #expect(ok.available && ok.reason == "OK" && ok.details == "Specified file paths are available")
    }

    @Test func enableByFiles_withNoPaths_isOK() async {
        let result = await EnableByFilesCheck(paths: [], timeout: timeout).check()
        #expect(result.available && result.details == "Specified file paths are available")
    }

    @Test func enableByFiles_unreadableParent_countsAsMissing_likeOsPathExists() async throws {
        // stat through a regular file fails with ENOTDIR: os.path.exists says False, so do we.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = dir.appending("file")
        try Data().write(to: URL(fileURLWithPath: file))
        let result = await EnableByFilesCheck(paths: [file + "/marker"], timeout: timeout).check()
        #expect(result.reason == "FILE PATH MISSING")
    }

    @Test func store_followsTheGuardState() async {
        let unguarded = await StoreCheck(mountGuard: nil).check()
        #expect(unguarded.available)
        let enabled = MountGuard.storeHealth(of: GuardState(enabled: true))
        #expect(enabled.available && enabled.reason == "OK")
        let disabled = MountGuard.storeHealth(of: GuardState(enabled: false, reason: "marker missing: /x/.glance not found"))
        #expect(!disabled.available)
        #expect(disabled.reason == "STORE DISABLED")
        #expect(disabled.details == "marker missing: /x/.glance not found")
    }

    @Test func database_reportsPingFailures() async {
        let ok = await DatabaseCheck(repository: PingRepository(failure: nil)).check()
        #expect(ok.available && ok.reason == "OK")
        let down = await DatabaseCheck(repository: PingRepository(failure: ImageStoreError.storeUnavailable("disk I/O error")))
            .check()
        #expect(!down.available)
        #expect(down.reason == "DATABASE UNAVAILABLE")
    }

    @Test func mountpoint_whenDirectoryIsNotAMount_isUnavailable_andOKOnABindMount() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let datadir = try dir.makeDirectory("images")
        let source = try dir.makeDirectory("share")
        let mountGuard = MountGuard(
            settings: MountGuardSettings(
                datadir: datadir, markerPath: datadir + "/.glance", requireMountpoint: true, mountTypes: ["ext4", "xfs", "tmpfs", "overlay", "btrfs"]),
            probe: nil, logger: quietLogger)
        let plain = await MountpointCheck(mountGuard: mountGuard).check()
        #expect(!plain.available)
        #expect(plain.reason == "STORE NOT MOUNTED")
        #expect(plain.details == "not a mount point: \(datadir)")

        try Mounts.tmpfs(at: datadir, sizeBytes: 1 << 20)
        defer { Mounts.unmount(datadir) }
        _ = source
        let mounted = await MountpointCheck(mountGuard: mountGuard).check()
        #expect(mounted.available, "\(mounted)")
        #expect(mounted.details?.hasPrefix("\(datadir) is a tmpfs mount") == true)
    }

    @Test func nfs_withoutNFSConfigured_isOK() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let mountGuard = MountGuard(
            settings: MountGuardSettings(datadir: dir.path, markerPath: dir.appending(".glance")), probe: nil,
            logger: quietLogger)
        let result = await NFSCheck(mountGuard: mountGuard).check()
        #expect(result.available)
        #expect(result.details == "filesystem_is_nfs_configured is false")
    }

    @Test func monitorFromOptions_buildsBackendsInConfiguredOrder() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let options = HealthcheckOptions(
            backends: ["enable_by_files", "disable_by_files_ports", "database", "store"],
            disableByFilePaths: ["8080": dir.appending("off")], enableByFilePaths: [dir.appending("missing")])
        let monitor = HealthMonitor(
            options: options, mountGuard: nil, repository: PingRepository(failure: nil), logger: quietLogger)
        #expect(monitor.backends.map(\.name) == ["enable_by_files", "disable_by_files_ports", "database", "store"])
        #expect(monitor.checkedPorts == [8080])
        await monitor.runRound()
        #expect(monitor.report(port: 8080).reasons == ["FILE PATH MISSING", "OK", "OK", "OK"])
    }
}
