import Foundation
import ImageStoreCore
import Logging
import ServiceLifecycle
import Synchronization

/// One configured backend, in `backends` order: a check for every request, or (`disable_by_files_ports`)
/// one check per configured server port.
public struct HealthBackend: Sendable {
    public enum Scope: Sendable {
        case anyPort(any HealthCheck)
        /// Requests on a port without a check are OK, as oslo's "no file configured for this port".
        case perPort([Int: any HealthCheck])
    }

    public var name: String
    public var scope: Scope

    public init(_ check: any HealthCheck) {
        name = check.name
        scope = .anyPort(check)
    }

    public init(name: String, perPort checks: [Int: any HealthCheck]) {
        self.name = name
        scope = .perPort(checks)
    }
}

/// The answer for one request: each backend's latest result, in configured order.
public struct HealthReport: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var backend: String
        public var result: HealthResult

        public init(backend: String, result: HealthResult) {
            self.backend = backend
            self.result = result
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries }
    /// oslo's `_are_results_healthy`: every backend available (true with no backends).
    public var healthy: Bool { entries.allSatisfy(\.result.available) }
    public var reasons: [String] { entries.map(\.result.reason) }
}

/// Runs the health backends in the background and keeps the latest verdict, so `/healthcheck`
/// answers from memory and never waits on a filesystem or a server (distribution's health poller,
/// not oslo's check-per-request).
///
/// Every `interval` a round runs all checks concurrently, each bounded by `checkTimeout`; a check
/// whose previous run is still stuck is not started again and reports `TIMED OUT` at once. A check
/// turns red after `failureThreshold` consecutive failures and green on the first success
/// (distribution's thresholdUpdater); before its first success a failure shows at once, so a pod
/// never becomes ready on unverified storage. If no round finished within `staleAfter` (the loop is
/// stuck) or the loop has stopped, every result is reported unavailable.
public final class HealthMonitor: Service {
    public struct Settings: Sendable {
        public var interval: Duration
        public var checkTimeout: Duration
        public var failureThreshold: Int
        public var staleAfter: Duration

        /// `staleAfter` defaults to 3 × interval + timeout: a few missed rounds, not one slow one.
        public init(interval: Duration, checkTimeout: Duration, failureThreshold: Int = 1, staleAfter: Duration? = nil) {
            self.interval = interval
            self.checkTimeout = checkTimeout
            self.failureThreshold = max(1, failureThreshold)
            self.staleAfter = staleAfter ?? interval * 3 + checkTimeout
        }
    }

    private struct SlotKey: Hashable {
        var backend: Int
        var port: Int?
    }

    private struct Slot: Sendable {
        var reported: HealthResult?
        var lastSuccess: HealthResult?
        var consecutiveFailures = 0
        /// Set while a check runs; a hung check stays set until it returns (if ever).
        var runningSince: ContinuousClock.Instant?
    }

    /// What the monitor checks; replaced whole by `reconfigure` (SIGHUP).
    private struct Layout: Sendable {
        var backends: [HealthBackend]
        var settings: Settings
        var checks: [(key: SlotKey, check: any HealthCheck)]
        var slotIndex: [SlotKey: Int]

        init(backends: [HealthBackend], settings: Settings) {
            self.backends = backends
            self.settings = settings
            var checks: [(key: SlotKey, check: any HealthCheck)] = []
            for (index, backend) in backends.enumerated() {
                switch backend.scope {
                case .anyPort(let check): checks.append((SlotKey(backend: index, port: nil), check))
                case .perPort(let byPort):
                    for port in byPort.keys.sorted() { checks.append((SlotKey(backend: index, port: port), byPort[port]!)) }
                }
            }
            self.checks = checks
            slotIndex = Dictionary(uniqueKeysWithValues: checks.enumerated().map { ($1.key, $0) })
        }
    }

    private struct State {
        var layout: Layout
        /// Counts layouts: a check that started under an earlier one does not record into the new slots.
        var generation = 0
        var slots: [Slot]
        var lastRoundFinished: ContinuousClock.Instant?
        var stopped = false
    }

    private let logger: Logger
    private let state: Mutex<State>

    public init(backends: [HealthBackend], settings: Settings, logger: Logger) {
        self.logger = logger
        let layout = Layout(backends: backends, settings: settings)
        state = Mutex(State(layout: layout, slots: Array(repeating: Slot(), count: layout.checks.count)))
    }

    /// The configured backends, in order.
    public var backends: [HealthBackend] { state.withLock { $0.layout.backends } }
    public var settings: Settings { state.withLock { $0.layout.settings } }

    /// Replaces the backends and settings (SIGHUP): every check starts over as "not checked yet" until
    /// the round this runs has finished, so a new backend never borrows an old verdict.
    public func reconfigure(backends: [HealthBackend], settings: Settings) async {
        let layout = Layout(backends: backends, settings: settings)
        state.withLock { state in
            state.layout = layout
            state.generation += 1
            state.slots = Array(repeating: Slot(), count: layout.checks.count)
        }
        await runRound()
    }

    // MARK: Reading (no I/O)

