import Synchronization

/// How the metadata repositories report their accesses (latency, accesses in progress) without
/// knowing who listens: the application hands an observer to the repository's instrumentation once it
/// has made its metrics. Accesses are counted whether or not anyone observes.
public final class MetadataInstrumentation: Sendable {
    /// Called after each access: the operation's name (a fixed name such as `get` or `updateImage`), how
    /// long it took (deadline wait included), and whether it failed.
    public typealias Observer = @Sendable (_ operation: String, _ duration: Duration, _ failed: Bool) -> Void

    /// `sqlite` or `postgresql`.
    public let engine: String
    private let observer = Mutex<Observer?>(nil)
    private let active = Atomic<Int>(0)

    public init(engine: String) { self.engine = engine }

    /// Sets (or, with nil, removes) the observer.
    public func observe(_ observer: Observer?) { self.observer.withLock { $0 = observer } }

    /// Accesses running now: waiting for or holding a connection (PostgreSQL's pool, SQLite's).
    public var inProgress: Int { active.load(ordering: .relaxed) }

    /// Runs one access, counted while it runs and reported when it ends.
    public func measure<T>(_ operation: String, _ body: () async throws -> T) async throws -> T {
        active.add(1, ordering: .relaxed)
        let start = ContinuousClock.now
        defer { active.subtract(1, ordering: .relaxed) }
        do {
            let value = try await body()
            report(operation, ContinuousClock.now - start, failed: false)
            return value
        } catch {
            report(operation, ContinuousClock.now - start, failed: true)
            throw error
        }
    }

    private func report(_ operation: String, _ duration: Duration, failed: Bool) {
        observer.withLock { $0 }?(operation, duration, failed)
    }
}

/// A repository whose accesses go through a `MetadataInstrumentation`.
public protocol MetadataInstrumented: Sendable {
    var instrumentation: MetadataInstrumentation { get }
}
