import Foundation
import ImageStoreConfig
import ImageStoreCore
import ImageStoreNFS
import ImageStoreTestSupport
import Logging
import Synchronization
import Testing

@testable import ImageStoreGuard

/// A store directory in a temp dir with its marker, and a guard over it with a scripted NFS probe.
struct GuardFixture {
    let temp: TemporaryDirectory
    let datadir: String
    let probe: FakeNFSProbe
    let mountGuard: MountGuard

    init(
        maxAge: Duration = .seconds(60), timeout: Duration = .seconds(2), interval: Duration = .seconds(5),
        requireMountpoint: Bool = false, mountTypes: [String] = ["nfs", "nfs4"], withMarker: Bool = true,
        probe: FakeNFSProbe = FakeNFSProbe(), identity: StoreIdentityRecord? = nil,
        identityMaxAge: Duration = MountGuardSettings.defaultIdentityMaxAge,
        identityStaleLimit: Duration = MountGuardSettings.defaultIdentityStaleLimit
    ) throws {
        temp = try TemporaryDirectory(prefix: "imagestore-guard")
        datadir = try temp.makeDirectory("images")
        self.probe = probe
        let settings = MountGuardSettings(
            datadir: datadir, markerPath: datadir + "/.glance", requireMountpoint: requireMountpoint,
            mountTypes: mountTypes, nfsTarget: NFSServerTarget(host: "127.0.0.1", sharePath: "/images"),
            interval: interval, timeout: timeout, maxAge: maxAge, identityMaxAge: identityMaxAge,
            identityStaleLimit: identityStaleLimit)
        mountGuard = MountGuard(settings: settings, probe: probe, identity: identity, logger: Logger(label: "test.guard"))
        if withMarker { try putMarker() }
    }

    var markerPath: String { datadir + "/.glance" }
    func putMarker() throws { try Data().write(to: URL(fileURLWithPath: markerPath)) }
    /// A marker as `imagestore init-store` writes it (nil: Glance's empty one).
    func putMarker(storeID: String?) throws {
        if let storeID { try StoreMarker(storeID: storeID, createdAt: "2026-01-01T00:00:00Z").write(to: markerPath) } else { try putMarker() }
    }
    func removeMarker() throws { try FileManager.default.removeItem(atPath: markerPath) }
}

