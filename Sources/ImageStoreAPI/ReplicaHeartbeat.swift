import Foundation
import ImageStoreCore
import Logging
import ServiceLifecycle

/// Keeps this replica's lease and takes over dead ones: records the replica in the catalogue, renews its
/// heartbeat every third of the lease, and after each heartbeat runs a takeover pass
/// (`ImageService.takeOverExpiredReplicas`) for replicas whose heartbeat is older than the lease. On
/// graceful shutdown the row goes (its uploads were drained or cleaned up by then).
final class ReplicaHeartbeat: Service {
    private let registry: any ReplicaRegistry
    private let service: ImageService
    private let lease: ReplicaLease
    private let host: String
    private let logger: Logger

    init(registry: any ReplicaRegistry, service: ImageService, lease: ReplicaLease, logger: Logger) {
        self.registry = registry
        self.service = service
        self.lease = lease
        self.host = ProcessInfo.processInfo.hostName
        self.logger = logger
    }

    var interval: Duration { lease.leaseTime / 3 }

    /// One round: heartbeat (re-registering when the row is gone), then a takeover pass.
    func beat() async {
        let started = ContinuousClock.now
        do {
            if try await registry.heartbeatReplica(lease.replicaID) {
                lease.renewed(heartbeatStartedAt: started)
            } else {
                // Declared dead (we were stopped or cut off past the lease): what we were writing was
                // taken over; uploads started before now must not commit. Come back as a live replica.
                lease.lost()
                logger.error(
                    "this replica was declared dead by another (its lease expired); its running uploads will fail",
                    metadata: ["replica": "\(lease.replicaID)"])
                try await registry.registerReplica(lease.replicaID, host: host)
                lease.renewed(heartbeatStartedAt: started)
            }
        } catch {
            logger.warning("replica heartbeat failed", metadata: ["replica": "\(lease.replicaID)", "error": "\(error)"])
            return
        }
        do {
            let report = try await service.takeOverExpiredReplicas(lease: lease.leaseTime)
            if report.uploadsReset > 0 || !report.replicasRemoved.isEmpty || report.temporaryFilesRemoved > 0 {
                logger.warning(
                    "took over replicas whose lease expired",
                    metadata: [
                        "replicas": "\(report.replicasRemoved.joined(separator: ","))", "uploads_reset": "\(report.uploadsReset)",
                        "temp_files_removed": "\(report.temporaryFilesRemoved)",
                    ])
            }
        } catch {
            logger.warning("takeover pass failed; retried at the next heartbeat", metadata: ["error": "\(error)"])
        }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var registered = false
            while !Task.isCancelled {
                if !registered {
                    let started = ContinuousClock.now
                    do {
                        try await self.registry.registerReplica(self.lease.replicaID, host: self.host)
                        self.lease.renewed(heartbeatStartedAt: started)
                        registered = true
                        self.logger.info(
                            "replica registered",
                            metadata: ["replica": "\(self.lease.replicaID)", "lease_s": "\(self.lease.leaseTime)"])
                    } catch {
                        self.logger.warning("cannot register this replica yet; retrying", metadata: ["error": "\(error)"])
                    }
                } else {
                    await self.beat()
                }
                do { try await Task.sleep(for: self.interval) } catch { break }
            }
        }
        // Leaving cleanly: nothing of ours needs taking over.
        _ = try? await registry.removeReplica(lease.replicaID, ifExpired: .zero)
    }
}
