import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreStorage
import ImageStoreTestSupport
import Logging
import NIOCore
import Testing

/// `ImageService` on the in-memory seams (repository and data store) with a scripted guard: the upload's
/// clean-up, the delete's rollback, and every branch of `recoverAfterRestart`.
@Suite struct ImageServiceTests {
    let repository = InMemoryImageRepository()
    let memory = InMemoryImageStore()
    let store: FailingDeleteStore
    let writeGuard = ScriptedWriteGuard()
    let service: ImageService

    init() {
        store = FailingDeleteStore(memory)
        service = ImageService(repository: repository, store: store, writeGuard: writeGuard, processToken: "this-replica")
    }

    func queuedImage() async throws -> ImageID {
        let image = Image(diskFormat: "raw", containerFormat: "bare")
        try await repository.create(image)
        return image.id
    }

    /// Data in the store under `id`, as a finished upload leaves it.
    func storeData(_ id: ImageID, _ text: String = "data") async throws {
        let writer = try await memory.beginWrite(id, expectedSize: nil)
        try await writer.write(ByteBuffer(string: text))
        _ = try await writer.finish()
        try await writer.commit()
    }

    static func body(_ chunks: [String], thenFail error: (any Error)? = nil) -> AsyncThrowingStream<ByteBuffer, any Error> {
        AsyncThrowingStream { continuation in
            for chunk in chunks { continuation.yield(ByteBuffer(string: chunk)) }
            continuation.finish(throwing: error)
        }
    }

    struct ClientGone: Error {}

    func status(_ id: ImageID) async throws -> ImageStatus? { try await repository.get(id)?.status }

    // MARK: Upload

    @Test func upload_publishesTheDataAndTheHashes() async throws {
        let id = try await queuedImage()
        let image = try await service.upload(id, body: Self.body(["hello ", "world"]), declaredSize: nil)
        #expect(image.status == .active)
        #expect(image.size == 11)
        #expect(image.checksum == "5eb63bbbe01eeed093cb22bb8f5acdc3")
        #expect(image.uploadOwner == nil)
        #expect(try await memory.storedIDs() == [id])
    }

