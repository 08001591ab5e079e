// TEMPORARY stub (replaced when the metadata module lands).
import ImageStoreCore
import Logging
public final class SQLiteImageRepository: ImageRepository {
    public init(path: String, logger: Logger) throws {}
    public func create(_ image: Image) async throws {}
    public func get(_ id: ImageID) async throws -> Image? { nil }
    public func list(_ query: ImageListQuery) async throws -> [Image] { [] }
    public func update(_ id: ImageID, expecting expected: Set<ImageStatus>?, _ change: @escaping @Sendable (inout Image) throws -> Void) async throws -> Image { throw ImageStoreError.notFound("") }
    public func delete(_ id: ImageID) async throws -> Bool { false }
    public func storageUsed(owner: String?, excluding exclude: ImageID?) async throws -> Int64 { 0 }
    public func images(withStatus statuses: Set<ImageStatus>) async throws -> [Image] { [] }
    public func ping() async throws {}
}
