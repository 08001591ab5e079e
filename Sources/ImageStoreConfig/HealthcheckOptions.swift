/// The `/healthcheck` endpoint's options: oslo.middleware's `[healthcheck]` group, overridden by the
/// keys of the paste file's `[app:healthcheck]` section, plus ImageStore's background-check settings.
public struct HealthcheckOptions: Sendable, Equatable {
    /// `backends`: the checks to run, in order (see `knownBackends`).
    public var backends: [String]
    /// `detailed`: include process details in the answer (leaks information; keep off in production).
    public var detailed: Bool
    /// `allowed_source_ranges`: client networks (CIDR) allowed to ask; empty means everyone.
    public var allowedSourceRanges: [IPNetwork]
    /// `ignore_proxied_requests`: ignore requests that carry `X-Forwarded*` headers.
    public var ignoreProxiedRequests: Bool
    /// `disable_by_file_path`: for `disable_by_file`: unhealthy while this file exists.
    public var disableByFilePath: String?
    /// `disable_by_file_paths`: for `disable_by_files_ports`: `port:path` pairs, keyed by port.
    public var disableByFilePaths: [String: String]
    /// `enable_by_file_paths`: for `enable_by_files`: healthy only while every one of these exists.
    public var enableByFilePaths: [String]
    /// `interval` (seconds): the time between background runs of the slow checks (nfs, mountpoint, store,
    /// database).
    public var checkInterval: Duration
    /// `check_timeout` (milliseconds): how long one background check may take before it counts as failed.
    public var checkTimeout: Duration
    /// `failure_threshold`: consecutive failures before a check turns unhealthy.
    public var failureThreshold: Int

    public static let defaultCheckInterval: Duration = .seconds(5)
    public static let defaultCheckTimeout: Duration = .milliseconds(1000)
    public static let defaultFailureThreshold = 1

    /// oslo.middleware's backends plus ImageStore's own (`nfs`, `mountpoint`, `store`, `database`).
    public static let knownBackends = [
        "disable_by_file", "disable_by_files_ports", "enable_by_files", "nfs", "mountpoint", "store", "database",
    ]

    public init(
        backends: [String] = [], detailed: Bool = false, allowedSourceRanges: [IPNetwork] = [],
        ignoreProxiedRequests: Bool = false, disableByFilePath: String? = nil,
        disableByFilePaths: [String: String] = [:], enableByFilePaths: [String] = [],
        checkInterval: Duration = Self.defaultCheckInterval, checkTimeout: Duration = Self.defaultCheckTimeout,
        failureThreshold: Int = Self.defaultFailureThreshold
    ) {
        self.backends = backends
        self.detailed = detailed
        self.allowedSourceRanges = allowedSourceRanges
        self.ignoreProxiedRequests = ignoreProxiedRequests
        self.disableByFilePath = disableByFilePath
        self.disableByFilePaths = disableByFilePaths
        self.enableByFilePaths = enableByFilePaths
        self.checkInterval = checkInterval
        self.checkTimeout = checkTimeout
        self.failureThreshold = failureThreshold
    }

    /// Every `[healthcheck]` option name (for the SIGHUP reload, which reloads the whole section).
    public static var optionNames: Set<String> { Key.all }

    enum Key {
        static let backends = "backends"
        static let detailed = "detailed"
        static let allowedSourceRanges = "allowed_source_ranges"
        static let ignoreProxiedRequests = "ignore_proxied_requests"
        static let disableByFilePath = "disable_by_file_path"
        static let disableByFilePaths = "disable_by_file_paths"
        static let enableByFilePaths = "enable_by_file_paths"
        static let interval = "interval"
        static let checkTimeout = "check_timeout"
        static let failureThreshold = "failure_threshold"
        /// oslo.middleware's deprecated filter-mode option: accepted and ignored.
        static let path = "path"

        static let all: Set<String> = [
            backends, detailed, allowedSourceRanges, ignoreProxiedRequests, disableByFilePath, disableByFilePaths,
            enableByFilePaths, interval, checkTimeout, failureThreshold, path,
        ]
    }
}
