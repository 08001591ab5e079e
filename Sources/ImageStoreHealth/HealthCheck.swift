import Foundation

/// What one health check found, in oslo.middleware's shape (`HealthcheckResult`): a short, stable
/// `reason` that every format shows (`OK`, `FILE PATH MISSING`, …) and human-readable `details`
/// that only the detailed formats show (they may name paths and hosts).
public struct HealthResult: Sendable, Equatable {
    public var available: Bool
    public var reason: String
    public var details: String?
    /// When the check produced this result.
    public var checkedAt: Date

    public init(available: Bool, reason: String, details: String? = nil, checkedAt: Date = Date()) {
        self.available = available
        self.reason = reason
        self.details = details
        self.checkedAt = checkedAt
    }

    /// Healthy, with oslo's reason text `OK`.
    public static func ok(_ details: String? = nil) -> HealthResult {
        HealthResult(available: true, reason: Reason.ok, details: details)
    }

    /// The reason texts, oslo.middleware's first, then ImageStore's own.
    public enum Reason {
        public static let ok = "OK"
        /// `disable_by_file`, `disable_by_files_ports` (oslo).
        public static let disabledByFile = "DISABLED BY FILE"
        /// `enable_by_files` (oslo).
        public static let filePathMissing = "FILE PATH MISSING"
        /// A check that did not answer within its timeout (the path or host is only in `details`).
        public static let timedOut = "TIMED OUT"
        public static let nfsUnavailable = "NFS SERVER UNAVAILABLE"
        public static let notMounted = "STORE NOT MOUNTED"
        public static let storeDisabled = "STORE DISABLED"
        /// A different share is mounted: its marker's store id is not the recorded one.
        public static let wrongShare = "WRONG SHARE"
        public static let databaseUnavailable = "DATABASE UNAVAILABLE"
        /// No check round finished recently: the monitor itself is stuck or stopped.
        public static let stale = "HEALTH MONITOR STALE"
        /// Graceful shutdown started: draining, not ready.
        public static let shuttingDown = "SHUTTING DOWN"
        public static let notCheckedYet = "NOT CHECKED YET"
    }
}

/// One health backend (oslo.middleware calls them plugins), e.g. `enable_by_files`.
///
/// `check()` may block on a filesystem or the network; the `HealthMonitor` only ever runs it in the
/// background under a deadline, never while a request waits. Implementations should answer within
/// their own deadline too, so the result can say what hung ("TIMED OUT: stat of /x did not answer…").
public protocol HealthCheck: Sendable {
    /// The backend name as configured in `backends` (`enable_by_files`, `nfs`, …).
    var name: String { get }
    func check() async -> HealthResult
}
