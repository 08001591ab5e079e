import Foundation
import ImageStoreCore
import ImageStoreNFS
import Logging
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Refuses writes unless the store directory is really the share: the marker file exists, the
/// directory is a mount point of an expected type, and the NFS server itself answers (libnfs).
///
/// Before every write the marker is stat'ed afresh (off the event loop, under `timeout`), and the
/// mount and NFS results are reused when at most `maxAge` old; concurrent writes share one check in
/// flight. A background loop (`run`, every `interval`) re-checks everything, so a store that was
/// disabled — also at start-up — enables itself when the share comes back. Each transition is
/// logged once. Nothing here ever blocks a caller past `timeout`.
public final class MountGuard: WriteGuard, Service {
    public let settings: MountGuardSettings
    private let probe: (any NFSProbe)?
    private let executor: BlockingCallExecutor
    private let logger: Logger
    private let current: Mutex<GuardState>
    private let markerFlight = SingleFlight<GuardCheckResult>()
    private let slowFlight = SingleFlight<[GuardCheckResult]>()
    /// Mount + NFS results and when they were taken (reused for `maxAge`).
    private let slowCache = Mutex<(results: [GuardCheckResult], at: ContinuousClock.Instant)?>(nil)

    /// - Parameters:
    ///   - probe: the NFS server probe; required when `settings.nfsTarget` is set (`LibNFSProbe`).
    public init(settings: MountGuardSettings, probe: (any NFSProbe)?, logger: Logger) {
        self.settings = settings
        self.probe = probe
        self.logger = logger
        self.executor = BlockingCallExecutor(name: "mount-guard")
        // Until the first check says otherwise, writes are checked anyway; reads are allowed.
        self.current = Mutex(GuardState(enabled: true, reason: nil))
        // Unknown mount options are accepted (a pasted fstab line works) but must not pass silently.
        for warning in settings.nfsTarget?.options.warnings ?? [] {
            logger.warning("\(warning)", metadata: ["option": "filesystem_nfs_mount_options"])
        }
    }

    /// The latest state (no I/O).
    public var state: GuardState { current.withLock { $0 } }

    // MARK: WriteGuard

    public func checkWritable() async throws {
        if let problem = settings.misconfiguration {
            _ = record([GuardCheckResult(check: .configuration, verdict: .fail, detail: problem)])
            throw ImageStoreError.storeUnavailable("store disabled: \(problem)")
        }
        async let marker = markerFlight.run { await self.checkMarker() }
        async let slow = freshSlowChecks()
        let results = await [marker] + slow
        let state = record(results)
        if let failure = results.first(where: \.failed) {
            throw ImageStoreError.storeUnavailable("store disabled: \(failure.detail)")
        }
        if state.hungCalls > 0 { throw ImageStoreError.storeUnavailable("store disabled: \(state.reason ?? "")") }
    }

    public func checkReadable() async throws {
        let state = self.state
        guard state.enabled else {
            throw ImageStoreError(.readUnavailable, "Image store is unavailable: \(state.reason ?? "unknown reason")")
        }
    }

    // MARK: Checks

    /// Runs every check now (what `imagestore check` prints and the background loop records).
    @discardableResult
    public func runAllChecks() async -> GuardState {
        var results: [GuardCheckResult] = []
        if let problem = settings.misconfiguration {
            results.append(GuardCheckResult(check: .configuration, verdict: .fail, detail: problem))
        } else {
            results.append(GuardCheckResult(check: .configuration, verdict: .pass, detail: "options are consistent"))
        }
        async let marker = markerFlight.run { await self.checkMarker() }
        async let slow = slowFlight.run { await self.slowChecks() }
        let slowResults = await slow
        slowCache.withLock { $0 = (slowResults, ContinuousClock.now) }
        results += [await marker] + slowResults
        return record(results)
    }

    /// Runs one check now and returns its result without recording it in `state` (the health
    /// monitor's `nfs` and `mountpoint` backends keep their own history and thresholds).
    public func run(_ check: GuardCheck) async -> GuardCheckResult {
        switch check {
        case .configuration:
            if let problem = settings.misconfiguration {
                return GuardCheckResult(check: .configuration, verdict: .fail, detail: problem)
            }
            return GuardCheckResult(check: .configuration, verdict: .pass, detail: "options are consistent")
        case .marker: return await markerFlight.run { await self.checkMarker() }
        case .mountpoint: return await checkMountpoint()
        case .nfs: return await checkNFS()
        }
    }

