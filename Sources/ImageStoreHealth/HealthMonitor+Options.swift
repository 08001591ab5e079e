import Foundation
import ImageStoreConfig
import ImageStoreCore
import Logging

extension HealthMonitor {
    /// The monitor for the `[healthcheck]` options: one backend per name in `backends`, in order.
    /// - Parameters:
    ///   - mountGuard: the store's guard, for `nfs`, `mountpoint` and `store` (OK when nil: nothing is guarded).
    ///   - repository: the metadata database, for `database`.
    ///   - storeGuards: with several stores, every store's guard by id, in configuration order: `nfs`,
    ///     `mountpoint` and `store` then become one backend per guarded store (`store:<id>`…), so any
    ///     store that is gone makes the service unhealthy and the answer names it.
    public convenience init(
        options: HealthcheckOptions, mountGuard: (any GuardedStore)?, repository: any ImageRepository,
        storeGuards: [(id: String, mountGuard: any GuardedStore)] = [], logger: Logger
    ) {
        let (backends, settings) = Self.layout(
            options: options, mountGuard: mountGuard, repository: repository, storeGuards: storeGuards)
        self.init(backends: backends, settings: settings, logger: logger)
    }

    /// New `[healthcheck]` options (SIGHUP), with the same guards and database.
    public func reconfigure(
        options: HealthcheckOptions, mountGuard: (any GuardedStore)?, repository: any ImageRepository,
        storeGuards: [(id: String, mountGuard: any GuardedStore)] = []
    ) async {
        let (backends, settings) = Self.layout(
            options: options, mountGuard: mountGuard, repository: repository, storeGuards: storeGuards)
        await reconfigure(backends: backends, settings: settings)
    }

    static func layout(
        options: HealthcheckOptions, mountGuard: (any GuardedStore)?, repository: any ImageRepository,
        storeGuards: [(id: String, mountGuard: any GuardedStore)]
    ) -> ([HealthBackend], Settings) {
        let timeout = options.checkTimeout
        let perStore: Set<String> = ["nfs", "mountpoint", "store"]
        func guardChecks(_ name: String, _ mountGuard: (any GuardedStore)?) -> any HealthCheck {
            switch name {
            case "nfs": NFSCheck(mountGuard: mountGuard)
            case "mountpoint": MountpointCheck(mountGuard: mountGuard)
            default: StoreCheck(mountGuard: mountGuard)
            }
        }
        func backend(_ name: String) -> HealthBackend {
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
            case "nfs", "mountpoint", "store": return HealthBackend(guardChecks(name, mountGuard))
            case "database": return HealthBackend(DatabaseCheck(repository: repository))
            default:
                // The configuration reader rejects unknown names; a programmatic one must not pass silently.
                return HealthBackend(UnknownBackend(name: name))
            }
        }
        let backends = options.backends.flatMap { name -> [HealthBackend] in
            // One backend per store as soon as there is more than the default store's guard to watch.
            if perStore.contains(name), storeGuards.count > 1 || storeGuards.contains(where: { $0.mountGuard !== mountGuard }) {
                return storeGuards.map { HealthBackend(StoreScopedCheck(store: $0.id, inner: guardChecks(name, $0.mountGuard))) }
            }
            return [backend(name)]
        }
        // The guard's checks carry their own deadline (`mount_guard_timeout`): give them that long, or a slow
        // but answering NFS server would be cut off by a shorter check_timeout and the backend would flap.
        var roundTimeout = timeout
        let guardTimeout = (storeGuards.map(\.mountGuard) + [mountGuard].compactMap { $0 }).map(\.checkDeadline).max()
        if let guardTimeout, options.backends.contains(where: { $0 == "nfs" || $0 == "mountpoint" }) {
            roundTimeout = max(timeout, guardTimeout + .milliseconds(250))
        }
        return (
            backends,
            Settings(
                interval: options.checkInterval, checkTimeout: roundTimeout,
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
/// One store's guard check among several stores: named `<check>:<store>` and its details say which store.
struct StoreScopedCheck: HealthCheck {
    let store: String
    let inner: any HealthCheck
    var name: String { "\(inner.name):\(store)" }

    func check() async -> HealthResult {
        var result = await inner.check()
        result.details = "store \(store): " + (result.details ?? result.reason)
        return result
    }
}
