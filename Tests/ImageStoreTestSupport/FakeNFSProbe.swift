import ImageStoreNFS
import Synchronization

/// A scriptable probe for other modules' unit tests: answers `result` (or the next of `queued` results) and
/// counts the calls. `elapsed` of the answer is left as scripted.
public final class FakeNFSProbe: NFSProbe {
    private struct State {
        var result: NFSProbeResult
        var queued: [NFSProbeResult] = []
        var calls: [(markerFile: String, deadline: Duration)] = []
    }
    private let state: Mutex<State>

    public init(result: NFSProbeResult = .healthy()) {
        state = Mutex(State(result: result))
    }

    /// The answer from now on (after any queued ones).
    public func setResult(_ result: NFSProbeResult) { state.withLock { $0.result = result } }
    /// Answers given once each, in order, before falling back to the current result.
    public func enqueue(_ results: NFSProbeResult...) { state.withLock { $0.queued += results } }
    public var callCount: Int { state.withLock { $0.calls.count } }
    public var lastMarkerFile: String? { state.withLock { $0.calls.last?.markerFile } }
    public var lastDeadline: Duration? { state.withLock { $0.calls.last?.deadline } }

    public func probe(markerFile: String, deadline: Duration) async -> NFSProbeResult {
        state.withLock { s in
            s.calls.append((markerFile, deadline))
            return s.queued.isEmpty ? s.result : s.queued.removeFirst()
        }
    }
}
