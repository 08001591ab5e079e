import Foundation
import Synchronization

/// One `imagestore serve` process as the catalogue records it (the `replicas` table).
public struct ReplicaRecord: Sendable, Equatable {
    public var id: String
    public var host: String
    public var startedAt: Date
    public var heartbeatAt: Date

    public init(id: String, host: String, startedAt: Date, heartbeatAt: Date) {
        self.id = id
        self.host = host
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
    }
}

/// Where replicas record themselves and their heartbeats, beside the images they own (an image being
/// written has `uploadOwner` = the writing replica's id). Every time comparison uses the database's
/// clock, so replicas on hosts whose clocks disagree still agree on which lease expired.
public protocol ReplicaRegistry: Sendable {
    /// True when several processes may share this catalogue (PostgreSQL). An embedded catalogue (SQLite)
    /// serves one replica: every other replica recorded in it is an earlier run of this one.
    var isShared: Bool { get }

    /// Records (or re-records) a replica with a fresh heartbeat.
    func registerReplica(_ id: String, host: String) async throws

    /// Renews the replica's heartbeat. False when its row is gone: another replica declared it dead
    /// (and took over what it was writing).
    func heartbeatReplica(_ id: String) async throws -> Bool

    /// Every recorded replica.
    func replicas() async throws -> [ReplicaRecord]

    /// Replicas whose heartbeat is older than `lease`.
    func expiredReplicas(lease: Duration) async throws -> [ReplicaRecord]

    /// Removes the replica's row if its heartbeat is still older than `lease` (compare-and-set: a replica
    /// that came back meanwhile stays). Returns whether it was removed.
    @discardableResult
    func removeReplica(_ id: String, ifExpired lease: Duration) async throws -> Bool
}

/// This replica's view of its own lease: renewed by each successful heartbeat. An upload captures the
/// generation when it starts; its commit is refused when the lease lapsed since (no heartbeat within
/// the lease time) or the replica learned it had been declared dead (its row gone), since another
/// replica may have reset the image meanwhile.
public final class ReplicaLease: Sendable {
    public let replicaID: String
    public let leaseTime: Duration
    private struct State {
        var renewedAt: ContinuousClock.Instant
        var generation = 0
    }
    private let state: Mutex<State>

    public init(replicaID: String, leaseTime: Duration) {
        self.replicaID = replicaID
        self.leaseTime = leaseTime
        // Start-up counts as a renewal: the replica registers right away, before it takes uploads.
        self.state = Mutex(State(renewedAt: .now))
    }

    /// A heartbeat that started at `startedAt` was recorded. Measured from its start, so the local
    /// view of the lease never outlives the one other replicas see.
    public func renewed(heartbeatStartedAt startedAt: ContinuousClock.Instant) {
        state.withLock { state in
            if startedAt > state.renewedAt { state.renewedAt = startedAt }
        }
    }

    /// The row was found gone (declared dead): uploads started before now must not commit.
    public func lost() {
        state.withLock { $0.generation += 1 }
    }

    public var generation: Int { state.withLock { $0.generation } }

    /// Whether an upload that started at `generation` may still commit.
    public func holds(since generation: Int) -> Bool {
        state.withLock { state in
            state.generation == generation && ContinuousClock.now - state.renewedAt < leaseTime
        }
    }
}

/// Image ids this process is writing right now. Recovery and takeover leave them alone, whatever the
/// catalogue says (an upload of this process may be between its compare-and-set steps).
public final class UploadsInFlight: Sendable {
    private let ids = Mutex<[ImageID: Int]>([:])

    public init() {}

    public func insert(_ id: ImageID) { ids.withLock { $0[id, default: 0] += 1 } }

    public func remove(_ id: ImageID) {
        ids.withLock { ids in
            if let n = ids[id], n > 1 { ids[id] = n - 1 } else { ids[id] = nil }
        }
    }

    public func contains(_ id: ImageID) -> Bool { ids.withLock { $0[id] != nil } }
}
