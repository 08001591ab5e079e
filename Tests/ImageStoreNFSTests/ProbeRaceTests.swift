import Foundation
import Synchronization
import Testing

@testable import ImageStoreNFS

/// The deadline race of `LibNFSProbe`, driven by an operation the test blocks and releases at will.
@Suite struct ProbeRaceTests {
    /// Blocks every call while the gate is closed; counts calls.
    final class GatedOperation: BlockingProbeOperation, @unchecked Sendable {
        private let gate = DispatchSemaphore(value: 0)
        private let state = Mutex((closed: true, calls: 0, destroyed: 0))

        var calls: Int { state.withLock { $0.calls } }
        var destroyed: Int { state.withLock { $0.destroyed } }

        func open() {
            let wasClosed = state.withLock { s in
                defer { s.closed = false }
                return s.closed
            }
            // Wake the one call that may be waiting; later calls do not wait.
            if wasClosed { gate.signal() }
        }

        func probe(markerFile: String, timeout: Duration) -> NFSProbeResult {
            let mustWait = state.withLock { s in
                s.calls += 1
                return s.closed
            }
            if mustWait { gate.wait() }
            return .healthy(freeBytes: 1, totalBytes: 2)
        }

        func destroy(reason: String) { state.withLock { $0.destroyed += 1 } }
    }

    let target = NFSServerTarget(host: "127.0.0.1", sharePath: "/images")

    @Test func probe_whenCallHangs_answersTimedOutAtDeadlineThenImmediatelyWhileStuck() async throws {
        let operation = GatedOperation()
        let probe = LibNFSProbe(target: target, operation: operation)
        defer { operation.open() }

        let first = await probe.probe(markerFile: "m", deadline: .milliseconds(100))
        #expect(first.failure == .timedOut(.milliseconds(100)))
        #expect(!first.reachable)
        #expect(first.elapsed >= .milliseconds(100))
        #expect(first.elapsed < .seconds(2), "answers near its 100 ms deadline, not when the call returns (never)")

        // The call is still stuck: no queueing behind it, an answer at once.
        let second = await probe.probe(markerFile: "m", deadline: .seconds(5))
        guard case .timedOut = second.failure else {
            Issue.record("expected timedOut, got \(second)")
            return
        }
        #expect(second.elapsed < .seconds(2), "answers at once, long before its 5 s deadline")
        #expect(second.summary.contains("still blocked"))
        #expect(operation.calls == 1)

        operation.open()
        await probe.waitForWorker()
        let third = await probe.probe(markerFile: "m", deadline: .seconds(5))
        #expect(third.isHealthy)
        #expect(third.freeBytes == 1)
        #expect(operation.calls == 2)
    }

    @Test func probe_whenWorkerAnswers_resumesOnceWithTheAnswer() async {
        let operation = GatedOperation()
        operation.open()
        let probe = LibNFSProbe(target: target, operation: operation)
        // Many concurrent probes queue on the one worker and each gets exactly its own answer.
        let results = await withTaskGroup(of: NFSProbeResult.self) { group in
            for _ in 0..<50 { group.addTask { await probe.probe(markerFile: "m", deadline: .seconds(10)) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 50)
        #expect(results.allSatisfy { $0.isHealthy })
        #expect(operation.calls == 50)
    }

    /// Threads of this process whose name starts with `prefix` (Linux keeps 15 bytes of a thread name).
    func threads(named prefix: String) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.filter { task in
            (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?.hasPrefix(prefix) == true
        }.count
    }

    @Test func release_destroysTheConnectionAndEndsTheWorkerThread() async throws {
        let operation = GatedOperation()
        operation.open()
        // A host name no other test uses, so the thread count below is this probe's alone.
        let threadName = "nfs-probe zz-re"
        var probe: LibNFSProbe? = LibNFSProbe(
            target: NFSServerTarget(host: "zz-release-check", sharePath: "/x"), operation: operation)
        #expect(await probe?.probe(markerFile: "m", deadline: .seconds(5)).isHealthy == true)
        #expect(threads(named: threadName) == 1)

        probe = nil
        // Bounded wait for the worker to run its last job and exit.
        var gone = false
        for _ in 0..<400 where !gone {
            gone = operation.destroyed == 1 && threads(named: threadName) == 0
            if !gone { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(operation.destroyed == 1)
        #expect(threads(named: threadName) == 0)
    }
}