    /// The verdict for a request received on `port` (the server's port, for `disable_by_files_ports`).
    public func report(port: Int?, now: ContinuousClock.Instant = .now) -> HealthReport {
        state.withLock { state in
            let backends = state.layout.backends
            let settings = state.layout.settings
            let slotIndex = state.layout.slotIndex
            let staleDetail: String?
            if state.stopped {
                staleDetail = "the health monitor has stopped"
            } else if let last = state.lastRoundFinished, now - last > settings.staleAfter {
                staleDetail =
                    "no health check round finished for \((now - last).wholeMilliseconds) ms "
                    + "(limit \(settings.staleAfter.wholeMilliseconds) ms): the health monitor is stuck"
            } else {
                staleDetail = nil
            }
            let entries = backends.enumerated().map { index, backend -> HealthReport.Entry in
                let key: SlotKey
                switch backend.scope {
                case .anyPort: key = SlotKey(backend: index, port: nil)
                case .perPort(let byPort):
                    guard let port, byPort[port] != nil else {
                        // No file for this port: OK without any I/O, as in oslo.
                        return .init(backend: backend.name, result: HealthResult(available: true, reason: HealthResult.Reason.ok))
                    }
                    key = SlotKey(backend: index, port: port)
                }
                var result =
                    state.slots[slotIndex[key]!].reported
                    ?? HealthResult(
                        available: false, reason: HealthResult.Reason.notCheckedYet,
                        details: "\(backend.name) has not been checked yet")
                if let staleDetail {
                    result = HealthResult(
                        available: false, reason: HealthResult.Reason.stale, details: staleDetail, checkedAt: result.checkedAt)
                }
                return .init(backend: backend.name, result: result)
            }
            // Graceful shutdown: not ready at once, so load balancers stop sending work while requests drain,
            // also when no backend is configured.
            if state.stopped && entries.isEmpty {
                return HealthReport(entries: [
                    .init(
                        backend: "shutdown",
                        result: HealthResult(available: false, reason: HealthResult.Reason.shuttingDown, details: "the server is shutting down"))
                ])
            }
            return HealthReport(entries: entries)
        }
    }

    /// The configured server ports with their own `disable_by_files_ports` check.
    public var checkedPorts: Set<Int> {
        state.withLock { Set($0.layout.checks.compactMap(\.key.port)) }
    }

    // MARK: Checking

    /// Runs every check once, concurrently; returns within about `checkTimeout` whatever hangs.
    /// Called before the server starts serving, and by `run()` every `interval`.
    public func runRound() async {
        let (generation, layout) = state.withLock { ($0.generation, $0.layout) }
        let started = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            for index in layout.checks.indices {
                group.addTask { await self.runCheck(at: index, of: layout, generation: generation) }
            }
        }
        state.withLock { $0.lastRoundFinished = .now }
        // Every round, at debug only: what `debug = true` is for when a probe flaps.
        logger.debug(
            "health check round finished",
            metadata: ["checks": "\(layout.checks.count)", "ms": "\((ContinuousClock.now - started).wholeMilliseconds)"])
    }

    private func runCheck(at index: Int, of layout: Layout, generation: Int) async {
        let (key, check) = layout.checks[index]
        let settings = layout.settings
        let clock = ContinuousClock()
        let started = clock.now
        let stuckSince: ContinuousClock.Instant? = state.withLock { state in
            guard state.generation == generation else { return nil }
            if let since = state.slots[index].runningSince { return since }
            state.slots[index].runningSince = started
            return nil
        }
        let result: HealthResult
        if let stuckSince {
            // Do not pile up another call behind one that never returned.
            result = HealthResult(
                available: false, reason: HealthResult.Reason.timedOut,
                details: "TIMED OUT: the \(check.name) check has not answered for \((clock.now - stuckSince).wholeMilliseconds) ms")
        } else {
            // A little grace so a check's own timeout message (naming what hung) wins over ours.
            let answer = await value(within: settings.checkTimeout + .milliseconds(50)) {
                let result = await check.check()
                self.state.withLock { state in
                    if state.generation == generation { state.slots[index].runningSince = nil }
                }
                return result
            }
            result =
                answer
                ?? HealthResult(
                    available: false, reason: HealthResult.Reason.timedOut,
                    details: "TIMED OUT: the \(check.name) check did not answer within \(settings.checkTimeout.wholeMilliseconds) ms")
        }
        record(result, at: index, key: key, name: check.name, generation: generation)
    }

    /// Threshold bookkeeping: red after `failureThreshold` consecutive failures, green on one success.
    private func record(_ result: HealthResult, at index: Int, key: SlotKey, name: String, generation: Int) {
        let recorded = state.withLock { state -> (before: HealthResult?, after: HealthResult?)? in
            // Checked under an earlier configuration: its slot no longer exists.
            guard state.generation == generation else { return nil }
            let threshold = state.layout.settings.failureThreshold
            var slot = state.slots[index]
            let before = slot.reported
            if result.available {
                slot.consecutiveFailures = 0
                slot.lastSuccess = result
                slot.reported = result
            } else {
                slot.consecutiveFailures += 1
                if slot.consecutiveFailures >= threshold || slot.lastSuccess == nil { slot.reported = result }
            }
            state.slots[index] = slot
            return (before, slot.reported)
        }
        guard let (before, after) = recorded, let after, before?.available != after.available || before?.reason != after.reason else { return }
        var metadata: Logger.Metadata = ["backend": "\(name)", "reason": "\(after.reason)", "details": "\(after.details ?? "")"]
        if let port = key.port { metadata["port"] = "\(port)" }
        if after.available {
            logger.notice("health check passes", metadata: metadata)
        } else {
            logger.warning("health check fails", metadata: metadata)
        }
    }

    // MARK: Service

    /// A round every `interval` until graceful shutdown; afterwards the monitor reports itself
    /// stopped (a dead poller must not keep serving an old "OK", as in distribution's `Poll`).
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: self.settings.interval) } catch { break }  // read afresh: SIGHUP may change it
                await self.runRound()
            }
        }
        state.withLock { $0.stopped = true }
    }
}
