import Foundation

/// The name of one guard check, as `imagestore check` and `/v2/info/stores/detail` show it.
public enum GuardCheck: String, Sendable, CaseIterable, Codable {
    case configuration, marker, mountpoint, nfs
}

/// The outcome of one check.
public struct GuardCheckResult: Sendable, Equatable {
    public enum Verdict: String, Sendable { case pass, fail, skipped }
    public var check: GuardCheck
    public var verdict: Verdict
    /// What was seen: "marker /x/.glance present", "not a mount point: /x", "timed out: …".
    public var detail: String
    public var elapsed: Duration
    public var checkedAt: Date

    public init(check: GuardCheck, verdict: Verdict, detail: String, elapsed: Duration = .zero, checkedAt: Date = Date()) {
        self.check = check
        self.verdict = verdict
        self.detail = detail
        self.elapsed = elapsed
        self.checkedAt = checkedAt
    }

    public var failed: Bool { verdict == .fail }
}

/// The guard's view of the store: enabled (writes allowed) or disabled with the reason.
public struct GuardState: Sendable, Equatable {
    public var enabled: Bool
    /// The first failing check's detail, when disabled.
    public var reason: String?
    public var results: [GuardCheck: GuardCheckResult]
    public var lastCheck: Date?
    /// From the NFS server (statvfs through libnfs) or the local filesystem.
    public var freeBytes: Int64?
    public var totalBytes: Int64?
    /// Store calls (reads, writes, metadata) past their deadline that have not returned yet: each holds
    /// one of the store's bounded threads. While above zero the store is disabled.
    public var hungCalls = 0
    /// What timed out, while `hungCalls` > 0.
    public var hungDetail: String?
    /// Failed check runs since start, by check and reason class (`GuardState.reasonClass`): the
    /// `imagestore_store_check_failures_total` counter.
    public var failureCounts: [GuardFailureKey: Int] = [:]

    /// The failure's kind without its particulars (paths, durations): the detail up to its first `:`
    /// ("marker missing", "timed out", "not a mount point", "wrong share"), so metric labels stay few.
    public static func reasonClass(_ detail: String) -> String {
        let head = detail.split(separator: ":", maxSplits: 1).first.map(String.init) ?? detail
        let trimmed = head.trimmingCharacters(in: .whitespaces).lowercased()
        return trimmed.isEmpty ? "unknown" : String(trimmed.prefix(48))
    }

    public init(
        enabled: Bool, reason: String? = nil, results: [GuardCheck: GuardCheckResult] = [:], lastCheck: Date? = nil,
        freeBytes: Int64? = nil, totalBytes: Int64? = nil
    ) {
        self.enabled = enabled
        self.reason = reason
        self.results = results
        self.lastCheck = lastCheck
        self.freeBytes = freeBytes
        self.totalBytes = totalBytes
    }

    /// Results in the order checks run.
    public var orderedResults: [GuardCheckResult] { GuardCheck.allCases.compactMap { results[$0] } }
}

/// One label pair of `imagestore_store_check_failures_total`.
public struct GuardFailureKey: Hashable, Sendable {
    public var check: String
    public var reason: String
    public init(check: String, reason: String) {
        self.check = check
        self.reason = reason
    }
}
