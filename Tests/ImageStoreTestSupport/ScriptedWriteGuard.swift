import ImageStoreCore
import Synchronization

/// A write guard whose answers a test scripts: each `checkWritable` takes the next scripted answer
/// (then the default), so "passes before the upload, fails at publish" is one line.
public final class ScriptedWriteGuard: WriteGuard {
    private struct State {
        var writable: [ImageStoreError?] = []
        var defaultWritable: ImageStoreError?
        var readable: ImageStoreError?
        var writableChecks = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// The answers of the next `checkWritable` calls, in order (nil: writable).
    public func script(writable answers: [ImageStoreError?]) { state.withLock { $0.writable = answers } }

    /// The answer once the script is used up (nil: writable).
    public func setDefault(writable error: ImageStoreError?) { state.withLock { $0.defaultWritable = error } }

    public func setReadable(_ error: ImageStoreError?) { state.withLock { $0.readable = error } }

    /// How many times `checkWritable` was asked.
    public var writableChecks: Int { state.withLock { $0.writableChecks } }

    public func checkWritable() async throws {
        let answer = state.withLock { state -> ImageStoreError? in
            state.writableChecks += 1
            return state.writable.isEmpty ? state.defaultWritable : state.writable.removeFirst()
        }
        if let answer { throw answer }
    }

    public func checkReadable() async throws {
        if let error = state.withLock({ $0.readable }) { throw error }
    }
}

/// A data store in front of another whose `delete` can be made to fail: a share that refuses to remove
/// a file (EACCES, EIO) while the rest works.
public final class FailingDeleteStore: ImageDataStore {
    private let base: any ImageDataStore
    private let failure = Mutex<ImageStoreError?>(nil)

    public init(_ base: any ImageDataStore) { self.base = base }

    public func failDeletes(with error: ImageStoreError?) { failure.withLock { $0 = error } }

    public func prepare() async throws { try await base.prepare() }
    public func beginWrite(_ id: ImageID, expectedSize: Int64?) async throws -> any ImageDataWriter {
        try await base.beginWrite(id, expectedSize: expectedSize)
    }
    public func read(_ id: ImageID, range: Range<Int64>?) async throws -> any ImageDataReader { try await base.read(id, range: range) }
    public func size(_ id: ImageID) async throws -> Int64 { try await base.size(id) }
    public func delete(_ id: ImageID) async throws -> Bool {
        if let error = failure.withLock({ $0 }) { throw error }
        return try await base.delete(id)
    }
    public func storedIDs() async throws -> [ImageID] { try await base.storedIDs() }
    public func sweepTemporaryFiles() async throws -> Int { try await base.sweepTemporaryFiles() }
    public func sweepTemporaryFiles(where shouldRemove: @escaping @Sendable (TemporaryFileInfo) -> Bool) async throws -> Int {
        try await base.sweepTemporaryFiles(where: shouldRemove)
    }
    public func capacity() async throws -> StoreCapacity { try await base.capacity() }
}
