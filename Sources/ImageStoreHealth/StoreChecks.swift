import Foundation
import ImageStoreCore
import ImageStoreGuard

/// `nfs`: the mount guard's libnfs check that the NFS server answers and serves the marker.
/// OK when the store is not configured for NFS (nothing to check).
public struct NFSCheck: HealthCheck {
    public let name = "nfs"
    let mountGuard: MountGuard?

    public init(mountGuard: MountGuard?) { self.mountGuard = mountGuard }

    public func check() async -> HealthResult {
        guard let mountGuard else { return .ok("the store is not guarded") }
        return HealthResult(await mountGuard.run(.nfs), failureReason: HealthResult.Reason.nfsUnavailable)
    }
}

/// `mountpoint`: the store directory is a mount point of an expected type (/proc/self/mountinfo).
public struct MountpointCheck: HealthCheck {
    public let name = "mountpoint"
    let mountGuard: MountGuard?

    public init(mountGuard: MountGuard?) { self.mountGuard = mountGuard }

    public func check() async -> HealthResult {
        guard let mountGuard else { return .ok("the store is not guarded") }
        return HealthResult(await mountGuard.run(.mountpoint), failureReason: HealthResult.Reason.notMounted)
    }
}

/// `store`: the mount guard's overall verdict (writes enabled or not), as its own loop last saw it.
public struct StoreCheck: HealthCheck {
    public let name = "store"
    let state: @Sendable () -> GuardState?

    /// - Parameter state: the guard's latest state without I/O (`{ mountGuard.state }`); nil when unguarded.
    public init(state: @escaping @Sendable () -> GuardState?) { self.state = state }

    public func check() async -> HealthResult {
        guard let state = state() else { return .ok("the store is not guarded") }
        guard state.enabled else {
            let wrongShare = state.reason?.hasPrefix("wrong share") == true
            return HealthResult(
                available: false, reason: wrongShare ? HealthResult.Reason.wrongShare : HealthResult.Reason.storeDisabled,
                details: state.reason ?? "store disabled")
        }
        return .ok("store enabled")
    }
}

/// `database`: a round trip to the metadata database (`ImageRepository.ping()`).
/// The monitor bounds it with the check timeout.
public struct DatabaseCheck: HealthCheck {
    public let name = "database"
    let repository: any ImageRepository

    public init(repository: any ImageRepository) { self.repository = repository }

    public func check() async -> HealthResult {
        do {
            try await repository.ping()
            return .ok("database answered")
        } catch {
            return HealthResult(available: false, reason: HealthResult.Reason.databaseUnavailable, details: "\(error)")
        }
    }
}

extension HealthResult {
    /// A guard check's verdict: pass and skipped are OK (skipped means not configured).
    init(_ result: GuardCheckResult, failureReason: String) {
        switch result.verdict {
        case .pass, .skipped:
            self.init(available: true, reason: Reason.ok, details: result.detail, checkedAt: result.checkedAt)
        case .fail:
            let timedOut = result.detail.hasPrefix("timed out")
            self.init(
                available: false, reason: timedOut ? Reason.timedOut : failureReason,
                details: timedOut ? "TIMED OUT: " + result.detail.dropFirst("timed out: ".count) : result.detail,
                checkedAt: result.checkedAt)
        }
    }
}
