import Foundation
import ImageStoreCore
import Synchronization
@testable import ImageStoreStorage
import NIOCore
import Testing

/// The allocator of download and upload buffers: every size class keeps its bytes, grows correctly,
/// and freed blocks are reused up to the cap instead of piling up.
@Suite(.serialized) struct LargeBufferPoolTests {
    @Test(arguments: [0, 100, 100_000, 700_000, 1 << 20, 3 << 20])
    func buffers_ofEverySize_keepTheirBytes_andGrow(size: Int) {
        var buffer = LargeBufferPool.allocator.buffer(capacity: size)
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        buffer.writeBytes(bytes)
        #expect(buffer.readableBytesView.elementsEqual(bytes))
        // Growing past the capacity reallocates (into another size class) and keeps the bytes.
        buffer.writeBytes([1, 2, 3])
        #expect(buffer.readableBytes == size + 3)
        #expect(buffer.getBytes(at: 0, length: size) == bytes)
        #expect(buffer.getBytes(at: size, length: 3) == [1, 2, 3])
    }

    @Test func freedBlocks_areKept_upToTheCap() {
        do {
            var many: [ByteBuffer] = []
            for i in 0..<(LargeBufferPool.maxFree + 8) {
                var buffer = LargeBufferPool.allocator.buffer(capacity: LargeBufferPool.blockSize)
                buffer.writeInteger(UInt64(i))
                many.append(buffer)
            }
            #expect(many.enumerated().allSatisfy { $0.element.getInteger(at: 0, as: UInt64.self) == UInt64($0.offset) })
        }
        // 40 blocks freed: at most the cap is kept, the rest went back to the system. (Other suites
        // use the pool concurrently, so only the bound is asserted, not an exact count.)
        #expect(LargeBufferPool.freeBlocks <= LargeBufferPool.maxFree)
        #expect(LargeBufferPool.freeBlocks > 0)
    }
}

/// A download reads on only while its socket has freed enough of what it was given.
@Suite struct BufferCreditsTests {
    @Test func freeingAnAttachedBuffer_returnsItsSlot() async throws {
        let credits = BufferCredits(1)
        await credits.acquire()
        var buffer: ByteBuffer? = LargeBufferPool.allocator.buffer(capacity: LargeBufferPool.blockSize)
        LargeBufferPool.attach(credits, to: buffer!)
        let acquired = Flag()
        let waiter = Task {
            await credits.acquire()
            acquired.set()
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!acquired.isSet, "the only slot is held by the live buffer")
        buffer = nil  // what NIO does once the socket took the bytes
        await waiter.value
        #expect(acquired.isSet)
        _ = buffer
    }

    @Test func filesystemReader_heldAtMost_stopsReadingUntilTheConsumerFrees() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = FilesystemImageStore(directory: directory, logger: testLogger)
        let id = ImageID()
        let chunks = 8
        let data = randomBytes(chunks * LargeBufferPool.blockSize)
        let writer = try await store.beginWrite(id, expectedSize: Int64(data.count))
        try await writer.write(ByteBuffer(bytes: data))
        _ = try await writer.finish()
        try await writer.commit()

        // The consumer keeps every chunk (a socket that sends nothing) until told to let go.
        let kept = Mutex<[ByteBuffer]>([])
        let reader = try await store.read(id, range: nil)
        let streaming = Task {
            try await reader.forEachChunk(heldAtMost: 2) { chunk in kept.withLock { $0.append(chunk) } }
        }
        // Two chunks may be alive, the prefetched first one included; then reading stops. (Waits for the
        // second however slow the machine, then gives a third read ample time not to happen.)
        let clock = ContinuousClock()
        let patience = clock.now + .seconds(60)
        while kept.withLock({ $0.count }) < 2, clock.now < patience { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .seconds(1))
        let delivered = kept.withLock { $0.count }
        #expect(delivered == 2, "delivered \(delivered) of \(chunks) chunks while none was freed")
        // The socket drains: everything arrives, byte for byte.
        var received: [UInt8] = []
        while true {
            let drained = kept.withLock { chunks in
                defer { chunks.removeAll() }
                return chunks
            }
            for var chunk in drained { received += chunk.readBytes(length: chunk.readableBytes)! }
            if received.count >= data.count || clock.now > patience + .seconds(60) { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        try await streaming.value
        #expect(received == data)
    }
}

private final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
