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
