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

    /// Where the share's identity is recorded (the metadata); nil checks only that a marker is there.
    private let identity: StoreIdentityRecord?
    /// The recorded identity once known: the database is asked once per process, not per write.
    private let expectedStoreID = Mutex<String?>(nil)
    /// When the database last answered "nothing recorded". With Glance's empty marker no id is ever
    /// known, so that answer is reused for `identityMaxAge` instead of reading the database on every
    /// check, and stands in for up to `identityStaleLimit` when a read fails: a database slow under load
    /// must not disable a healthy share.
    private let nothingRecordedAt = Mutex<ContinuousClock.Instant?>(nil)
    /// Warn once per run of failed identity reads that an earlier answer stands in, not on every check.
    private let warnedStaleIdentity = Atomic<Bool>(false)
    /// Warn once per process about a Glance-style marker without a store id, not on every check.
    private let warnedUnidentified = Atomic<Bool>(false)

    /// - Parameters:
    ///   - probe: the NFS server probe; required when `settings.nfsTarget` is set (`LibNFSProbe`).
    ///   - identity: records and recalls the marker's store id (nil: any share with a marker is accepted).
    public init(settings: MountGuardSettings, probe: (any NFSProbe)?, identity: StoreIdentityRecord? = nil, logger: Logger) {
        self.settings = settings
        self.probe = probe
        self.identity = identity
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

    /// Free space for `filesystem_store_reserved_space`: from the NFS server (libnfs statvfs, a result at
    /// most `maxAge` old) when the store is NFS, else `statvfs` of the store directory on the guard's thread;
    /// either way within `timeout`, or `.storeUnavailable`.
    public func freeSpace() async throws -> StoreCapacity? {
        if probe != nil {
            let results = await freshSlowChecks()
            if let failure = results.first(where: \.failed) {
                throw ImageStoreError.storeUnavailable("store disabled: \(failure.detail)")
            }
            let state = self.state
            guard let free = state.freeBytes, let total = state.totalBytes else {
                throw ImageStoreError.storeUnavailable("store disabled: the NFS server did not report its free space")
            }
            return StoreCapacity(totalBytes: total, freeBytes: free)
        }
        let datadir = settings.datadir
        let outcome = await executor.run(deadline: settings.timeout) { () -> Result<StoreCapacity, POSIXError> in
            var fs = statvfs()
            guard statvfs(datadir, &fs) == 0 else { return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
            let fragment = Int64(fs.f_frsize)
            return .success(StoreCapacity(totalBytes: Int64(fs.f_blocks) * fragment, freeBytes: Int64(fs.f_bavail) * fragment))
        }
        switch outcome {
        case .completed(.success(let capacity)):
            current.withLock { state in
                state.freeBytes = capacity.freeBytes
                state.totalBytes = capacity.totalBytes
            }
            return capacity
        case .completed(.failure(let error)):
            throw ImageStoreError.storeUnavailable("store disabled: statvfs \(datadir): \(String(cString: strerror(error.code.rawValue)))")
        case .timedOut:
            throw ImageStoreError.storeUnavailable(
                "store disabled: timed out: statvfs of \(datadir) did not answer within \(settings.timeout.wholeMilliseconds) ms")
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

    /// Reads the marker (its first `StoreMarker.maximumSize` bytes), plus `statvfs` of the directory for
    /// free space, on the guard's thread; then compares the marker's store id with the recorded one.
    func checkMarker() async -> GuardCheckResult {
        let path = settings.markerPath
        let datadir = settings.datadir
        let start = ContinuousClock.now
        let outcome = await executor.run(deadline: settings.timeout) { () -> (Int32, String?, Int64?, Int64?) in
            let text: String
            switch StoreMarker.readText(at: path) {
            case .failure(let error): return (error.code.rawValue, nil, nil, nil)
            case .success(let read): text = read
            }
            var fs = statvfs()
            guard statvfs(datadir, &fs) == 0 else { return (0, text, nil, nil) }
            return (0, text, Int64(fs.f_bavail) * Int64(fs.f_frsize), Int64(fs.f_blocks) * Int64(fs.f_frsize))
        }
        let elapsed = ContinuousClock.now - start
        switch outcome {
        case .completed((0, let text, let free, let total)):
            if probe == nil, let free, let total {
                current.withLock { state in
                    state.freeBytes = free
                    state.totalBytes = total
                }
            }
            return await checkIdentity(StoreMarker(parsing: text ?? ""), start: start)
        case .completed((ENOENT, _, _, _)), .completed((ENOTDIR, _, _, _)):
            return .init(check: .marker, verdict: .fail, detail: "marker missing: \(path) not found", elapsed: elapsed)
        case .completed((let code, _, _, _)):
            return .init(
                check: .marker, verdict: .fail, detail: "marker check failed: read \(path): \(String(cString: strerror(code)))",
                elapsed: elapsed)
        case .timedOut:
            return .init(
                check: .marker, verdict: .fail,
                detail: "timed out: reading \(path) did not answer within \(settings.timeout.wholeMilliseconds) ms", elapsed: elapsed)
        }
    }

    /// The right share, not just a share: the marker's store id must be the one recorded in the metadata
    /// (recorded by the first check that sees an id). A marker without an id (Glance's empty `.glance`)
    /// passes with a warning while nothing is recorded; that answer is reused for `identityMaxAge`.
    private func checkIdentity(_ marker: StoreMarker, start: ContinuousClock.Instant) async -> GuardCheckResult {
        let path = settings.markerPath
        func result(_ verdict: GuardCheckResult.Verdict, _ detail: String) -> GuardCheckResult {
            .init(check: .marker, verdict: verdict, detail: detail, elapsed: ContinuousClock.now - start)
        }
        guard let identity else {
            return result(.pass, "marker \(path) present" + (marker.storeID.map { ", store id \($0)" } ?? ""))
        }
        var expected = expectedStoreID.withLock { $0 }
        // How long ago the database said "nothing recorded" (only a marker without an id relies on it:
        // one with an id is claimed, which records it).
        let nothingRecordedAge = marker.storeID == nil ? nothingRecordedAt.withLock { $0 }.map { ContinuousClock.now - $0 } : nil
        if expected == nil, nothingRecordedAge.map({ $0 > settings.identityMaxAge }) ?? true {
            // Bounded like every other check: a slow database must not hold a write past the guard's timeout.
            let answer = await value(within: settings.timeout) { () -> Result<String?, any Error> in
                do {
                    if let id = marker.storeID { return .success(try await identity.claim(id)) }
                    return .success(try await identity.recorded())
                } catch {
                    return .failure(error)
                }
            }
            let failure: String?
            switch answer {
            case nil:
                failure = "timed out: the recorded store id was not read within \(settings.timeout.wholeMilliseconds) ms"
            case .failure(let error)?:
                failure = "store id check failed: cannot read the recorded store id: \(error)"
            case .success(let recorded)?:
                failure = nil
                expected = recorded
                warnedStaleIdentity.store(false, ordering: .relaxed)
                if let recorded {
                    expectedStoreID.withLock { $0 = recorded }
                    if recorded == marker.storeID {
                        logger.info("store id recorded", metadata: ["store_id": "\(recorded)", "marker": "\(path)"])
                    }
                } else {
                    nothingRecordedAt.withLock { $0 = ContinuousClock.now }
                }
            }
            if let failure {
                // The database not answering says nothing about the share: a recent "nothing recorded"
                // still holds (bounded by `identityStaleLimit`), so the marker's other checks decide.
                guard let age = nothingRecordedAge, age <= settings.identityStaleLimit else { return result(.fail, failure) }
                if !warnedStaleIdentity.exchange(true, ordering: .relaxed) {
                    logger.warning(
                        "the recorded store id could not be read; the database's answer from \(age.wholeMilliseconds) ms ago (nothing recorded) stands in",
                        metadata: ["reason": "\(failure)", "marker": "\(path)"])
                }
            }
        }
        switch (marker.storeID, expected) {
        case (let found?, let expected?) where found != expected:
            return result(.fail, "wrong share: marker id \(found), expected \(expected)")
        case (nil, let expected?):
            return result(.fail, "wrong share: marker \(path) has no store id, expected \(expected)")
        case (nil, nil):
            if !warnedUnidentified.exchange(true, ordering: .relaxed) {
                logger.warning(
                    "the marker has no store id (Glance's empty marker): another share with a marker would not be noticed; run imagestore init-store --adopt",
                    metadata: ["marker": "\(path)"])
            }
            return result(.pass, "marker \(path) present, without a store id (run imagestore init-store --adopt)")
        case (let found?, _):
            return result(.pass, "marker \(path) present, store id \(found)")
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
                detail: "timed out: reading /proc/self/mountinfo did not answer within \(settings.timeout.wholeMilliseconds) ms",
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
        case .timedOut: detail = "timed out: NFS server \(target) did not answer within \(settings.timeout.wholeMilliseconds) ms"
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
            for result in results {
                state.results[result.check] = result
                if result.failed {
                    state.failureCounts[GuardFailureKey(check: result.check.rawValue, reason: GuardState.reasonClass(result.detail)), default: 0] += 1
                }
            }
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

/// Where the mount guard records the share's identity and reads it back (the metadata repository).
public struct StoreIdentityRecord: Sendable {
    let claim: @Sendable (String) async throws -> String
    let recorded: @Sendable () async throws -> String?

    /// The identity of backend `store` in `repository`.
    public init(repository: any ImageRepository, store: String) {
        claim = { try await repository.claimStoreIdentity($0, of: store) }
        recorded = { try await repository.storeIdentity(of: store) }
    }

    /// From the two calls themselves (tests: a database that stops answering).
    init(claim: @escaping @Sendable (String) async throws -> String, recorded: @escaping @Sendable () async throws -> String?) {
        self.claim = claim
        self.recorded = recorded
    }

    /// Compares with the recorded identity but never records one (`imagestore check` only looks): with
    /// nothing recorded yet, the marker's id is accepted, as the server's first check would record it.
    public static func readOnly(repository: any ImageRepository, store: String) -> StoreIdentityRecord {
        StoreIdentityRecord(
            claim: { marker in try await repository.storeIdentity(of: store) ?? marker },
            recorded: { try await repository.storeIdentity(of: store) })
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