    private func freshSlowChecks() async -> [GuardCheckResult] {
        if let cached = slowCache.withLock({ $0 }), ContinuousClock.now - cached.at <= settings.maxAge {
            return cached.results
        }
        let results = await slowFlight.run { await self.slowChecks() }
        slowCache.withLock { $0 = (results, ContinuousClock.now) }
        return results
    }

    private func slowChecks() async -> [GuardCheckResult] {
        async let mount = checkMountpoint()
        async let nfs = checkNFS()
        return await [mount, nfs]
    }

    /// `stat` of the marker, plus `statvfs` of the directory for free space, on the guard's thread.
    func checkMarker() async -> GuardCheckResult {
        let path = settings.markerPath
        let datadir = settings.datadir
        let start = ContinuousClock.now
        let outcome = await executor.run(deadline: settings.timeout) { () -> (Int32, Int64?, Int64?) in
            var info = stat()
            guard stat(path, &info) == 0 else { return (errno, nil, nil) }
            var fs = statvfs()
            guard statvfs(datadir, &fs) == 0 else { return (0, nil, nil) }
            return (0, Int64(fs.f_bavail) * Int64(fs.f_frsize), Int64(fs.f_blocks) * Int64(fs.f_frsize))
        }
        let elapsed = ContinuousClock.now - start
        switch outcome {
        case .completed((0, let free, let total)):
            if probe == nil, let free, let total {
                current.withLock { state in
                    state.freeBytes = free
                    state.totalBytes = total
                }
            }
            return .init(check: .marker, verdict: .pass, detail: "marker \(path) present", elapsed: elapsed)
        case .completed((ENOENT, _, _)), .completed((ENOTDIR, _, _)):
            return .init(check: .marker, verdict: .fail, detail: "marker missing: \(path) not found", elapsed: elapsed)
        case .completed((let code, _, _)):
            return .init(
                check: .marker, verdict: .fail, detail: "marker check failed: stat \(path): \(String(cString: strerror(code)))",
                elapsed: elapsed)
        case .timedOut:
            return .init(
                check: .marker, verdict: .fail,
                detail: "timed out: stat of \(path) did not answer within \(settings.timeout.milliseconds) ms", elapsed: elapsed)
        }
    }

