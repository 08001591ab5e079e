import Foundation
import ImageStoreConfig
import ImageStoreCore
import ImageStorePolicy
import Logging
import Synchronization

/// Applies a configuration read again on SIGHUP to what can change under a running server: logging
/// (`debug`, `log_file` reopened — what logrotate needs —, `use_json`, `use_stderr`), the `[healthcheck]`
/// options (backends rebuilt and run once), and the policy (`[oslo_policy]`, the policy file read again).
/// Every other option that changed is logged as needing a restart and stays as it was.
///
/// `imagestore serve` makes one and hands it to `buildApplication`, which attaches the parts it built.
public final class ConfigurationReloader: Sendable {
    public struct Report: Sendable, Equatable {
        /// What changed and is now in force, e.g. `[healthcheck] backends`.
        public var applied: [String] = []
        /// `[section] key` of options that changed and take effect only after a restart.
        public var needsRestart: [String] = []
        /// Parts that could not be reloaded (a policy file that no longer parses): the old ones stay.
        public var failed: [String] = []
    }

    struct Targets: Sendable {
        var policy: Reloadable<PolicyEnforcer>
        var healthcheck: Reloadable<HealthcheckOptions>
        var rebuildHealth: @Sendable (HealthcheckOptions) async -> Void
    }

    /// `[DEFAULT]` options applied by `logging`, and whole sections applied here.
    static let reloadableDefaults: Set<String> = ["debug", "log_file", "use_json", "use_stderr"]
    static let reloadableSections: Set<String> = ["healthcheck"]
    static let reloadablePolicyKeys: Set<String> = PolicyOptions.optionNames

    private let state: Mutex<(configuration: ServiceConfiguration, targets: Targets?)>
    private let logging: (@Sendable (LoggingOptions) -> Void)?
    private let logger: Logger

    /// - Parameters:
    ///   - configuration: the configuration the server starts with.
    ///   - logging: applies new logging options (the log output lives with the command, not the API).
    public init(configuration: ServiceConfiguration, logging: (@Sendable (LoggingOptions) -> Void)? = nil, logger: Logger) {
        state = Mutex((configuration, nil))
        self.logging = logging
        self.logger = logger
    }

    func attach(_ targets: Targets) {
        state.withLock { $0.targets = targets }
    }

    /// The configuration in force: the start-up one with the reloaded parts replaced.
    public var configuration: ServiceConfiguration { state.withLock { $0.configuration } }

    /// Applies what is safe of `new` and logs what changed (notice) and what needs a restart (warning).
    @discardableResult
    public func reload(_ new: ServiceConfiguration) async -> Report {
        let (old, targets) = state.withLock { ($0.configuration, $0.targets) }
        var report = Report()
        var applied = old

        for (key, changed) in Self.loggingChanges(old.logging, new.logging) where changed { report.applied.append("[DEFAULT] \(key)") }
        // Always: logrotate moved the file away and expects the server to open a new one by that name.
        logging?(new.logging)
        applied.logging = new.logging

        if let targets {
            let changed = Self.healthcheckChanges(old.healthcheck, new.healthcheck)
            if !changed.isEmpty {
                targets.healthcheck.replace(with: new.healthcheck)
                await targets.rebuildHealth(new.healthcheck)
                applied.healthcheck = new.healthcheck
                applied.pasteConfigFile = new.pasteConfigFile
                report.applied += changed.map { "[healthcheck] \($0)" }
            }
            do {
                let policy = try makePolicy(new.policy, logger: logger)
                targets.policy.replace(with: policy)
                applied.policy = new.policy
                if let path = new.policy.policyFile, FileManager.default.fileExists(atPath: path) {
                    report.applied.append("[oslo_policy] policy_file \(path) read again")
                }
            } catch {
                report.failed.append("[oslo_policy] policy file: \(error); the rules in force stay")
            }
        }
        report.needsRestart = Self.restartOnlyChanges(old.file, new.file)
        state.withLock { $0.configuration = applied }

        for item in report.applied { logger.notice("configuration reloaded: \(item)") }
        for item in report.needsRestart { logger.warning("configuration reloaded: \(item) changed; needs restart to take effect") }
        for item in report.failed { logger.error("configuration reload failed: \(item)") }
        if report.applied.isEmpty && report.needsRestart.isEmpty && report.failed.isEmpty {
            logger.notice("configuration reloaded: nothing changed")
        }
        return report
    }

    static func loggingChanges(_ old: LoggingOptions, _ new: LoggingOptions) -> [(String, Bool)] {
        [
            ("debug", old.debug != new.debug), ("log_file", old.logFile != new.logFile), ("use_json", old.useJSON != new.useJSON),
            ("use_stderr", old.useStderr != new.useStderr),
        ]
    }

    /// The `[healthcheck]` option names whose typed values differ.
    static func healthcheckChanges(_ old: HealthcheckOptions, _ new: HealthcheckOptions) -> [String] {
        var changed: [String] = []
        if old.backends != new.backends { changed.append("backends") }
        if old.detailed != new.detailed { changed.append("detailed") }
        if old.allowedSourceRanges != new.allowedSourceRanges { changed.append("allowed_source_ranges") }
        if old.ignoreProxiedRequests != new.ignoreProxiedRequests { changed.append("ignore_proxied_requests") }
        if old.disableByFilePath != new.disableByFilePath { changed.append("disable_by_file_path") }
        if old.disableByFilePaths != new.disableByFilePaths { changed.append("disable_by_file_paths") }
        if old.enableByFilePaths != new.enableByFilePaths { changed.append("enable_by_file_paths") }
        if old.checkInterval != new.checkInterval { changed.append("interval") }
        if old.checkTimeout != new.checkTimeout { changed.append("check_timeout") }
        if old.failureThreshold != new.failureThreshold { changed.append("failure_threshold") }
        return changed
    }

    /// `[section] key` for every option added, removed or changed in the file that is not reloadable.
    /// Compared with the file the server started with, so a change stays reported until a restart.
    static func restartOnlyChanges(_ old: INIFile?, _ new: INIFile?) -> [String] {
        func values(_ file: INIFile?) -> [String: String] {
            var values: [String: String] = [:]
            for section in file?.sections ?? [] {
                for entry in section.entries { values["[\(section.name)] \(entry.key)"] = entry.value }
            }
            return values
        }
        func reloadable(_ name: String) -> Bool {
            let parts = name.dropFirst().split(separator: "] ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return false }
            let (section, key) = (parts[0], parts[1])
            if reloadableSections.contains(section) { return true }
            if section == INIFile.defaultSection && reloadableDefaults.contains(key) { return true }
            // [DEFAULT] is every section's fallback: a healthcheck or policy option may be written there.
            if section == INIFile.defaultSection && (HealthcheckOptions.optionNames.contains(key) || reloadablePolicyKeys.contains(key)) {
                return true
            }
            return section == "oslo_policy" && reloadablePolicyKeys.contains(key)
        }
        let before = values(old)
        let after = values(new)
        return Set(before.keys).union(after.keys).filter { before[$0] != after[$0] && !reloadable($0) }.sorted()
    }
}
