import ImageStoreTestSupport
import ImageStoreCore
import ImageStoreStorage
import NIOCore
import Testing

@Suite struct InMemoryImageStoreTests {
    @Test func failNextWrite_failsOnlyTheNextWriteAndDiscardsThatUpload() async throws {
        let store = InMemoryImageStore()
        let id = ImageID()
        await store.failNextWrite(with: ImageStoreError(.storageFull, "Image storage media is full: test"))

        let failing = try await store.beginWrite(id, expectedSize: nil)
        let error = await expectError(.storageFull) { try await failing.write(ByteBuffer(bytes: [1, 2, 3])) }
        #expect(error?.message == "Image storage media is full: test")
        await expectError(.internal) { _ = try await failing.finish() }
        #expect(try await store.storedIDs() == [])

        // The failure was used up: the next upload succeeds.
        let bytes = randomBytes(1000)
        try await upload(store, id, bytes)
        #expect(try await readAll(store, id) == bytes)
    }

    @Test func capacity_accountsForCommittedBytes() async throws {
        let store = InMemoryImageStore(totalBytes: 10_000)
        try await upload(store, ImageID(), randomBytes(2500))
        #expect(try await store.capacity() == StoreCapacity(totalBytes: 10_000, freeBytes: 7500))
    }

    @Test func read_withSmallChunkSize_deliversChunksOfThatSize() async throws {
        let store = InMemoryImageStore(chunkSize: 100)
        let id = ImageID()
        let bytes = randomBytes(1050)
        try await upload(store, id, bytes)

        let reader = try await store.read(id, range: nil)
        let collector = ChunkCollector()
        try await reader.forEachChunk { collector.append($0) }
        #expect(collector.chunks == 11)
        #expect(collector.bytes == bytes)
    }
}
