import Dispatch
import Foundation
import Synchronization

/// The clock of `delivery(_:within:)`, the one deadline primitive: one thread that sleeps until the
/// earliest armed deadline and runs its action. Arming and disarming take a lock and neither starts a task
/// nor wakes a thread (unless the new deadline comes before every armed one); a sleeping timer task cost
/// two cooperative-pool jobs and a dispatch timer per deadline'd call. Being a thread of its own, a
/// deadline fires on time even while the cooperative pool is saturated (`DeadlineFiring` says whether the
/// race is then answered from here or from a pool job queued at that moment).
///
/// Actions run on the timer thread: they must not block (resume a continuation, set a flag, start a task).
public final class DeadlineTimers: Sendable {
    public static let shared = DeadlineTimers()

    /// An armed deadline, to disarm once the answer came first.
    public struct Token: Sendable {
        fileprivate let id: UInt64
    }

    private struct Entry {
        var at: ContinuousClock.Instant
        var id: UInt64
    }

    private struct State {
        var nextID: UInt64 = 0
        /// A binary min-heap on `at`; disarmed entries leave it lazily (when they reach the top, or when
        /// they outnumber the armed ones).
        var heap: [Entry] = []
        var actions: [UInt64: @Sendable () -> Void] = [:]
        /// When the thread will next look at the heap by itself; nil while it is awake (it looks before
        /// sleeping again, so arming then needs no wake-up).
        var sleepingUntil: ContinuousClock.Instant? = nil
        var started = false

        mutating func push(_ entry: Entry) {
            heap.append(entry)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[child].at < heap[parent].at else { break }
                heap.swapAt(child, parent)
                child = parent
            }
        }

        mutating func popTop() {
            let last = heap.removeLast()
            guard !heap.isEmpty else { return }
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count && heap[left].at < heap[smallest].at { smallest = left }
                if right < heap.count && heap[right].at < heap[smallest].at { smallest = right }
                guard smallest != parent else { return }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
    }

    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let clock = ContinuousClock()

    init() {}

    /// Runs `action` on the timer thread once `timeout` has passed, unless disarmed first.
    public func arm(after timeout: Duration, _ action: @escaping @Sendable () -> Void) -> Token {
        let at = clock.now + timeout
        let (token, signal, start) = state.withLock { state -> (Token, Bool, Bool) in
            let id = state.nextID
            state.nextID += 1
            state.actions[id] = action
            state.push(Entry(at: at, id: id))
            // Bounded by the armed deadlines, whatever the rate of disarmed ones.
            if state.heap.count > 4096 && state.heap.count > 4 * state.actions.count {
                let actions = state.actions
                state.heap = state.heap.filter { actions[$0.id] != nil }.sorted { $0.at < $1.at }  // sorted is a heap
            }
            var signal = false
            if let until = state.sleepingUntil, at < until {
                state.sleepingUntil = nil
                signal = true
            }
            let start = !state.started
            state.started = true
            return (Token(id: id), signal, start)
        }
        if start { startThread() }
        if signal { wake.signal() }
        return token
    }

    /// The answer came first: the action will not run (unless it is running already).
    public func disarm(_ token: Token) {
        _ = state.withLock { $0.actions.removeValue(forKey: token.id) }
    }

    private func startThread() {
        let thread = Thread { [self] in
            #if os(Linux)
            try? "deadlines".write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
            #endif
            run()
        }
        thread.name = "deadlines"
        thread.stackSize = 256 << 10
        thread.start()
    }

    private func run() {
        while true {
            let now = clock.now
            let (due, next) = state.withLock { state -> ([@Sendable () -> Void], ContinuousClock.Instant?) in
                var due: [@Sendable () -> Void] = []
                while let top = state.heap.first, top.at <= now || state.actions[top.id] == nil {
                    state.popTop()
                    if let action = state.actions.removeValue(forKey: top.id) { due.append(action) }
                }
                let next = state.heap.first?.at
                state.sleepingUntil = due.isEmpty ? (next ?? now + .seconds(86_400 * 365)) : nil
                return (due, next)
            }
            guard due.isEmpty else {
                for action in due { action() }
                continue
            }
            if let next {
                _ = wake.wait(timeout: .now() + .nanoseconds(Int(clamping: (next - now).wholeNanoseconds)))
            } else {
                wake.wait()
            }
            state.withLock { $0.sleepingUntil = nil }
        }
    }
}
