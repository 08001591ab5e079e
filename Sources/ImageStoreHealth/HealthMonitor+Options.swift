import Foundation
import ImageStoreConfig
import ImageStoreCore
import Logging

extension HealthMonitor {
    /// The monitor for the `[healthcheck]` options: one backend per name in `backends`, in order.
    /// - Parameters:
    ///   - mountGuard: the store's guard, for `nfs`, `mountpoint` and `store` (OK when nil: nothing is guarded).
    ///   - repository: the metadata database, for `database`.
    public convenience init(
        options: HealthcheckOptions, mountGuard: (any GuardedStore)?, repository: any ImageRepository, logger: Logger
    ) {
        let (backends, settings) = Self.layout(options: options, mountGuard: mountGuard, repository: repository)
        self.init(backends: backends, settings: settings, logger: logger)
    }

    /// New `[healthcheck]` options (SIGHUP), with the same guard and database.
    public func reconfigure(options: HealthcheckOptions, mountGuard: (any GuardedStore)?, repository: any ImageRepository) async {
        let (backends, settings) = Self.layout(options: options, mountGuard: mountGuard, repository: repository)
        await reconfigure(backends: backends, settings: settings)
    }

    static func layout(
        options: HealthcheckOptions, mountGuard: (any GuardedStore)?, repository: any ImageRepository
    ) -> ([HealthBackend], Settings) {
        let timeout = Duration.milliseconds(options.checkTimeoutMilliseconds)
        let backends = options.backends.map { name -> HealthBackend in
            switch name {
            case "disable_by_file":
                return HealthBackend(DisableByFileCheck(path: options.disableByFilePath, timeout: timeout))
            case "disable_by_files_ports":
                var byPort: [Int: any HealthCheck] = [:]
                for (port, path) in options.disableByFilePaths {
                    guard let port = Int(port) else { continue }  // validated by the configuration reader
                    byPort[port] = DisableByFilesPortsCheck(port: port, path: path, timeout: timeout)
                }
                return HealthBackend(name: name, perPort: byPort)
            case "enable_by_files":
                return HealthBackend(EnableByFilesCheck(paths: options.enableByFilePaths, timeout: timeout))
            case "nfs": return HealthBackend(NFSCheck(mountGuard: mountGuard))
            case "mountpoint": return HealthBackend(MountpointCheck(mountGuard: mountGuard))
            case "store": return HealthBackend(StoreCheck(mountGuard: mountGuard))
            case "database": return HealthBackend(DatabaseCheck(repository: repository))
            default:
                // The configuration reader rejects unknown names; a programmatic one must not pass silently.
                return HealthBackend(UnknownBackend(name: name))
            }
        }
        // The guard's checks carry their own deadline (`mount_guard_timeout`): give them that long, or a slow
        // but answering NFS server would be cut off by a shorter check_timeout and the backend would flap.
        var roundTimeout = timeout
        if let guardTimeout = mountGuard?.checkDeadline, options.backends.contains(where: { $0 == "nfs" || $0 == "mountpoint" }) {
            roundTimeout = max(timeout, guardTimeout + .milliseconds(250))
        }
        return (
            backends,
            Settings(
                interval: .milliseconds(Int64(options.checkInterval * 1000)), checkTimeout: roundTimeout,
                failureThreshold: options.failureThreshold)
        )
    }
}

/// A backend name nobody implements: always unavailable, so the mistake is visible.
struct UnknownBackend: HealthCheck {
    let name: String
    func check() async -> HealthResult {
        HealthResult(available: false, reason: "UNKNOWN BACKEND", details: "no health check named \(name)")
    }
}
