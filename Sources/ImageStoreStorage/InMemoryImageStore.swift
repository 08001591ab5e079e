import ImageStoreCore
import NIOCore
import Synchronization

/// Image data in memory, with the same semantics as the filesystem store (two-phase writes, size
/// checks, conflicts, nothing visible before commit). Used by the API tests and for development.
public actor InMemoryImageStore: ImageDataStore {
    private var objects: [ImageID: ByteBuffer] = [:]
    private let chunkSize: Int
    private let totalBytes: Int64
    private let hashAlgorithm: HashAlgorithm

    /// - Parameters:
    ///   - chunkSize: bytes per chunk when streaming a read.
    ///   - totalBytes: the capacity reported by `capacity()`.
    ///   - hashAlgorithm: `hashing_algorithm`, the algorithm of `os_hash_value`.
    public init(chunkSize: Int = 65536, totalBytes: Int64 = 1 << 40, hashAlgorithm: HashAlgorithm = .default) {
        self.hashAlgorithm = hashAlgorithm
        self.chunkSize = max(chunkSize, 1)
        self.totalBytes = totalBytes
    }

    fileprivate func publish(_ id: ImageID, data: ByteBuffer) throws {
        guard objects[id] == nil else { throw ImageStoreError.conflict("Image data for \(id) already exists") }
        objects[id] = data
    }

    public func beginWrite(_ id: ImageID, expectedSize: Int64?) async throws -> any ImageDataWriter {
        guard objects[id] == nil else { throw ImageStoreError.conflict("Image data for \(id) already exists") }
        return InMemoryImageWriter(id: id, expectedSize: expectedSize, hashAlgorithm: hashAlgorithm, store: self)
    }

    public func read(_ id: ImageID, range: Range<Int64>?) async throws -> any ImageDataReader {
        guard let data = objects[id] else { throw ImageStoreError.notFound("No image data found for \(id)") }
        let size = Int64(data.readableBytes)
        var bytes = 0..<size
        if let range {
            guard range.lowerBound >= 0, range.lowerBound < size || (range.isEmpty && range.lowerBound == 0) else {
                throw ImageStoreError(.rangeNotSatisfiable, "Range \(range) not satisfiable for \(size) bytes")
            }
            bytes = range.lowerBound..<min(range.upperBound, size)
        }
        let slice = data.getSlice(at: data.readerIndex + Int(bytes.lowerBound), length: bytes.count)!
        return InMemoryImageReader(data: slice, chunkSize: chunkSize)
    }

    public func size(_ id: ImageID) async throws -> Int64 {
        guard let data = objects[id] else { throw ImageStoreError.notFound("No image data found for \(id)") }
        return Int64(data.readableBytes)
    }

    @discardableResult
    public func delete(_ id: ImageID) async throws -> Bool {
        objects.removeValue(forKey: id) != nil
    }

    public func storedIDs() async throws -> [ImageID] {
        objects.keys.sorted()
    }

    /// Uploads in progress live in their writers, so nothing is ever left over.
    @discardableResult
    public func sweepTemporaryFiles() async throws -> Int { 0 }

    @discardableResult
    public func sweepTemporaryFiles(where shouldRemove: @escaping @Sendable (TemporaryFileInfo) -> Bool) async throws -> Int { 0 }

    public func capacity() async throws -> StoreCapacity {
        let used = objects.values.reduce(Int64(0)) { $0 + Int64($1.readableBytes) }
        return StoreCapacity(totalBytes: totalBytes, freeBytes: max(0, totalBytes - used))
    }
}

/// An upload into the in-memory store: bytes stay in the writer until `commit` hands them over.
final class InMemoryImageWriter: ImageDataWriter {
    private enum Phase {
        case writing
        case finished
        case committed
        case closed
    }

    private struct State {
        var phase = Phase.writing
        var data = ByteBuffer()
        var tracker: SizeTracker
        var hasher: UploadHasher
    }

    private let id: ImageID
    private let store: InMemoryImageStore
    private let state: Mutex<State>

    init(id: ImageID, expectedSize: Int64?, hashAlgorithm: HashAlgorithm, store: InMemoryImageStore) {
        self.id = id
        self.store = store
        self.state = Mutex(State(tracker: SizeTracker(expectedSize: expectedSize), hasher: UploadHasher(algorithm: hashAlgorithm)))
    }

    func write(_ buffer: ByteBuffer) async throws {
        do {
            try state.withLock { state in
                guard state.phase == .writing else {
                    throw ImageStoreError.internal("write after the upload of \(id) was finished or aborted")
                }
                try state.tracker.add(buffer.readableBytes)
                state.hasher.update(buffer)
                var copy = buffer
                state.data.writeBuffer(&copy)
            }
        } catch {
            discard()
            throw error
        }
    }

    func finish() async throws -> StagedImageData {
        do {
            return try state.withLock { state in
                guard state.phase == .writing else {
                    throw ImageStoreError.internal("finish of the upload of \(id) called twice or after abort")
                }
                try state.tracker.checkComplete()
                state.phase = .finished
                return state.hasher.staged(size: state.tracker.received)
            }
        } catch {
            discard()
            throw error
        }
    }

    func commit() async throws {
        let data = try state.withLock { state -> ByteBuffer in
            guard state.phase == .finished else {
                throw ImageStoreError.internal("commit of \(id) before finish, or after abort")
            }
            return state.data
        }
        do {
            try await store.publish(id, data: data)
        } catch {
            discard()
            throw error
        }
        state.withLock { state in
            state.phase = .committed
            state.data = ByteBuffer()
        }
    }

    func abort() async {
        discard()
    }

    private func discard() {
        state.withLock { state in
            guard state.phase != .committed else { return }
            state.phase = .closed
            state.data = ByteBuffer()
        }
    }
}

/// Reads committed bytes in chunks (slices of the stored buffer, no copies).
final class InMemoryImageReader: ImageDataReader {
    let length: Int64
    private let data: Mutex<ByteBuffer?>
    private let chunkSize: Int

    init(data: ByteBuffer, chunkSize: Int) {
        self.length = Int64(data.readableBytes)
        self.data = Mutex(data)
        self.chunkSize = chunkSize
    }

    func forEachChunk(_ body: @Sendable (ByteBuffer) async throws -> Void) async throws {
        guard var remaining = data.withLock({ $0.take() }) else {
            throw ImageStoreError.internal("read after close")
        }
        while remaining.readableBytes > 0 {
            try await body(remaining.readSlice(length: min(chunkSize, remaining.readableBytes))!)
        }
    }

    func close() async {
        data.withLock { $0 = nil }
    }
}
