import Foundation
import NIOCore

/// Where image bytes live (the filesystem store, an in-memory one for tests).
///
/// Writes are two-phase so nothing half-written is ever visible: `beginWrite` streams into a
/// temporary object, `finish` makes it durable and reports size and hashes, and only `commit`
/// publishes it under the image id. `abort` (or any failure) leaves nothing behind.
/// Every implementation passes the same conformance suite (`ImageDataStoreConformance`).
public protocol ImageDataStore: Sendable {
    /// Makes the store usable (creates its directory where it may), under the store's deadline.
    /// Start-up calls it, and retries it in the background until it succeeds.
    func prepare() async throws

    /// Starts writing data for `id`. Throws `.conflict` if data for `id` is already committed,
    /// or the mapped I/O error (`.storageFull`, `.writeDenied`, `.storeUnavailable`).
    func beginWrite(_ id: ImageID, expectedSize: Int64?) async throws -> any ImageDataWriter

    /// Opens the data of `id`, or the byte range `range` of it. Throws `.notFound` when absent.
    func read(_ id: ImageID, range: Range<Int64>?) async throws -> any ImageDataReader

    /// Size in bytes of the committed data. Throws `.notFound` when absent.
    func size(_ id: ImageID) async throws -> Int64

    /// Removes committed data. Returns false if there was none.
    @discardableResult
    func delete(_ id: ImageID) async throws -> Bool

    /// Ids of all committed data, for reconciliation at start-up.
    func storedIDs() async throws -> [ImageID]

    /// Removes temporary files left by an earlier process. Returns how many were removed.
    @discardableResult
    func sweepTemporaryFiles() async throws -> Int

    /// Removes the temporary files `shouldRemove` picks (never one an upload of this process is
    /// writing). Returns how many were removed.
    @discardableResult
    func sweepTemporaryFiles(where shouldRemove: @escaping @Sendable (TemporaryFileInfo) -> Bool) async throws -> Int

    /// Total and free bytes of the backing storage.
    func capacity() async throws -> StoreCapacity
}

/// A write in progress. Not shared between tasks: one upload drives one writer.
extension ImageDataStore {
    /// Nothing to prepare.
    public func prepare() async throws {}
}

public protocol ImageDataWriter: Sendable {
    /// Appends bytes (hashing them on the way). Throws `.sizeMismatch` as soon as more bytes
    /// than the expected size arrive, or the mapped I/O error.
    func write(_ buffer: ByteBuffer) async throws

    /// Ends the stream: flushes, fsyncs, checks the size against the expected one (`.sizeMismatch`)
    /// and returns what was written. The data is not visible yet.
    func finish() async throws -> StagedImageData

    /// Publishes finished data under the image id (rename, then fsync of the directory).
    func commit() async throws

    /// Throws the data away; safe to call at any point, any number of times, also after commit
    /// failed. Never throws.
    func abort() async
}

/// What `finish` reports.
public struct StagedImageData: Sendable, Equatable {
    public var size: Int64
    /// md5 hex, Glance's `checksum`.
    public var md5: String
    /// Multihash algorithm name (`sha512`) and hex value, Glance's `os_hash_algo`/`os_hash_value`.
    public var hashAlgorithm: String
    public var hashValue: String

    public init(size: Int64, md5: String, hashAlgorithm: String = "sha512", hashValue: String) {
        self.size = size
        self.md5 = md5
        self.hashAlgorithm = hashAlgorithm
        self.hashValue = hashValue
    }
}

/// An open read of image data.
public protocol ImageDataReader: Sendable {
    /// How many bytes `forEachChunk` will deliver.
    var length: Int64 { get }
    /// Streams the bytes in chunks, then closes. Call once.
    func forEachChunk(_ body: @Sendable (ByteBuffer) async throws -> Void) async throws
    /// Streams like `forEachChunk`, reading on only while fewer than `limit` of its chunks are alive
    /// (delivered and not yet freed). For a consumer that frees every chunk by itself soon (an HTTP
    /// response: its socket holds chunks until sent); one that keeps several (a store writer's pipeline)
    /// must use `forEachChunk`, or it would wait for itself.
    func forEachChunk(heldAtMost limit: Int, _ body: @Sendable (ByteBuffer) async throws -> Void) async throws
    /// Closes without reading (safe after `forEachChunk` too).
    func close() async
}

/// A connected, non-blocking socket that a reader may send file bytes into with `sendfile`, past the HTTP
/// writer: the kernel passes page-cache pages to the socket, so the server copies no byte of the body.
public protocol FileSendSocket: Sendable {
    /// Runs `body` (a store call's `sendfile`) with the socket's descriptor, which stays open until `body`
    /// returns even if the download closed the socket meanwhile (a call that outlived its deadline); `body`
    /// gets nil once the socket was closed, never a number that may belong to another file by then.
    func withDescriptor<T>(_ body: (Int32?) throws -> T) rethrows -> T
    /// Returns once the socket may take more bytes; throws once the connection is gone.
    func waitUntilWritable() async throws
    /// `count` more bytes went into the socket with `sendfile` (for the byte counters).
    func sent(_ count: Int)
}

/// A reader whose bytes are a range of a local file, which `sendfile` can send.
public protocol FileSendingReader: ImageDataReader {
    /// False when the first chunk is the whole body: nothing would go out with `sendfile`.
    var sendsPastFirstChunk: Bool { get }
    /// Sends all the bytes, then closes: the chunk read before the response started through `writeFirst`
    /// (the HTTP writer, after the headers), and once the socket has taken it, the rest with `sendfile`
    /// into `socket`, each call on the store's threads under its deadline (a call may read the file).
    /// Call once, instead of `forEachChunk`.
    func send(
        writingFirstChunk writeFirst: @Sendable (ByteBuffer) async throws -> Void, into socket: any FileSendSocket
    ) async throws
}

extension ImageDataReader {
    /// Readers that hold nothing between chunks need no bound.
    public func forEachChunk(heldAtMost limit: Int, _ body: @Sendable (ByteBuffer) async throws -> Void) async throws {
        try await forEachChunk(body)
    }
}

/// A temporary file of an upload, as its name and status tell: the image, the replica that wrote it
/// (nil for a name from before replica ids), and when it was last written.
public struct TemporaryFileInfo: Sendable, Equatable {
    public var imageID: ImageID?
    public var replica: String?
    public var modified: Date
    public init(imageID: ImageID?, replica: String?, modified: Date) {
        self.imageID = imageID
        self.replica = replica
        self.modified = modified
    }
}

public struct StoreCapacity: Sendable, Equatable {
    public var totalBytes: Int64
    public var freeBytes: Int64
    public init(totalBytes: Int64, freeBytes: Int64) {
        self.totalBytes = totalBytes
        self.freeBytes = freeBytes
    }
}