    /// The mount point and its type, from /proc/self/mountinfo.
    func checkMountpoint() async -> GuardCheckResult {
        guard settings.requireMountpoint else {
            return .init(check: .mountpoint, verdict: .skipped, detail: "not required")
        }
        let start = ContinuousClock.now
        let mountpoint = settings.mountpoint
        let outcome = await executor.run(deadline: settings.timeout) { () -> MountInfo.Entry?? in
            guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return .none }
            return .some(MountInfo.parse(text).last { $0.mountPoint == mountpoint })
        }
        let elapsed = ContinuousClock.now - start
        switch outcome {
        case .timedOut:
            return .init(
                check: .mountpoint, verdict: .fail,
                detail: "timed out: reading /proc/self/mountinfo did not answer within \(settings.timeout.milliseconds) ms",
                elapsed: elapsed)
        case .completed(.none):
            return .init(check: .mountpoint, verdict: .fail, detail: "cannot read /proc/self/mountinfo", elapsed: elapsed)
        case .completed(.some(.none)):
            return .init(check: .mountpoint, verdict: .fail, detail: "not a mount point: \(mountpoint)", elapsed: elapsed)
        case .completed(.some(.some(let entry))):
            guard settings.mountTypes.contains(entry.fsType) else {
                return .init(
                    check: .mountpoint, verdict: .fail,
                    detail: "not a mount point of an expected type: \(mountpoint) is \(entry.fsType), expected \(settings.mountTypes.joined(separator: ", "))",
                    elapsed: elapsed)
            }
            return .init(
                check: .mountpoint, verdict: .pass, detail: "\(mountpoint) is a \(entry.fsType) mount of \(entry.source)",
                elapsed: elapsed)
        }
    }

    /// The NFS server, through libnfs: mounts the export, stats the marker there, reads free space.
    func checkNFS() async -> GuardCheckResult {
        guard let target = settings.nfsTarget, let probe else {
            return .init(check: .nfs, verdict: .skipped, detail: "filesystem_is_nfs_configured is false")
        }
        let result = await probe.probe(markerFile: settings.nfsMarkerPath, deadline: settings.timeout)
        if let free = result.freeBytes, let total = result.totalBytes {
            current.withLock { state in
                state.freeBytes = free
                state.totalBytes = total
            }
        }
        guard let failure = result.failure else {
            return .init(
                check: .nfs, verdict: .pass, detail: "NFS server \(target) answered, marker \(settings.nfsMarkerPath) present",
                elapsed: result.elapsed)
        }
        let detail: String
        switch failure {
        case .markerMissing: detail = "marker missing on the NFS server: \(target) has no \(settings.nfsMarkerPath)"
        case .timedOut: detail = "timed out: NFS server \(target) did not answer within \(settings.timeout.milliseconds) ms"
        case .unreachable(let why): detail = "NFS server unreachable: \(target): \(why)"
        case .mountFailed(let why): detail = "NFS mount failed: \(target): \(why)"
        case .misconfigured(let why): detail = "NFS misconfigured: \(why)"
        }
        return .init(check: .nfs, verdict: .fail, detail: detail, elapsed: result.elapsed)
    }

    /// The store's count of calls past their deadline (a read, write or fsync on a share that stopped
    /// answering). While any is stuck the store is disabled, whatever the checks say: the checks may pass
    /// (a marker stat answering while data reads hang) yet the share is not serving.
    public func storeCallsStuck(_ count: Int, detail: String?) {
        let (before, after) = current.withLock { state -> (GuardState, GuardState) in
            let before = state
            state.hungCalls = count
            if count == 0 {
                state.hungDetail = nil
            } else if state.hungDetail == nil || detail != nil {
                state.hungDetail = detail ?? state.hungDetail
            }
            Self.derive(&state)
            return (before, state)
        }
        logTransition(before, after)
    }

    /// Enabled only when every check passes and no store call is stuck; the reason is the first failure.
    private static func derive(_ state: inout GuardState) {
        let failure = GuardCheck.allCases.compactMap { state.results[$0] }.first(where: \.failed)
        if let failure {
            state.enabled = false
            state.reason = failure.detail
        } else if state.hungCalls > 0 {
            state.enabled = false
            state.reason = "\(state.hungDetail ?? "timed out: a call to the store did not answer") (\(state.hungCalls) call(s) still stuck)"
        } else {
            state.enabled = true
            state.reason = nil
        }
    }

    /// Merges results into the state; logs enable/disable transitions once.
    private func record(_ results: [GuardCheckResult]) -> GuardState {
        let (before, after) = current.withLock { state -> (GuardState, GuardState) in
            let before = state
            for result in results { state.results[result.check] = result }
            Self.derive(&state)
            state.lastCheck = Date()
            return (before, state)
        }
        logTransition(before, after)
        return after
    }

    private func logTransition(_ before: GuardState, _ after: GuardState) {
        if before.enabled && !after.enabled {
            logger.error("store disabled", metadata: ["reason": "\(after.reason ?? "")", "datadir": "\(settings.datadir)"])
        } else if !before.enabled && after.enabled {
            logger.notice("store enabled: every check passes", metadata: ["datadir": "\(settings.datadir)"])
        } else if !after.enabled && before.reason != after.reason {
            logger.warning("store still disabled", metadata: ["reason": "\(after.reason ?? "")"])
        }
    }

    // MARK: Service

    /// Re-checks every `interval` until graceful shutdown.
    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.runAllChecks()
                try await Task.sleep(for: self.settings.interval)
            }
        }
    }
}

/// Callers asking while a check is running share its answer instead of starting another.
actor SingleFlight<Value: Sendable> {
    private var inFlight: Task<Value, Never>?

    func run(_ body: @escaping @Sendable () async -> Value) async -> Value {
        if let inFlight { return await inFlight.value }
        let task = Task { await body() }
        inFlight = task
        let value = await task.value
        inFlight = nil
        return value
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
