import Foundation
import ImageStoreCore
import NIOCore
import Testing

/// Which stores hold an image and in which order they are read (`ImageStores`), on its own.
@Suite struct ImageStoresTests {
    /// Never read or written: these tests only ask the set which store is which.
    struct NoData: ImageDataStore {
        func beginWrite(_ id: ImageID, expectedSize: Int64?) async throws -> any ImageDataWriter { throw ImageStoreError.internal("unused") }
        func read(_ id: ImageID, range: Range<Int64>?) async throws -> any ImageDataReader { throw ImageStoreError.internal("unused") }
        func size(_ id: ImageID) async throws -> Int64 { throw ImageStoreError.internal("unused") }
        func delete(_ id: ImageID) async throws -> Bool { false }
        func storedIDs() async throws -> [ImageID] { [] }
        func sweepTemporaryFiles() async throws -> Int { 0 }
        func sweepTemporaryFiles(where shouldRemove: @escaping @Sendable (TemporaryFileInfo) -> Bool) async throws -> Int { 0 }
        func capacity() async throws -> StoreCapacity { StoreCapacity(totalBytes: 0, freeBytes: 0) }
    }

    static func stores(multi: Bool = true) -> ImageStores {
        ImageStores(
            [
                NamedStore(id: "a", store: NoData(), weight: 5), NamedStore(id: "b", store: NoData(), weight: 20),
                NamedStore(id: "c", store: NoData(), weight: 5),
            ], defaultID: "a", isMultiStore: multi)
    }

    @Test func readOrder_highestWeightFirst_tiesInConfigurationOrder_unknownIdsLeftOut() {
        let stores = Self.stores()
        var image = Image(status: .active)
        stores.record(["c", "gone", "a", "b"], on: &image)
        #expect(stores.locations(of: image) == ["c", "gone", "a", "b"])
        #expect(stores.readOrder(of: image).map(\.id) == ["b", "a", "c"])
    }

    @Test func anImageWithNothingRecorded_isInTheDefaultStore_onlyWithData() {
        let stores = Self.stores()
        #expect(stores.locations(of: Image(status: .active)) == ["a"])
        #expect(stores.locations(of: Image(status: .pendingDelete)) == ["a"])
        #expect(stores.locations(of: Image(status: .queued)).isEmpty)
    }

    @Test func record_dedupes_andIsANoOpInLegacyMode() {
        var image = Image(status: .active)
        Self.stores().record(["b", "a", "b"], on: &image)
        #expect(image.properties[ImageStores.locationsProperty] == "b,a")
        var legacy = Image(status: .active)
        Self.stores(multi: false).record(["b"], on: &legacy)
        #expect(legacy.properties.isEmpty)
    }

    @Test func storeNamed_nilIsTheDefault_unknownIs400() throws {
        let stores = Self.stores()
        #expect(try stores.store(named: nil).id == "a")
        #expect(try stores.store(named: "c").id == "c")
        #expect(throws: ImageStoreError.self) { try stores.store(named: "z") }
        do {
            _ = try stores.store(named: "z")
        } catch let error as ImageStoreError {
            #expect(error.code == .badRequest)
            #expect(error.message == "Store for identifier z not found")
        }
    }
}
