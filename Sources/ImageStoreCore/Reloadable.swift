import Synchronization

/// A value SIGHUP may replace while requests read it (the policy, the health check's options): each
/// reader gets one consistent value, and a reload never needs the app to be rebuilt.
public final class Reloadable<Value: Sendable>: Sendable {
    private let current: Mutex<Value>

    public init(_ value: Value) { current = Mutex(value) }

    public var value: Value { current.withLock { $0 } }

    /// Replaces the value; returns the one it replaced.
    @discardableResult
    public func replace(with value: Value) -> Value {
        current.withLock { current in
            let old = current
            current = value
            return old
        }
    }
}
