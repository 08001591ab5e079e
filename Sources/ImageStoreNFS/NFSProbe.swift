import ImageStoreCore
import Synchronization

/// Answers "is the NFS share there, and is it ours?" within a deadline. The mount guard calls it; only
/// `LibNFSProbe` talks to libnfs. A probe never throws and never overruns its deadline by more than scheduling.
public protocol NFSProbe: Sendable {
    /// Checks that the share answers and that `markerFile` (a path relative to the share root; empty = no marker
    /// check) exists, and reads the share's capacity.
    func probe(markerFile: String, deadline: Duration) async -> NFSProbeResult
}

/// Why a probe did not come back healthy.
public enum NFSProbeFailure: Sendable, Equatable, CustomStringConvertible {
    /// No NFS service answered (connection refused, server gone, I/O error on the connection).
    case unreachable(String)
    /// No answer within the deadline (the associated duration): the server hangs or the network drops packets.
    case timedOut(Duration)
    /// The server answered but refused the mount (e.g. the path is not exported, permission denied).
    case mountFailed(String)
    /// The share is mounted but the marker file is not there: probably the wrong or an empty share.
    case markerMissing
    /// The probe's own configuration is unusable (bad URL, libnfs could not be initialised).
    case misconfigured(String)

    public var description: String {
        switch self {
        case .unreachable(let why): "unreachable: \(why)"
        case .timedOut(let d): "timed out after \(d.formattedMilliseconds)"
        case .mountFailed(let why): "mount failed: \(why)"
        case .markerMissing: "marker file missing"
        case .misconfigured(let why): "misconfigured: \(why)"
        }
    }
}

public struct NFSProbeResult: Sendable, Equatable, CustomStringConvertible {
    /// The server answered NFS calls (true also when only the marker is missing).
    public var reachable: Bool
    /// nil when not checked (no marker configured, or the share could not be reached).
    public var markerPresent: Bool?
    public var freeBytes: Int64?
    public var totalBytes: Int64?
    /// nil exactly when the probe is healthy.
    public var failure: NFSProbeFailure?
    /// Wall time from the call to the answer.
    public var elapsed: Duration
    /// One line for logs and health endpoints.
    public var summary: String

    public var isHealthy: Bool { failure == nil }

    public init(
        reachable: Bool, markerPresent: Bool? = nil, freeBytes: Int64? = nil, totalBytes: Int64? = nil,
        failure: NFSProbeFailure? = nil, elapsed: Duration = .zero, summary: String? = nil
    ) {
        self.reachable = reachable
        self.markerPresent = markerPresent
        self.freeBytes = freeBytes
        self.totalBytes = totalBytes
        self.failure = failure
        self.elapsed = elapsed
        self.summary = ""
        self.summary = summary ?? defaultSummary
    }

    /// A healthy answer, for fakes and tests.
    public static func healthy(
        freeBytes: Int64 = 1 << 40, totalBytes: Int64 = 1 << 41, elapsed: Duration = .zero
    )
        -> Self
    {
        .init(reachable: true, markerPresent: true, freeBytes: freeBytes, totalBytes: totalBytes, elapsed: elapsed)
    }

    /// A failed answer, for fakes and tests; `reachable` follows from the failure.
    public static func failed(_ failure: NFSProbeFailure, elapsed: Duration = .zero) -> Self {
        switch failure {
        case .markerMissing:
            .init(reachable: true, markerPresent: false, failure: failure, elapsed: elapsed)
        default:
            .init(reachable: false, failure: failure, elapsed: elapsed)
        }
    }

    /// This answer with its elapsed time set and the summary written for it.
    func timed(elapsed: Duration) -> Self {
        var copy = self
        copy.elapsed = elapsed
        copy.summary = copy.defaultSummary
        return copy
    }

    private var defaultSummary: String {
        var parts: [String] = [failure.map { "NFS \($0)" } ?? "NFS healthy"]
        if let freeBytes, let totalBytes { parts.append("\(freeBytes) of \(totalBytes) bytes free") }
        parts.append("in \(elapsed.formattedMilliseconds)")
        return parts.joined(separator: ", ")
    }

    public var description: String { summary }
}

extension Duration {
    /// "0.412 ms", "1500 ms": probes live in the millisecond range.
    var formattedMilliseconds: String {
        let ms = fractionalMilliseconds
        return ms < 10 ? "\((ms * 1000).rounded() / 1000) ms" : "\(Int(ms.rounded())) ms"
    }
}
