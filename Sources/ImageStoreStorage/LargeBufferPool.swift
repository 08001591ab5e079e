#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
@_spi(CustomByteBufferAllocator) import NIOCore
import Synchronization

/// The 1 MiB buffers of downloads and upload batches come from here, not from malloc.
///
/// With malloc, each 1 MiB buffer came from the arena of whichever store or upload thread allocated
/// it and was freed from an event loop: glibc kept the freed space in those arenas, so RSS grew with
/// concurrency (8 concurrent downloads peaked at 240–400 MiB for ~30 MiB of live buffers). Setting
/// glibc's mmap threshold instead bounds RSS but costs a fresh mmap and 256 page faults per buffer
/// (download CPU ×3). Here blocks are mmapped once, kept on a free list of at most `maxFree`, and
/// unmapped beyond it: RSS ≈ live buffers + 32 MiB, and no page faults in steady state.
///
/// Mapped buffers (pooled blocks and larger ones) start on a page boundary, so an upload batch can be
/// written with O_DIRECT as it is (the header lives in the page in front of the data).
enum LargeBufferPool {
    static let blockSize = 1 << 20
    /// Free blocks kept for reuse (32 MiB): enough for 8 downloads and 8 uploads in steady state.
    static let maxFree = 32
    /// Right in front of every allocation: its kind, and the mapping's size for mappings.
    private static let headerSize = 64
    /// Where a mapping's data starts: one page in, so the data is page aligned.
    static let mappedDataOffset = 4096
    private static let pooledTag: UInt = 0x504f_4f4c  // "POOL"
    private static let mappedTag: UInt = 0x4d41_5050  // "MAPP"
    private static let mallocTag: UInt = 0x4d41_4c4c  // "MALL"

    /// An allocator whose buffers of more than half a block up to a block are pooled blocks; larger
    /// ones are mapped directly (unmapped when freed), smaller ones (a short last chunk) use malloc.
    static let allocator = ByteBufferAllocator(
        allocate: { size in LargeBufferPool.allocate(size) },
        reallocate: { pointer, oldSize, newSize in
            let fresh = LargeBufferPool.allocate(newSize)
            if let pointer, let fresh { memcpy(fresh, pointer, min(oldSize, newSize)) }
            if let pointer { LargeBufferPool.deallocate(pointer) }
            return fresh
        },
        deallocate: { pointer in LargeBufferPool.deallocate(pointer) },
        copy: { destination, source, count in _ = memcpy(destination, source, count) })

    /// Where a buffer's header keeps the `BufferCredits` it returns a slot to when freed (0: none).
    private static let creditsOffset = 2 * MemoryLayout<UInt>.size

    /// Makes freeing `buffer` (its storage, when NIO is done with it) release one slot of `credits`.
    /// The allocator is a set of C functions without context, so the link lives in the header.
    static func attach(_ credits: BufferCredits, to buffer: ByteBuffer) {
        buffer.withVeryUnsafeBytes { storage in
            guard let start = storage.baseAddress else { return }
            let base = UnsafeMutableRawPointer(mutating: start) - headerSize
            let tag = base.load(as: UInt.self)
            precondition(tag == pooledTag || tag == mappedTag || tag == mallocTag, "LargeBufferPool: foreign buffer")
            precondition(base.load(fromByteOffset: creditsOffset, as: UInt.self) == 0, "LargeBufferPool: credits attached twice")
            let retained = Unmanaged.passRetained(credits).toOpaque()
            base.storeBytes(of: UInt(bitPattern: retained), toByteOffset: creditsOffset, as: UInt.self)
        }
    }

    private static let free = Mutex<[UInt]>([])

    static var freeBlocks: Int { free.withLock { $0.count } }

    private static func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        if size > blockSize / 2 && size <= blockSize {
            if let reused = free.withLock({ $0.popLast() }) {
                let data = UnsafeMutableRawPointer(bitPattern: reused)!
                (data - headerSize).storeBytes(of: 0, toByteOffset: creditsOffset, as: UInt.self)
                return data
            }
            return map(blockSize, tag: pooledTag)
        }
        if size > blockSize { return map(size, tag: mappedTag) }
        // Small buffers (a short last chunk, a test's buffer) stay with malloc.
        guard let base = malloc(size + headerSize) else { return nil }
        base.storeBytes(of: mallocTag, as: UInt.self)
        base.storeBytes(of: 0, toByteOffset: creditsOffset, as: UInt.self)
        return base + headerSize
    }

    /// Maps `size` bytes of page-aligned data plus the page holding the header.
    private static func map(_ size: Int, tag: UInt) -> UnsafeMutableRawPointer? {
        let length = size + mappedDataOffset
        guard let mapping = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            mapping != MAP_FAILED
        else { return nil }
        let data = mapping + mappedDataOffset
        let header = data - headerSize
        header.storeBytes(of: tag, as: UInt.self)
        header.storeBytes(of: UInt(length), toByteOffset: MemoryLayout<UInt>.size, as: UInt.self)
        header.storeBytes(of: 0, toByteOffset: creditsOffset, as: UInt.self)
        return data
    }

    private static func deallocate(_ pointer: UnsafeMutableRawPointer) {
        let base = pointer - headerSize
        let tag = base.load(as: UInt.self)
        precondition(tag == pooledTag || tag == mappedTag || tag == mallocTag, "LargeBufferPool: foreign pointer")
        let credits = base.load(fromByteOffset: creditsOffset, as: UInt.self)
        if credits != 0 {
            base.storeBytes(of: 0, toByteOffset: creditsOffset, as: UInt.self)
            Unmanaged<BufferCredits>.fromOpaque(UnsafeRawPointer(bitPattern: credits)!).takeRetainedValue().release()
        }
        if tag == mallocTag {
            Glibc.free(base)
            return
        }
        let length = Int(base.load(fromByteOffset: MemoryLayout<UInt>.size, as: UInt.self))
        if tag == pooledTag {
            let kept = free.withLock { list -> Bool in
                guard list.count < maxFree else { return false }
                list.append(UInt(bitPattern: pointer))
                return true
            }
            if kept { return }
        }
        munmap(pointer - mappedDataOffset, length)
    }
}

/// How many chunks a download may have alive at once (read, and not yet freed by the socket writer).
///
/// NIO's async writer only stops a producer once the channel reports itself unwritable, which happens
/// on the event loop after it has run the queued writes: with several downloads per loop, a reader
/// fast from the page cache queued 20+ MiB per download before that. Counting frees bounds it to
/// what is actually in flight.
final class BufferCredits: Sendable {
    private let limit: Int
    private let state: Mutex<(available: Int, waiters: [CheckedContinuation<Void, Never>])>

    init(_ limit: Int) {
        self.limit = max(1, limit)
        state = Mutex((self.limit, []))
    }

    /// Waits for a free slot. A consumer that never frees (a stalled client) is ended by the server's
    /// socket timeout, which frees its buffers.
    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                guard state.available > 0 else {
                    state.waiters.append(continuation)
                    return false
                }
                state.available -= 1
                return true
            }
            if ready { continuation.resume() }
        }
    }

    /// One buffer was freed. Never above the limit: a copy-on-write copy made from the same allocator
    /// is freed without having been acquired.
    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.available = min(state.available + 1, limit)
            return nil
        }
        waiter?.resume()
    }
}
