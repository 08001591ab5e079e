// TEMPORARY stub (replaced when the storage module lands).
import ImageStoreCore
import Logging
public struct FilesystemImageStore: ImageDataStore {
    public init(directory: String, filePermissions: Int = 0, chunkSize: Int = 65536, logger: Logger) {}
    public func beginWrite(_ id: ImageID, expectedSize: Int64?) async throws -> any ImageDataWriter { throw ImageStoreError.internal("") }
    public func read(_ id: ImageID, range: Range<Int64>?) async throws -> any ImageDataReader { throw ImageStoreError.internal("") }
    public func size(_ id: ImageID) async throws -> Int64 { 0 }
    public func delete(_ id: ImageID) async throws -> Bool { false }
    public func storedIDs() async throws -> [ImageID] { [] }
    public func sweepTemporaryFiles() async throws -> Int { 0 }
    public func capacity() async throws -> StoreCapacity { .init(totalBytes: 0, freeBytes: 0) }
}