    @Test func upload_guardRefusesBeforeTheFirstByte_imageStaysQueued() async throws {
        let id = try await queuedImage()
        writeGuard.script(writable: [ImageStoreError.storeUnavailable("marker missing")])
        let error = await #expect(throws: ImageStoreError.self) {
            try await service.upload(id, body: Self.body(["data"]), declaredSize: 4)
        }
        #expect(error?.code == .storeUnavailable)
        #expect(try await status(id) == .queued)
        #expect(try await repository.get(id)?.uploadOwner == nil)
        #expect(try await memory.storedIDs() == [])
    }

    @Test func upload_clientGoneMidBody_cleansUp_imageBackToQueued() async throws {
        let id = try await queuedImage()
        let error = await #expect(throws: ImageStoreError.self) {
            try await service.upload(id, body: Self.body(["half of it"], thenFail: ClientGone()), declaredSize: 100)
        }
        #expect(error?.code == .clientDisconnected)
        #expect(try await status(id) == .queued)
        #expect(try await repository.get(id)?.uploadOwner == nil)
        #expect(try await memory.storedIDs() == [], "nothing published")
        #expect(!service.inFlight.contains(id))
    }

    @Test func upload_shareGoneBeforePublishing_nothingPublished_imageBackToQueued() async throws {
        let id = try await queuedImage()
        // Writable when the upload starts, gone when the data is about to be published.
        writeGuard.script(writable: [nil, ImageStoreError.storeUnavailable("NFS timed out")])
        let error = await #expect(throws: ImageStoreError.self) {
            try await service.upload(id, body: Self.body(["data"]), declaredSize: nil)
        }
        #expect(error?.code == .storeUnavailable)
        #expect(writeGuard.writableChecks == 2)
        #expect(try await status(id) == .queued)
        #expect(try await memory.storedIDs() == [])
    }

    @Test func upload_sizeDifferentFromDeclared_cleansUp() async throws {
        let id = try await queuedImage()
        await #expect(throws: ImageStoreError.self) {
            try await service.upload(id, body: Self.body(["abc"]), declaredSize: 10)
        }
        #expect(try await status(id) == .queued)
        #expect(try await memory.storedIDs() == [])
    }

    // MARK: Delete

    @Test func delete_removesDataAndRow() async throws {
        let id = try await queuedImage()
        _ = try await service.upload(id, body: Self.body(["data"]), declaredSize: nil)
        try await service.delete(id)
        #expect(try await repository.get(id) == nil)
        #expect(try await memory.storedIDs() == [])
    }

    @Test func delete_storeFails_rollsTheStatusBack_andKeepsEverything() async throws {
        let id = try await queuedImage()
        _ = try await service.upload(id, body: Self.body(["data"]), declaredSize: nil)
        store.failDeletes(with: ImageStoreError(.writeDenied, "EACCES"))
        let error = await #expect(throws: ImageStoreError.self) { try await service.delete(id) }
        #expect(error?.code == .writeDenied)
        #expect(try await status(id) == .active, "pending_delete rolled back")
        #expect(try await memory.storedIDs() == [id])
    }

    @Test func delete_guardRefuses_changesNothing() async throws {
        let id = try await queuedImage()
        _ = try await service.upload(id, body: Self.body(["data"]), declaredSize: nil)
        writeGuard.setDefault(writable: ImageStoreError.storeUnavailable("wrong share"))
        let error = await #expect(throws: ImageStoreError.self) { try await service.delete(id) }
        #expect(error?.code == .storeUnavailable)
        #expect(try await status(id) == .active)
        #expect(try await memory.storedIDs() == [id])
    }

    @Test func delete_withoutData_needsNoGuard() async throws {
        let id = try await queuedImage()
        writeGuard.setDefault(writable: ImageStoreError.storeUnavailable("gone"))
        try await service.delete(id)
        #expect(try await repository.get(id) == nil)
        #expect(writeGuard.writableChecks == 0)
    }

    // MARK: recoverAfterRestart

    /// A shared catalogue (the in-memory one, like PostgreSQL): only this replica's leftovers; another
    /// replica's upload may be live and is left to its takeover.
    @Test func recover_sharedCatalogue_resetsOnlyThisReplicasUploads() async throws {
        var mine = Image(status: .saving, diskFormat: "raw", containerFormat: "bare")
        mine.uploadOwner = "this-replica"
        try await repository.create(mine)
        var theirs = Image(status: .saving, diskFormat: "raw", containerFormat: "bare")
        theirs.uploadOwner = "other-replica"
        try await repository.create(theirs)
        let report = try await service.recoverAfterRestart()
        #expect(report.uploadsReset == 1)
        #expect(report.storeChecked)
        #expect(try await status(mine.id) == .queued)
        #expect(try await repository.get(mine.id)?.uploadOwner == nil)
        #expect(try await status(theirs.id) == .saving)
    }

    /// An embedded catalogue (SQLite) serves one replica: every other writer recorded was an earlier run.
    @Test func recover_embeddedCatalogue_resetsEveryEarlierRunsUpload() async throws {
        let sqlite = try SQLiteImageRepository(path: ":memory:", logger: Logger(label: "test"))
        let service = ImageService(repository: sqlite, store: store, writeGuard: writeGuard, processToken: "this-replica")
        var earlier = Image(status: .saving, diskFormat: "raw", containerFormat: "bare")
        earlier.uploadOwner = "earlier-run"
        try await sqlite.create(earlier)
        let report = try await service.recoverAfterRestart()
        #expect(report.uploadsReset == 1)
        #expect(try await sqlite.get(earlier.id)?.status == .queued)
    }

    @Test func recover_failsAnInterruptedImport_namingItsTask() async throws {
        var importing = Image(status: .importing, diskFormat: "raw", containerFormat: "bare")
        importing.uploadOwner = "earlier-run"
        importing.properties = [ImportProperty.task: "task-1", ImportProperty.importingToStores: "default_backend"]
        let sqlite = try SQLiteImageRepository(path: ":memory:", logger: Logger(label: "test"))
        let service = ImageService(repository: sqlite, store: store, writeGuard: writeGuard, processToken: "this-replica")
        try await sqlite.create(importing)
        let report = try await service.recoverAfterRestart()
        #expect(report.interruptedImports == ["task-1"])
        #expect(report.uploadsReset == 0)
        let after = try #require(try await sqlite.get(importing.id))
        #expect(after.status == .queued)
        #expect(after.properties[ImportProperty.failedImport] == "default_backend")
    }

    @Test func recover_storeNotWritable_onlyTheMetadataPart() async throws {
        var saving = Image(status: .saving, diskFormat: "raw", containerFormat: "bare")
        saving.uploadOwner = "this-replica"  // an earlier run with this replica's id (shared catalogue)
        try await repository.create(saving)
        let deleting = Image(status: .pendingDelete, diskFormat: "raw", containerFormat: "bare")
        try await repository.create(deleting)
        try await storeData(deleting.id)
        writeGuard.setDefault(writable: ImageStoreError.storeUnavailable("marker missing"))
        let report = try await service.recoverAfterRestart()
        #expect(!report.storeChecked)
        #expect(report.uploadsReset == 1)
        #expect(report.deletesFinished == 0, "the store is not touched")
        #expect(try await status(deleting.id) == .pendingDelete)
        #expect(try await memory.storedIDs() == [deleting.id])
    }

    @Test func recover_finishesInterruptedDeletes() async throws {
        let deleting = Image(status: .pendingDelete, diskFormat: "raw", containerFormat: "bare")
        try await repository.create(deleting)
        try await storeData(deleting.id)
        let report = try await service.recoverAfterRestart()
        #expect(report.deletesFinished == 1)
        #expect(try await repository.get(deleting.id) == nil)
        #expect(try await memory.storedIDs() == [])
    }

    @Test func recover_removesDataNoActiveImagePointsTo_keepsActiveImagesData() async throws {
        let orphan = ImageID()
        try await storeData(orphan)
        let queued = try await queuedImage()
        try await storeData(queued)  // renamed into place, never marked active
        let active = try await queuedImage()
        _ = try await service.upload(active, body: Self.body(["kept"]), declaredSize: nil)
        let report = try await service.recoverAfterRestart()
        #expect(report.orphanedDataRemoved == 2)
        #expect(try await memory.storedIDs() == [active])
    }

    @Test func recover_resetsActiveImagesWhoseDataIsGone() async throws {
        let id = try await queuedImage()
        _ = try await service.upload(id, body: Self.body(["data"]), declaredSize: nil)
        _ = try await memory.delete(id)
        let report = try await service.recoverAfterRestart()
        #expect(report.missingDataReset == 1)
        let after = try #require(try await repository.get(id))
        #expect(after.status == .queued)
        #expect(after.size == nil && after.checksum == nil)
    }

    @Test func recover_leavesAnUploadThisProcessIsRunning() async throws {
        var saving = Image(status: .saving, diskFormat: "raw", containerFormat: "bare")
        saving.uploadOwner = "this-replica"
        try await repository.create(saving)
        service.inFlight.insert(saving.id)
        defer { service.inFlight.remove(saving.id) }
        let report = try await service.recoverAfterRestart()
        #expect(report.uploadsReset == 0)
        #expect(try await status(saving.id) == .saving)
    }
}
