/// Decides whether the store may be written to right now (the mount guard implements it).
///
/// Asked before every write (upload, stage, delete of data) and again before an upload is
/// committed. Throws `.storeUnavailable` with the reason when writes must be refused.
public protocol WriteGuard: Sendable {
    func checkWritable() async throws
    /// Whether reads can be served; throws `.readUnavailable` if not (answered 503 + Retry-After).
    func checkReadable() async throws
    /// The store's total and free bytes now, under the guard's deadline (from the NFS server when it is
    /// one); nil when the guard cannot tell, and the data store is asked instead.
    func freeSpace() async throws -> StoreCapacity?
}

extension WriteGuard {
    public func freeSpace() async throws -> StoreCapacity? { nil }
}

/// A guard that always allows: for a plain local directory with no guard configured.
public struct UnguardedStore: WriteGuard {
    public init() {}
    public func checkWritable() async throws {}
    public func checkReadable() async throws {}
}
