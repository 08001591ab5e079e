import ImageStoreGuard
import ImageStoreHealth

/// The health backends' view of the mount guard: the assembly is the one place that knows both modules.
extension MountGuard: GuardedStore {
    public func nfsHealth() async -> HealthResult {
        HealthResult(await run(.nfs), failureReason: HealthResult.Reason.nfsUnavailable)
    }

    public func mountpointHealth() async -> HealthResult {
        HealthResult(await run(.mountpoint), failureReason: HealthResult.Reason.notMounted)
    }

    public var storeHealth: HealthResult { Self.storeHealth(of: state) }

    public var checkDeadline: Duration { settings.timeout }

    /// `store`'s verdict for a guard state: OK while writes are enabled, else why not.
    public static func storeHealth(of state: GuardState) -> HealthResult {
        guard state.enabled else {
            let wrongShare = state.reason?.hasPrefix("wrong share") == true
            return HealthResult(
                available: false, reason: wrongShare ? HealthResult.Reason.wrongShare : HealthResult.Reason.storeDisabled,
                details: state.reason ?? "store disabled")
        }
        return .ok("store enabled")
    }
}

extension HealthResult {
    /// A guard check's verdict: pass and skipped are OK (skipped means not configured).
    init(_ result: GuardCheckResult, failureReason: String) {
        switch result.verdict {
        case .pass, .skipped:
            self.init(available: true, reason: Reason.ok, details: result.detail, checkedAt: result.checkedAt)
        case .fail:
            let timedOut = result.detail.hasPrefix("timed out")
            self.init(
                available: false, reason: timedOut ? Reason.timedOut : failureReason,
                details: timedOut ? "TIMED OUT: " + result.detail.dropFirst("timed out: ".count) : result.detail,
                checkedAt: result.checkedAt)
        }
    }
}
