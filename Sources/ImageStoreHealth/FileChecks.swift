import Foundation
import ImageStoreCore

#if canImport(Glibc)
import Glibc
#endif

/// `stat()` of paths on the check's own thread under a deadline, with `os.path.exists` semantics:
/// any error (ENOENT, EACCES, ESTALE, EIO) counts as "does not exist", as in oslo.middleware.
/// Each check has its own thread, so a path hung on one mount does not delay the others.
struct PathProbe: Sendable {
    enum Outcome: Sendable, Equatable {
        /// The first missing path, or nil when all exist.
        case answered(missing: String?)
        /// `path`'s stat did not answer in time (or an earlier stat on this thread is still stuck).
        case timedOut(path: String)
    }

    let executor: BlockingCallExecutor
    let timeout: Duration

    init(name: String, timeout: Duration) {
        executor = BlockingCallExecutor(name: "health-\(name)")
        self.timeout = timeout
    }

    /// Stats `paths` in order, stopping at the first missing one, all within `timeout`.
    func firstMissing(_ paths: [String]) async -> Outcome {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        for path in paths {
            let remaining = end - clock.now
            guard remaining > .zero else { return .timedOut(path: path) }
            let outcome = await executor.run(deadline: remaining) { () -> Bool in
                var info = stat()
                return stat(path, &info) == 0
            }
            switch outcome {
            case .completed(true): continue
            case .completed(false): return .answered(missing: path)
            case .timedOut: return .timedOut(path: path)
            }
        }
        return .answered(missing: nil)
    }

    func timedOutResult(_ path: String) -> HealthResult {
        HealthResult(
            available: false, reason: HealthResult.Reason.timedOut,
            details: "TIMED OUT: stat of \(path) did not answer within \(timeout.wholeMilliseconds) ms")
    }
}

/// oslo.middleware's `disable_by_file`: unhealthy while `disable_by_file_path` exists.
public struct DisableByFileCheck: HealthCheck {
    public let name = "disable_by_file"
    public let path: String?
    private let probe: PathProbe

    public init(path: String?, timeout: Duration) {
        self.path = path
        probe = PathProbe(name: name, timeout: timeout)
    }

    public func check() async -> HealthResult {
        guard let path else { return .ok("No 'disable_by_file_path' configuration value specified") }
        switch await probe.firstMissing([path]) {
        case .answered(missing: nil):
            return HealthResult(available: false, reason: HealthResult.Reason.disabledByFile, details: "Path '\(path)' was found")
        case .answered:
            return .ok("Path '\(path)' was not found")
        case .timedOut(let path):
            return probe.timedOutResult(path)
        }
    }
}

/// oslo.middleware's `disable_by_files_ports` for one port: unhealthy while that port's file exists.
/// Requests on ports without a file are always OK (the monitor answers those without a check).
public struct DisableByFilesPortsCheck: HealthCheck {
    public let name = "disable_by_files_ports"
    public let port: Int
    public let path: String
    private let probe: PathProbe

    public init(port: Int, path: String, timeout: Duration) {
        self.port = port
        self.path = path
        probe = PathProbe(name: "\(name)-\(port)", timeout: timeout)
    }

    public func check() async -> HealthResult {
        switch await probe.firstMissing([path]) {
        // oslo gives no details for this backend.
        case .answered(missing: nil): return HealthResult(available: false, reason: HealthResult.Reason.disabledByFile)
        case .answered: return .ok()
        case .timedOut(let path): return probe.timedOutResult(path)
        }
    }
}

/// oslo.middleware's `enable_by_files`: healthy only while every path exists (an empty list is OK);
/// reports the first missing one.
public struct EnableByFilesCheck: HealthCheck {
    public let name = "enable_by_files"
    public let paths: [String]
    private let probe: PathProbe

    public init(paths: [String], timeout: Duration) {
        self.paths = paths
        probe = PathProbe(name: name, timeout: timeout)
    }

    public func check() async -> HealthResult {
        switch await probe.firstMissing(paths) {
        case .answered(missing: nil):
            return .ok("Specified file paths are available")
        case .answered(missing: let path?):
            return HealthResult(
                available: false, reason: HealthResult.Reason.filePathMissing, details: "File path \(path) is missing")
        case .timedOut(let path):
            return probe.timedOutResult(path)
        }
    }
}
