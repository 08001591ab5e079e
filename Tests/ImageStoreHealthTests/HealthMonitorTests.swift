import Foundation
import ImageStoreHealth
import Testing

@Suite struct HealthMonitorTests {
    private func monitor(
        _ checks: [any HealthCheck], threshold: Int = 1, timeout: Duration = .milliseconds(200)
    )
        -> HealthMonitor
    {
        HealthMonitor(
            backends: checks.map(HealthBackend.init),
            settings: .init(interval: .seconds(60), checkTimeout: timeout, failureThreshold: threshold), logger: quietLogger)
    }

    @Test func report_beforeFirstRound_isUnavailable() {
        let monitor = monitor([ScriptedCheck([true])])
        let report = monitor.report(port: nil)
        #expect(!report.healthy)
        #expect(report.reasons == ["NOT CHECKED YET"])
    }

    @Test func report_withNoBackends_isHealthyAndEmpty() async {
        let monitor = monitor([])
        await monitor.runRound()
        #expect(monitor.report(port: nil).healthy)
        #expect(monitor.report(port: nil).entries.isEmpty)
    }

    @Test func threshold_turnsRedOnlyAfterConsecutiveFailures_andGreenOnFirstSuccess() async {
        let check = ScriptedCheck([true, false, false, true, false, false, false])
        let monitor = monitor([check], threshold: 3)
        var seen: [Bool] = []
        for _ in 0..<7 {
            await monitor.runRound()
            seen.append(monitor.report(port: nil).healthy)
        }
        // ok, 1st failure held, 2nd held, success resets, then red only at the 3rd failure in a row.
        #expect(seen == [true, true, true, true, true, true, false])
        #expect(monitor.report(port: nil).reasons == ["BROKEN"])
        check.set([true])
        await monitor.runRound()
        #expect(monitor.report(port: nil).reasons == ["OK"])
    }

    @Test func threshold_failureBeforeAnySuccess_showsAtOnce() async {
        let monitor = monitor([ScriptedCheck([false])], threshold: 5)
        await monitor.runRound()
        #expect(!monitor.report(port: nil).healthy)
    }

    @Test func round_withHungCheck_finishesAtTheTimeout_andDoesNotStartItAgain() async {
        let hung = HangingCheck()
        defer { hung.release() }
        let healthy = ScriptedCheck([true])
        let monitor = monitor([hung, healthy], timeout: .milliseconds(100))
        let clock = ContinuousClock()
        let elapsed = await clock.measure { await monitor.runRound() }
        // The check never answers: finishing at all shows the round's deadline; the bound is loose for loaded CI.
        #expect(elapsed < .seconds(5), "the round took \(elapsed) with a 100 ms check timeout")
        let report = monitor.report(port: nil)
        #expect(report.reasons == ["TIMED OUT", "OK"])
        #expect(report.entries[0].result.details == "TIMED OUT: the hanging check did not answer within 100 ms")

        // Still stuck: the next round reports it instead of queueing another call to it.
        await monitor.runRound()
        #expect(hung.callCount == 1)
        #expect(monitor.report(port: nil).entries[0].result.details?.hasPrefix("TIMED OUT: the hanging check has not answered for") == true)
    }

    @Test func report_whenNoRoundFinishedWithinTheBound_isStale() async {
        let monitor = HealthMonitor(
            backends: [HealthBackend(ScriptedCheck([true]))],
            settings: .init(interval: .seconds(1), checkTimeout: .milliseconds(100)), logger: quietLogger)
        await monitor.runRound()
        #expect(monitor.settings.staleAfter == .milliseconds(3100))
        #expect(monitor.report(port: nil, now: .now + .seconds(3)).healthy)
        let stale = monitor.report(port: nil, now: .now + .seconds(4))
        #expect(!stale.healthy)
        #expect(stale.reasons == ["HEALTH MONITOR STALE"])
    }

    @Test func perPortBackend_reportsTheRequestsPortOnly() async {
        let onPort = ScriptedCheck(name: "disable_by_files_ports", [false])
        let monitor = HealthMonitor(
            backends: [HealthBackend(name: "disable_by_files_ports", perPort: [8080: onPort])],
            settings: .init(interval: .seconds(60), checkTimeout: .milliseconds(100)), logger: quietLogger)
        await monitor.runRound()
        #expect(monitor.checkedPorts == [8080])
        #expect(monitor.report(port: 8080).reasons == ["BROKEN"])
        #expect(monitor.report(port: 9292).reasons == ["OK"])
        #expect(monitor.report(port: nil).reasons == ["OK"])
    }

    @Test func run_roundsEveryInterval_untilCancelled_thenReportsStopped() async throws {
        let check = ScriptedCheck([true])
        let monitor = HealthMonitor(
            backends: [HealthBackend(check)], settings: .init(interval: .milliseconds(10), checkTimeout: .milliseconds(100)),
            logger: quietLogger)
        let task = Task { try await monitor.run() }
        // Wait for at least three rounds (an event, polled: the monitor has no notification hook).
        let clock = ContinuousClock()
        let end = clock.now + .seconds(10)
        while check.callCount < 3 && clock.now < end { try await Task.sleep(for: .milliseconds(5)) }
        #expect(check.callCount >= 3)
        #expect(monitor.report(port: nil).healthy)
        task.cancel()
        try await task.value
        #expect(monitor.report(port: nil).reasons == ["HEALTH MONITOR STALE"])
    }
}
