import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreStorage
import Logging
import NIOCore
import Synchronization
import Testing

/// An import to two stores held between them (the second store's guard waits until the test opens it),
/// to see what Glance's serial flow shows meanwhile: with `all_stores_must_succeed` the image is still
/// `importing` with the first store written and the second still in `os_glance_importing_to_stores`;
/// without it the image is already `active`. In-memory seams; the gate is a fake guard of this target.
@Suite struct ImageImporterTests {
    let repository = InMemoryImageRepository()
    let first = InMemoryImageStore()
    let second = InMemoryImageStore()
    let staged = InMemoryImageStore()
    let gate = GatedWriteGuard()
    let service: ImageService
    let importer: ImageImporter

    init() {
        let stores = ImageStores(
            [NamedStore(id: "a", store: first), NamedStore(id: "b", store: second, writeGuard: gate)], defaultID: "a",
            isMultiStore: true)
        service = ImageService(
            repository: repository, store: first, staging: StagingArea(store: staged, writeGuard: UnguardedStore()), stores: stores)
        importer = ImageImporter(
            service: service, tasks: InMemoryTaskRepository(), storeID: "a", fetcher: nil, logger: Logger(label: "test"))
    }

    func stagedImage(_ text: String) async throws -> ImageID {
        let image = Image(diskFormat: "raw", containerFormat: "bare")
        try await repository.create(image)
        let body = AsyncThrowingStream<ByteBuffer, any Error> { continuation in
            continuation.yield(ByteBuffer(string: text))
            continuation.finish()
        }
        _ = try await service.stage(image.id, body: body, declaredSize: nil)
        return image.id
    }

    /// Waits (polling, no deadline asserted) until the import reached the second store's guard.
    func waitAtTheGate() async throws {
        while gate.arrived == 0 { try await Task.sleep(for: .milliseconds(5)) }
    }

    @Test(arguments: [true, false])
    func betweenTheStores_importingUntilTheLast_orActiveAfterTheFirst(allMustSucceed: Bool) async throws {
        let id = try await stagedImage("some image data")
        _ = try await importer.start(
            id, method: .glanceDirect, input: "{}", owner: nil, userID: nil, requestID: nil, stores: ["a", "b"],
            allMustSucceed: allMustSucceed)
        try await waitAtTheGate()
        let midway = try #require(try await repository.get(id))
        #expect(midway.status == (allMustSucceed ? .importing : .active))
        #expect(midway.properties[ImageStores.locationsProperty] == "a")
        #expect(midway.properties[ImportProperty.importingToStores] == "b")
        #expect(midway.properties[ImportProperty.failedImport] == "")
        #expect(midway.properties[ImportProperty.task] != nil)
        #expect(midway.checksum != nil)
        #expect(try await first.storedIDs() == [id])
        #expect(try await second.storedIDs() == [])
        // Staged data stays until every store has been tried (Glance's _DeleteFromFS comes last).
        #expect(try await staged.storedIDs() == [id])

        gate.open()
        await importer.waitForAll()
        let done = try #require(try await repository.get(id))
        #expect(done.status == .active)
        #expect(done.properties[ImageStores.locationsProperty] == "a,b")
        #expect(done.properties[ImportProperty.importingToStores] == "")
        #expect(done.properties[ImportProperty.failedImport] == "")
        #expect(done.properties[ImportProperty.task] == nil)
        #expect(done.uploadOwner == nil)
        #expect(try await second.storedIDs() == [id])
        #expect(try await staged.storedIDs() == [])
    }

    @Test func secondStoreRefuses_allMustSucceed_revertsTheFirst_queued() async throws {
        let id = try await stagedImage("data for two stores")
        gate.refuse(ImageStoreError.storeUnavailable("share gone (test)"))
        _ = try await importer.start(
            id, method: .glanceDirect, input: "{}", owner: nil, userID: nil, requestID: nil, stores: ["a", "b"], allMustSucceed: true)
        await importer.waitForAll()
        let image = try #require(try await repository.get(id))
        #expect(image.status == .queued)
        #expect(image.checksum == nil)
        #expect(image.size == nil)
        #expect(image.properties[ImageStores.locationsProperty] == nil)
        #expect(image.properties[ImportProperty.failedImport] == "b")
        #expect(image.properties[ImportProperty.importingToStores] == "")
        #expect(image.properties[ImportProperty.task] == nil)
        #expect(image.uploadOwner == nil)
        #expect(try await first.storedIDs() == [])
        #expect(try await second.storedIDs() == [])
        #expect(try await staged.storedIDs() == [])
    }

    @Test func merge_isGlancesSortedSetOfStores() {
        #expect(ImageImporter.merge("c,a", adding: ["b", "a", ""]) == "a,b,c")
        #expect(ImageImporter.merge("a,b", removing: ["a", "x"]) == "b")
        #expect(ImageImporter.merge(nil) == "")
    }
}

/// A guard that holds every write check until `open()` (or answers `refuse`'s error at once), counting
/// the checks that arrived.
final class GatedWriteGuard: WriteGuard {
    private struct State {
        var open = false
        var refusal: ImageStoreError?
        var arrived = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    var arrived: Int { state.withLock { $0.arrived } }

    func open() {
        let waiting = state.withLock { state in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }

    func refuse(_ error: ImageStoreError) { state.withLock { $0.refusal = error } }

    func checkWritable() async throws {
        if let refusal = state.withLock({ $0.refusal }) { throw refusal }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let passes = state.withLock { state in
                state.arrived += 1
                if state.open { return true }
                state.waiting.append(continuation)
                return false
            }
            if passes { continuation.resume() }
        }
    }

    func checkReadable() async throws {}
}
