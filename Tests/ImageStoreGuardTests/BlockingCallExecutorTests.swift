import Dispatch
import Foundation
import ImageStoreCore
import Synchronization
import Testing

/// The executor the guard stats the marker on: a hung filesystem must cost callers the deadline, no more.
@Suite struct BlockingCallExecutorTests {
    @Test func run_quickCall_completesWithItsValue() async {
        let executor = BlockingCallExecutor(name: "test-executor")
        let outcome = await executor.run(deadline: .seconds(5)) { 6 * 7 }
        guard case .completed(let value) = outcome else {
            Issue.record("expected completed, got \(outcome)")
            return
        }
        #expect(value == 42)
    }

    @Test func run_blockedCall_timesOutAtTheDeadline_laterCallsAnswerAtOnce_thenItRecovers() async throws {
        let executor = BlockingCallExecutor(name: "test-executor")
        let gate = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        // Unblocks the worker even if an expectation below fails.
        var released = false
        defer { if !released { gate.signal() } }

        let deadline = Duration.milliseconds(300)
        let clock = ContinuousClock()
        let start = clock.now
        let first = await executor.run(deadline: deadline) { () -> Int in
            entered.signal()
            gate.wait()  // a stat on a hung mount
            return 1
        }
        let waited = clock.now - start
        guard case .timedOut = first else {
            Issue.record("expected timedOut, got \(first)")
            return
        }
        #expect(entered.wait(timeout: .now()) == .success, "the blocked call ran on the worker")
        #expect(waited >= deadline)
        #expect(waited < deadline + .seconds(1), "answered \(waited) after a \(deadline) deadline")

        // The worker is still stuck: a new call does not queue behind it, and its body never runs.
        let ran = Ran()
        let secondStart = clock.now
        let second = await executor.run(deadline: .seconds(5)) { ran.mark() }
        let secondWaited = clock.now - secondStart
        guard case .timedOut(let blockedFor) = second else {
            Issue.record("expected timedOut while stuck, got \(second)")
            return
        }
        #expect(secondWaited < .seconds(2), "took \(secondWaited) while the worker was stuck")
        #expect(blockedFor >= deadline, "reports how long the worker has been stuck")

        // The hung call returns: the executor serves again.
        gate.signal()
        released = true
        var recovered = false
        let end = clock.now + .seconds(5)
        while clock.now < end {
            if case .completed(let value) = await executor.run(deadline: .seconds(1), { 7 }) {
                #expect(value == 7)
                recovered = true
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(recovered)
        #expect(!ran.value, "the refused call's body must never run")
    }

    @Test func run_lateValue_isHandedToAbandoned_andTheStuckCountFallsBack() async throws {
        let stuckCounts = Mutex<[Int]>([])
        let executor = BlockingCallExecutor(name: "test-executor") { count in stuckCounts.withLock { $0.append(count) } }
        let gate = DispatchSemaphore(value: 0)
        let abandoned = Mutex<[Int]>([])
        let outcome = await executor.run(deadline: .milliseconds(100), abandoned: { value in abandoned.withLock { $0.append(value) } }) {
            () -> Int in
            gate.wait()
            return 5
        }
        guard case .timedOut = outcome else {
            Issue.record("expected timedOut, got \(outcome)")
            gate.signal()
            return
        }
        #expect(executor.stuckCalls == 1)
        gate.signal()
        let end = ContinuousClock.now + .seconds(5)
        while executor.stuckCalls > 0 || abandoned.withLock({ $0.isEmpty }), ContinuousClock.now < end {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(abandoned.withLock { $0 } == [5], "the late value is released, not lost")
        #expect(executor.stuckCalls == 0)
        #expect(stuckCounts.withLock { $0 } == [1, 0])
    }

    @Test func run_cancelledCaller_leavesAtOnce_andTheCallIsStuckOnlyPastItsDeadline() async throws {
        let executor = BlockingCallExecutor(name: "test-executor")
        let gate = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        let clock = ContinuousClock()
        let caller = Task {
            await executor.run(deadline: .milliseconds(800)) { () -> Int in
                entered.signal()
                gate.wait()
                return 1
            }
        }
        while entered.wait(timeout: .now()) != .success { try await Task.sleep(for: .milliseconds(5)) }
        let cancelled = clock.now
        caller.cancel()
        let outcome = await caller.value
        guard case .timedOut = outcome else {
            Issue.record("expected timedOut for a cancelled caller, got \(outcome)")
            gate.signal()
            return
        }
        #expect(clock.now - cancelled < .milliseconds(600), "a cancelled caller does not wait for the deadline")
        #expect(executor.stuckCalls == 0, "cancelled before its deadline is not stuck")
        try await Task.sleep(for: .milliseconds(1200))
        #expect(executor.stuckCalls == 1, "still blocked past its deadline: stuck")
        gate.signal()
        let end = clock.now + .seconds(5)
        while executor.stuckCalls > 0, clock.now < end { try await Task.sleep(for: .milliseconds(10)) }
        #expect(executor.stuckCalls == 0)
    }

    @Test func run_callsAllRunOnOneDedicatedThread() async {
        let executor = BlockingCallExecutor(name: "test-executor")
        // pthread_self of each call: one dedicated thread, not the caller's.
        var threads: Set<UInt> = []
        for _ in 0..<5 {
            if case .completed(let thread) = await executor.run(deadline: .seconds(5), { UInt(pthread_self()) }) {
                threads.insert(thread)
            }
        }
        #expect(threads.count == 1)
        #expect(!threads.contains(UInt(pthread_self())))
    }
}

final class Ran: Sendable {
    private let flag = Mutex(false)
    func mark() { flag.withLock { $0 = true } }
    var value: Bool { flag.withLock { $0 } }
}