/// The error `body` throws, as an `ImageStoreError` (nil if it did not throw).
func imageStoreError(_ body: () async throws -> Void) async -> ImageStoreError? {
    do {
        try await body()
        return nil
    } catch let error as ImageStoreError {
        return error
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}

/// Polls `condition` (cheap, no I/O) until it holds; fails the test after `timeout`.
func eventually(timeout: Duration = .seconds(10), _ condition: () async -> Bool) async throws {
    let end = ContinuousClock.now + timeout
    while ContinuousClock.now < end {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("condition not met within \(timeout)")
}

@Suite struct MountGuardTests {
    // MARK: Marker

    @Test func checkWritable_markerPresent_allowsAndEnables() async throws {
        let f = try GuardFixture()
        defer { f.temp.remove() }
        try await f.mountGuard.checkWritable()
        let state = f.mountGuard.state
        #expect(state.enabled)
        #expect(state.reason == nil)
        #expect(state.results[.marker]?.verdict == .pass)
        #expect(state.results[.nfs]?.verdict == .pass)
        #expect(state.results[.mountpoint]?.verdict == .skipped)
        #expect(state.lastCheck != nil)
        // The probe was asked for the marker relative to the share root, with the guard's deadline.
        #expect(f.probe.lastMarkerFile == ".glance")
        #expect(f.probe.lastDeadline == .seconds(2))
    }

    @Test func checkWritable_markerMissingThenBack_disablesThenEnables() async throws {
        let f = try GuardFixture()
        defer { f.temp.remove() }
        try await f.mountGuard.checkWritable()

        try f.removeMarker()
        let error = await imageStoreError { try await f.mountGuard.checkWritable() }
        #expect(error?.code == .storeUnavailable)
        #expect(error?.message == "store disabled: marker missing: \(f.markerPath) not found")
        #expect(!f.mountGuard.state.enabled)
        #expect(f.mountGuard.state.reason == "marker missing: \(f.markerPath) not found")
        #expect(f.mountGuard.state.results[.marker]?.verdict == .fail)

        // Back: the very next write is allowed, no restart or background run needed.
        try f.putMarker()
        try await f.mountGuard.checkWritable()
        #expect(f.mountGuard.state.enabled)
        #expect(f.mountGuard.state.reason == nil)
    }

    @Test func checkWritable_markerIsAlwaysStatedAfresh_evenWithinMaxAge() async throws {
        let f = try GuardFixture(maxAge: .seconds(60))
        defer { f.temp.remove() }
        try await f.mountGuard.checkWritable()
        try f.removeMarker()
        // The cached NFS/mount results are fresh, but the marker is not cached.
        let error = await imageStoreError { try await f.mountGuard.checkWritable() }
        #expect(error?.code == .storeUnavailable)
        #expect(f.probe.callCount == 1)
    }

    @Test func checkWritable_markerIsADirectoryPath_isMissing() async throws {
        let f = try GuardFixture(withMarker: false)
        defer { f.temp.remove() }
        // ENOTDIR: a path component of the marker is a file.
        let settings = MountGuardSettings(datadir: f.datadir, markerPath: f.datadir + "/file/.glance")
        try Data().write(to: URL(fileURLWithPath: f.datadir + "/file"))
        let mountGuard = MountGuard(settings: settings, probe: nil, logger: Logger(label: "test"))
        let error = await imageStoreError { try await mountGuard.checkWritable() }
        #expect(error?.message.hasPrefix("store disabled: marker missing:") == true)
    }

    // MARK: max_age

    @Test func checkWritable_withinMaxAge_reusesTheNFSResult_andAfterItProbesAgain() async throws {
        let maxAge = Duration.milliseconds(300)
        let f = try GuardFixture(maxAge: maxAge)
        defer { f.temp.remove() }
        try await f.mountGuard.checkWritable()
        let start = ContinuousClock.now
        try await f.mountGuard.checkWritable()
        try await f.mountGuard.checkWritable()
        // Only meaningful if the repeats really ran within max_age.
        try #require(ContinuousClock.now - start < maxAge, "machine too slow for this check")
        #expect(f.probe.callCount == 1)

        // Time passing is the event here: nothing to await but the clock.
        try await Task.sleep(for: maxAge + .milliseconds(50))
        try await f.mountGuard.checkWritable()
        #expect(f.probe.callCount == 2)
    }

    @Test func checkWritable_maxAgeZero_probesEveryWrite() async throws {
        let f = try GuardFixture(maxAge: .zero)
        defer { f.temp.remove() }
        for _ in 0..<3 { try await f.mountGuard.checkWritable() }
        #expect(f.probe.callCount == 3)
    }

    @Test func checkWritable_cachedFailure_isReused_thenRecheckedAfterMaxAge() async throws {
        let maxAge = Duration.milliseconds(200)
        let f = try GuardFixture(maxAge: maxAge)
        defer { f.temp.remove() }
        f.probe.setResult(.failed(.unreachable("connection refused")))
        let first = await imageStoreError { try await f.mountGuard.checkWritable() }
        #expect(first?.message == "store disabled: NFS server unreachable: \(f.mountGuard.settings.nfsTarget!): connection refused")
        f.probe.setResult(.healthy())
        try await Task.sleep(for: maxAge + .milliseconds(50))
        try await f.mountGuard.checkWritable()
        #expect(f.mountGuard.state.enabled)
        #expect(f.probe.callCount == 2)
    }

    // MARK: Single flight

    @Test func checkWritable_concurrentCallers_shareOneProbeCall() async throws {
        let probe = GatedProbe()
        let temp = try TemporaryDirectory(prefix: "imagestore-guard")
        defer { temp.remove() }
        let datadir = try temp.makeDirectory("images")
        try Data().write(to: URL(fileURLWithPath: datadir + "/.glance"))
        // max_age 0: only the single flight can make the callers share a probe.
        let settings = MountGuardSettings(
            datadir: datadir, markerPath: datadir + "/.glance",
            nfsTarget: NFSServerTarget(host: "127.0.0.1", sharePath: "/images"), maxAge: .zero)
        let mountGuard = MountGuard(settings: settings, probe: probe, logger: Logger(label: "test"))
        defer { probe.release() }

        let callers = 8
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<callers { group.addTask { try await mountGuard.checkWritable() } }
            try await eventually { probe.callCount == 1 }
            // Let every caller reach the guard while the one probe is parked (nothing to await on that).
            try await Task.sleep(for: .milliseconds(300))
            probe.release()
            try await group.waitForAll()
        }
        #expect(probe.callCount == 1)
        #expect(mountGuard.state.enabled)
    }

    // MARK: Configuration

    @Test func nfsWithoutHost_isDisabledWithThatReason() async throws {
        let temp = try TemporaryDirectory(prefix: "imagestore-guard")
        defer { temp.remove() }
        let datadir = try temp.makeDirectory("images")
        try Data().write(to: URL(fileURLWithPath: datadir + "/.glance"))
        let options = FilesystemStoreOptions(
            datadir: datadir, isNFSConfigured: true, nfsSharePath: "/images", nfsMountOptions: "vers=4")
        let settings = try MountGuardSettings(options: options)
        #expect(settings.nfsTarget == nil)
        #expect(settings.misconfiguration == "filesystem_nfs_host is required when filesystem_is_nfs_configured is true")
        #expect(settings.requireMountpoint)

        let mountGuard = MountGuard(settings: settings, probe: nil, logger: Logger(label: "test"))
        let state = await mountGuard.runAllChecks()
        #expect(!state.enabled)
        #expect(state.reason == "filesystem_nfs_host is required when filesystem_is_nfs_configured is true")
        #expect(state.results[.configuration]?.verdict == .fail)

        let error = await imageStoreError { try await mountGuard.checkWritable() }
        #expect(error?.code == .storeUnavailable)
        #expect(error?.message == "store disabled: filesystem_nfs_host is required when filesystem_is_nfs_configured is true")
    }

    @Test func nfsWithoutSharePath_isDisabledWithThatReason() throws {
        let options = FilesystemStoreOptions(datadir: "/srv/images", isNFSConfigured: true, nfsHost: "10.0.0.1")
        let settings = try MountGuardSettings(options: options)
        #expect(settings.misconfiguration == "filesystem_nfs_share_path is required when filesystem_is_nfs_configured is true")
    }

    @Test func settingsFromOptions_carryIntervalTimeoutMaxAgeAndRelativeMarker() throws {
        let options = FilesystemStoreOptions(
            datadir: "/srv/images/", mountpointPath: "/srv", isNFSConfigured: true, nfsHost: "10.0.0.1",
            nfsSharePath: "/exports/glance", nfsMountOptions: "vers=4,port=2049,timeo=5", guardInterval: .milliseconds(250),
            guardTimeout: .milliseconds(500), guardMaxAge: .milliseconds(100))
        let settings = try MountGuardSettings(options: options)
        #expect(settings.interval == .milliseconds(250))
        #expect(settings.timeout == .milliseconds(500))
        #expect(settings.maxAge == .milliseconds(100))
        #expect(settings.datadir == "/srv/images")
        #expect(settings.mountpoint == "/srv")
        // The probe stats the marker relative to the share root, which is mounted at /srv.
        #expect(settings.nfsMarkerPath == "images/.glance")
        #expect(settings.nfsTarget?.options.port == 2049)
        #expect(settings.misconfiguration == nil)
    }

    @Test func badMountOptions_throw() {
        let options = FilesystemStoreOptions(
            datadir: "/srv/images", isNFSConfigured: true, nfsHost: "h", nfsSharePath: "/s", nfsMountOptions: "vers=7")
        #expect(throws: NFSMountOptions.ParseError.self) { try MountGuardSettings(options: options) }
    }

    // MARK: Reads

    @Test func checkReadable_failsWith503OnlyWhileDisabled() async throws {
        let f = try GuardFixture(maxAge: .zero)
        defer { f.temp.remove() }
        // Before any check: reads are allowed.
        try await f.mountGuard.checkReadable()
        try await f.mountGuard.checkWritable()
        try await f.mountGuard.checkReadable()

        f.probe.setResult(.failed(.timedOut(.seconds(2))))
        _ = await imageStoreError { try await f.mountGuard.checkWritable() }
        let error = await imageStoreError { try await f.mountGuard.checkReadable() }
        #expect(error?.code == .readUnavailable)
        #expect(error?.message.contains("timed out: NFS server") == true)

        f.probe.setResult(.healthy())
        try await f.mountGuard.checkWritable()
        try await f.mountGuard.checkReadable()
    }

    // MARK: NFS failures

    @Test(arguments: [
        (NFSProbeFailure.markerMissing, "marker missing on the NFS server: TARGET has no .glance"),
        (.timedOut(.seconds(2)), "timed out: NFS server TARGET did not answer within 2000 ms"),
        (.unreachable("RPC: connection refused"), "NFS server unreachable: TARGET: RPC: connection refused"),
        (.mountFailed("NFS4ERR_NOENT"), "NFS mount failed: TARGET: NFS4ERR_NOENT"),
    ])
    func checkWritable_nfsFailure_namesTheReason(failure: NFSProbeFailure, detail: String) async throws {
        let f = try GuardFixture(probe: FakeNFSProbe(result: .failed(failure)))
        defer { f.temp.remove() }
        let target = try #require(f.mountGuard.settings.nfsTarget?.description)
        #expect(target.hasPrefix("127.0.0.1:/images"))
        let detail = detail.replacingOccurrences(of: "TARGET", with: target)
        let error = await imageStoreError { try await f.mountGuard.checkWritable() }
        #expect(error?.code == .storeUnavailable)
        #expect(error?.message == "store disabled: \(detail)")
        #expect(f.mountGuard.state.results[.nfs]?.verdict == .fail)
    }

    @Test func freeSpace_comesFromTheNFSProbe() async throws {
        let f = try GuardFixture(probe: FakeNFSProbe(result: .healthy(freeBytes: 123 << 20, totalBytes: 456 << 20)))
        defer { f.temp.remove() }
        let state = await f.mountGuard.runAllChecks()
        #expect(state.freeBytes == 123 << 20)
        #expect(state.totalBytes == 456 << 20)
    }

    // MARK: Mount point

    @Test func mountpoint_realBindMount_passes_andFailsAfterUnmount() async throws {
        let temp = try TemporaryDirectory(prefix: "imagestore-guard-mnt")
        defer { temp.remove() }
        let share = try temp.makeDirectory("share")
        let datadir = try temp.makeDirectory("images")
        try Data().write(to: URL(fileURLWithPath: share + "/.glance"))
        let settings = MountGuardSettings(
            datadir: datadir, markerPath: datadir + "/.glance", requireMountpoint: true, mountTypes: ["nfs4"])
        let unmounted = MountGuard(settings: settings, probe: nil, logger: Logger(label: "test"))
        let notMounted = await unmounted.runAllChecks()
        #expect(!notMounted.enabled)
        #expect(notMounted.results[.mountpoint]?.detail == "not a mount point: \(datadir)")
        #expect(notMounted.results[.marker]?.verdict == .fail)

        try Mounts.bindMount(source: share, target: datadir)
        var mounted = true
        defer { if mounted { Mounts.unmount(datadir) } }
        let fsType = try #require(fsTypeOfMountPoint(datadir))

        // Mounted, but of a type that is not listed.
        let wrongType = await unmounted.runAllChecks()
        #expect(!wrongType.enabled)
        #expect(
            wrongType.results[.mountpoint]?.detail
                == "not a mount point of an expected type: \(datadir) is \(fsType), expected nfs4")

        var accepting = settings
        accepting.mountTypes = ["nfs4", fsType]
        let mountGuard = MountGuard(settings: accepting, probe: nil, logger: Logger(label: "test"))
        let ok = await mountGuard.runAllChecks()
        #expect(ok.enabled, "\(ok.reason ?? "")")
        #expect(ok.results[.mountpoint]?.verdict == .pass)
        #expect(ok.results[.nfs]?.verdict == .skipped)
        // Without a probe the free space is the local filesystem's.
        #expect((ok.totalBytes ?? 0) > 0)
        try await mountGuard.checkWritable()

        #expect(Mounts.unmount(datadir))
        mounted = false
        // The mount check result may be cached for max_age; the marker (gone with the mount) is not.
        let error = await imageStoreError { try await mountGuard.checkWritable() }
        #expect(error?.code == .storeUnavailable)
        let after = await mountGuard.runAllChecks()
        #expect(after.results[.mountpoint]?.detail == "not a mount point: \(datadir)")
        #expect(!after.enabled)
    }

    // MARK: Background re-check

    @Test func run_backgroundLoop_disablesAndReenablesWithoutWrites() async throws {
        let f = try GuardFixture(maxAge: .zero, interval: .milliseconds(50))
        defer { f.temp.remove() }
        let loop = Task { try await f.mountGuard.run() }
        defer { loop.cancel() }
        try await eventually { f.mountGuard.state.lastCheck != nil && f.mountGuard.state.enabled }

        f.probe.setResult(.failed(.unreachable("gone")))
        try await eventually { !f.mountGuard.state.enabled }
        #expect(f.mountGuard.state.reason?.hasPrefix("NFS server unreachable") == true)

        f.probe.setResult(.healthy())
        try await eventually { f.mountGuard.state.enabled }
        loop.cancel()
        _ = await loop.result
    }
}

/// The filesystem type /proc/self/mountinfo gives for the mount on `path` (the last one wins).
func fsTypeOfMountPoint(_ path: String) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
    return MountInfo.parse(text).last { $0.mountPoint == path }?.fsType
}

/// A probe that parks every call until `release()`, counting calls.
final class GatedProbe: NFSProbe {
    private let state = Mutex<(calls: Int, released: Bool, waiters: [CheckedContinuation<Void, Never>])>((0, false, []))

    var callCount: Int { state.withLock { $0.calls } }

    func release() {
        let waiters = state.withLock { s in
            s.released = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func probe(markerFile: String, deadline: Duration) async -> NFSProbeResult {
        await withCheckedContinuation { continuation in
            let released = state.withLock { s in
                s.calls += 1
                if !s.released { s.waiters.append(continuation) }
                return s.released
            }
            if released { continuation.resume() }
        }
        return .healthy()
    }
}
