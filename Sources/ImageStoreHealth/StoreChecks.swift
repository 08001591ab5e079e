import Foundation
import ImageStoreCore

/// What the store backends need of the store's mount guard. `ImageStoreAPI` makes `MountGuard` conform,
/// so this module knows the guard only through this protocol (and tests can script one).
public protocol GuardedStore: AnyObject, Sendable {
    /// The guard's NFS check, run now under the guard's own deadline (OK when the store is not on NFS).
    func nfsHealth() async -> HealthResult
    /// The guard's mount point check, run now under the guard's own deadline.
    func mountpointHealth() async -> HealthResult
    /// The guard's overall verdict (writes enabled or not) as its own loop last saw it; no I/O.
    var storeHealth: HealthResult { get }
    /// The deadline of the guard's own checks: the `nfs` and `mountpoint` backends get at least that long.
    var checkDeadline: Duration { get }
}

/// `nfs`: the mount guard's libnfs check that the NFS server answers and serves the marker.
/// OK when the store is not configured for NFS (nothing to check).
public struct NFSCheck: HealthCheck {
    public let name = "nfs"
    let mountGuard: (any GuardedStore)?

    public init(mountGuard: (any GuardedStore)?) { self.mountGuard = mountGuard }

    public func check() async -> HealthResult {
        guard let mountGuard else { return .ok("the store is not guarded") }
        return await mountGuard.nfsHealth()
    }
}

/// `mountpoint`: the store directory is a mount point of an expected type (/proc/self/mountinfo).
public struct MountpointCheck: HealthCheck {
    public let name = "mountpoint"
    let mountGuard: (any GuardedStore)?

    public init(mountGuard: (any GuardedStore)?) { self.mountGuard = mountGuard }

    public func check() async -> HealthResult {
        guard let mountGuard else { return .ok("the store is not guarded") }
        return await mountGuard.mountpointHealth()
    }
}

/// `store`: the mount guard's overall verdict (writes enabled or not), as its own loop last saw it.
public struct StoreCheck: HealthCheck {
    public let name = "store"
    let mountGuard: (any GuardedStore)?

    public init(mountGuard: (any GuardedStore)?) { self.mountGuard = mountGuard }

    public func check() async -> HealthResult {
        mountGuard?.storeHealth ?? .ok("the store is not guarded")
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
