import ImageStoreTestSupport
import ImageStoreCore
import ImageStoreStorage
import NIOCore
import Testing

@Suite struct InMemoryImageStoreTests {
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
