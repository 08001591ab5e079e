#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import ImageStoreCore
import Logging
import NIOCore
import Synchronization

/// Image data as files in one directory (usually an NFS share): `<directory>/<id>`.
///
/// Uploads stream into a hidden temporary file `.<id>.<replica>.<random>.tmp` (the replica id tells
/// which process wrote it, so a replica sweeps only its own or a dead replica's), are fsynced, then published with
/// a rename that never replaces existing data, and the directory is fsynced. Every blocking call runs
/// on threads owned by the store (reads, metadata) or by the upload (write, md5, the os_hash_value digest), never on an
/// event loop, and under `timeout`: a share that stops answering costs a request at most that long
/// (reads 503, writes the store-unavailable error), never a hang. Only `ImageID.description` (a
/// canonical UUID) ever becomes a path component.
public struct FilesystemImageStore: ImageDataStore {
    public let directory: String
    private let filePermissions: Int
    private let chunkSize: Int
    /// `hashing_algorithm`: the digest recorded as `os_hash_value`.
    private let hashAlgorithm: HashAlgorithm
    private let createsDirectory: Bool
    /// Written into temporary file names; nil: the name of earlier versions, `.<id>.<random>.tmp`.
    public let replicaID: String?
    private let logger: Logger
    /// A few threads for reads and metadata calls, each call under the deadline.
    private let io: StoreIO
    /// `filesystem_store_direct_io`: uploads write with O_DIRECT where the filesystem allows it.
    public let directIO: Bool
    private let directIOFallbacks: Fallbacks
    /// `filesystem_store_flush_after`, in bytes: the write-behind window of buffered uploads; 0: off.
    public let flushAfter: Int
    private let writeBehindFallbacks: Fallbacks
    /// The write-behind call; tests put one here that refuses, as a seccomp filter or an old kernel would.
    package var syncFileRange: SyncFileRangeCall = SyncFileRange.system

    /// Downloads read at least this much per call: each read is a hop to a store thread under the
    /// deadline, and with glance_store's 64 KiB chunks those hops (16 384 per GiB) cost more CPU than
    /// the copies. Two reads are in flight per download (one ahead), so memory stays at 2 MiB each.
    public static let minimumReadSize = 1 << 20

    /// How many threads a hung share can hold at most for reads and metadata calls, by default.
    public static let ioThreads = 4

    /// - Parameters:
    ///   - filePermissions: mode applied to committed files when > 0 (glance's `filesystem_store_file_perm`).
    ///   - chunkSize: `filesystem_store_chunk_size`; a download reads `max(chunkSize, minimumReadSize)` per call.
    ///   - hashAlgorithm: `hashing_algorithm`, the algorithm of `os_hash_value`.
    ///   - timeout: the deadline of every blocking call (`mount_guard_timeout`).
    ///   - threads: threads for reads and metadata calls (`filesystem_store_thread_pool_size`).
    ///   - directIO: write uploads with O_DIRECT (`filesystem_store_direct_io`); a filesystem that refuses
    ///     it gets buffered writes (logged once).
    ///   - flushAfter: write-behind window of buffered uploads in bytes (`filesystem_store_flush_after`,
    ///     there in MiB); 0: off. A system that refuses `sync_file_range` gets plain buffered writes
    ///     (logged once).
    ///   - createDirectory: `prepare()` creates a missing directory (an unguarded or marker-only store).
    ///   - onStuckChange: told the number of calls past their deadline and not yet returned, on each change
    ///     (with what timed out while it is above zero).
    public init(
        directory: String, filePermissions: Int = 0, chunkSize: Int = 65536, hashAlgorithm: HashAlgorithm = .default,
        timeout: Duration = .seconds(2),
        threads: Int = FilesystemImageStore.ioThreads, directIO: Bool = FilesystemImageStore.defaultDirectIO,
        flushAfter: Int = FilesystemImageStore.defaultFlushAfter, createDirectory: Bool = false, replicaID: String? = nil, logger: Logger,
        onStuckChange: @escaping @Sendable (_ stuck: Int, _ detail: String?) -> Void = { _, _ in }
    ) {
        self.directory = directory
        // Only a name-safe id goes into a path (no '/', no '.', which separates the name's fields).
        self.replicaID = replicaID.flatMap { id in
            !id.isEmpty && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") } ? id : nil
        }
        self.filePermissions = filePermissions
        self.chunkSize = max(chunkSize, Self.minimumReadSize)
        self.hashAlgorithm = hashAlgorithm
        self.createsDirectory = createDirectory
        self.logger = logger
        self.directIO = directIO && directIOFlag != nil
        self.directIOFallbacks = Fallbacks(
            "the filesystem refuses direct I/O; uploads are written through the page cache", directory: directory,
            logger: logger)
        self.flushAfter = max(0, flushAfter)
        self.writeBehindFallbacks = Fallbacks(
            "sync_file_range is refused here; buffered uploads are written without write-behind", directory: directory,
            logger: logger)
        self.io = StoreIO(name: "imagestore.fs-io", threads: max(1, threads), timeout: timeout, onStuckChange: onStuckChange)
        _ = ProcessStart.time  // fix the reference time for the sweep as early as possible
    }

    /// Calls past their deadline that have not returned yet (each holds a thread).
    public var stuckCalls: Int { io.stuckCalls }

    /// The default of `directIO` (and of `filesystem_store_direct_io`).
    /// Off: with O_DIRECT a just-uploaded image is not in the page cache, and the bench's first download
    /// after an upload fell from 2.6 GB/s to 0.66 GB/s for no measurable CPU saving on a quiet machine.
    public static let defaultDirectIO = false

    /// Uploads written through the page cache although `directIO` is on, because the filesystem refused
    /// O_DIRECT.
    public var directIOFallbackCount: Int { directIOFallbacks.count }

    /// The default of `flushAfter` (16 MiB; `filesystem_store_flush_after = 16`). See docs/performance.md.
    public static let defaultFlushAfter = 16 << 20

    /// Buffered uploads written without write-behind although `flushAfter` is on, because the system
    /// refused `sync_file_range`.
    public var writeBehindFallbackCount: Int { writeBehindFallbacks.count }

    /// Creates the store directory when this store may (like glance_store for a plain directory), under
    /// the deadline: start-up calls it in the background until it answers.
    public func prepare() async throws {
        guard createsDirectory else { return }
        let directory = self.directory
        try await io.run("create \(directory)", context: .write) {
            // mkdir -p: each missing component in turn.
            var path = ""
            for component in directory.split(separator: "/") {
                path += "/" + component
                if mkdir(path, 0o755) != 0 && errno != EEXIST {
                    throw imageStoreError(errno: errno, "create \(path)", context: .write)
                }
            }
        }
    }

    private func path(of id: ImageID) -> String {
        directory + "/" + id.description
    }

    public func beginWrite(_ id: ImageID, expectedSize: Int64?) async throws -> any ImageDataWriter {
        let directory = self.directory
        let finalPath = path(of: id)
        let tag = replicaID.map { "." + $0 } ?? ""
        let directIO = self.directIO
        let fallbacks = self.directIOFallbacks
        let writeBehindFallbacks = self.writeBehindFallbacks
        let writeBehind = WriteBehind(
            window: flushAfter, call: syncFileRange, onRefused: { writeBehindFallbacks.record($0) })
        let file = try await io.run(
            "create a temporary file in \(directory)", context: .write,
            // Created after the caller gave up: nobody will write it.
            abandoned: { $0.discard() }
        ) { () throws -> TemporaryFile in
            var existing = stat()
            if stat(finalPath, &existing) == 0 {
                throw ImageStoreError.conflict("Image data for \(id) already exists")
            } else if errno != ENOENT {
                throw imageStoreError(errno: errno, "stat \(finalPath)", context: .write)
            }
            // A random suffix keeps concurrent attempts for one id apart; O_EXCL makes a clash an error
            // rather than a shared file, and another suffix is tried.
            for attempt in 1...3 {
                let tempPath = "\(directory)/.\(id)\(tag).\(String(UInt64.random(in: .min ... .max), radix: 16)).tmp"
                let fd = open(tempPath, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
                if fd >= 0 {
                    // Set after creating, not passed to open: a filesystem refusing O_DIRECT answers
                    // EINVAL from open after it created the file.
                    var direct = false
                    if directIO {
                        let code = setDirectIO(fd, true)
                        direct = code == 0
                        if !direct { fallbacks.record(code) }
                    }
                    return TemporaryFile(
                        fd: fd, directory: directory, tempPath: tempPath, finalPath: finalPath, direct: direct,
                        writeBehind: writeBehind, onDirectRefused: { fallbacks.record($0) })
                }
                let code = errno
                if code == EINTR || (code == EEXIST && attempt < 3) { continue }
                throw imageStoreError(errno: code, "create \(tempPath)", context: .write)
            }
            throw ImageStoreError.internal("could not create a temporary file for \(id)")
        }
        return FilesystemImageWriter(
            id: id, expectedSize: expectedSize, file: file, filePermissions: filePermissions, hashAlgorithm: hashAlgorithm,
            io: io, logger: logger)
    }

    public func read(_ id: ImageID, range: Range<Int64>?) async throws -> any ImageDataReader {
        let path = path(of: id)
        let (fd, size) = try await io.run(
            "open \(path)", context: .read, abandoned: { closeDescriptor($0.0) }
        ) { () throws -> (Int32, Int64) in
            let fd = try posixCall("open \(path)", context: .read) { open(path, O_RDONLY | O_CLOEXEC) }
            var status = stat()
            if fstat(fd, &status) != 0 {
                let code = errno
                close(fd)
                throw imageStoreError(errno: code, "stat \(path)", context: .read)
            }
            return (fd, Int64(status.st_size))
        }
        var bytes = 0..<size
        if let range {
            // The API validated the range against the size it knows; the file is the final word.
            guard range.lowerBound >= 0, range.lowerBound < size || (range.isEmpty && range.lowerBound == 0) else {
                io.submit { closeDescriptor(fd) }
                throw ImageStoreError(.rangeNotSatisfiable, "Range \(range) not satisfiable for \(size) bytes")
            }
            bytes = range.lowerBound..<min(range.upperBound, size)
        }
        let reader = FilesystemImageReader(fd: fd, bytes: bytes, chunkSize: chunkSize, io: io, path: path)
        // The first chunk before any header goes out: a share that does not answer is a 503 with
        // Retry-After, not a 200 followed by silence.
        try await reader.prefetchFirstChunk()
        return reader
    }

    public func size(_ id: ImageID) async throws -> Int64 {
        let path = path(of: id)
        return try await io.run("stat \(path)", context: .read) {
            let status = try fileStatus(path, context: .read)
            guard isRegularFile(status) else { throw ImageStoreError.notFound("No image data found for \(id)") }
            return Int64(status.st_size)
        }
    }

    @discardableResult
    public func delete(_ id: ImageID) async throws -> Bool {
        let path = path(of: id)
        let directory = self.directory
        return try await io.run("unlink \(path)", context: .write) {
            if unlink(path) != 0 {
                let code = errno
                if code == ENOENT { return false }
                throw imageStoreError(errno: code, "unlink \(path)", context: .write)
            }
            try fsyncDirectory(directory)
            return true
        }
    }

    public func storedIDs() async throws -> [ImageID] {
        let directory = self.directory
        return try await io.run("list \(directory)", context: .write) {
            try listDirectory(directory).compactMap { name in
                // Only canonical names are ours: an upper-case alias would never be read back.
                guard let id = ImageID(name), id.description == name else { return nil }
                return id
            }.sorted()
        }
    }

    /// Removes temporary files older than this process (left by a crash of an earlier one), of any
    /// replica: only right for a store that one replica uses (see `ImageService.recoverAfterRestart`).
    @discardableResult
    public func sweepTemporaryFiles() async throws -> Int {
        let startedAt = Date(timeIntervalSince1970: ProcessStart.time)
        return try await sweepTemporaryFiles { $0.modified < startedAt }
    }

    @discardableResult
    public func sweepTemporaryFiles(where shouldRemove: @escaping @Sendable (TemporaryFileInfo) -> Bool) async throws -> Int {
        let directory = self.directory
        let logger = self.logger
        return try await io.run("sweep \(directory)", context: .write) {
            var removed = 0
            for name in try listDirectory(directory) where name.hasPrefix(".") && name.hasSuffix(".tmp") {
                let path = "\(directory)/\(name)"
                guard !ActiveTemporaryFiles.contains(path) else { continue }
                guard let status = try? fileStatus(path, context: .read), isRegularFile(status) else { continue }
                let modified = Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9
                let info = Self.temporaryFileInfo(name, modified: Date(timeIntervalSince1970: modified))
                guard shouldRemove(info) else { continue }
                if unlink(path) == 0 {
                    removed += 1
                    logger.info("removed stale temporary file", metadata: ["path": "\(path)"])
                } else if errno != ENOENT {
                    logger.warning(
                        "cannot remove stale temporary file",
                        metadata: ["path": "\(path)", "errno": "\(errno)"])
                }
            }
            if removed > 0 { try fsyncDirectory(directory) }
            return removed
        }
    }

    /// `.<id>.<replica>.<random>.tmp`, or `.<id>.<random>.tmp` from before replica ids.
    static func temporaryFileInfo(_ name: String, modified: Date) -> TemporaryFileInfo {
        let fields = name.dropFirst().dropLast(4).split(separator: ".", omittingEmptySubsequences: false)
        let imageID = fields.first.flatMap { ImageID(String($0)) }
        let replica = fields.count == 3 ? String(fields[1]) : nil
        return TemporaryFileInfo(imageID: imageID, replica: replica, modified: modified)
    }

    public func capacity() async throws -> StoreCapacity {
        let directory = self.directory
        return try await io.run("statvfs \(directory)", context: .write) {
            var info = statvfs()
            try posixCall("statvfs \(directory)", context: .write) { statvfs(directory, &info) }
            let fragment = Int64(info.f_frsize)
            return StoreCapacity(totalBytes: Int64(info.f_blocks) * fragment, freeBytes: Int64(info.f_bavail) * fragment)
        }
    }
}

/// Counts the uploads a store wrote the plain way because the system refused an optimisation (O_DIRECT:
/// tmpfs before Linux 6.6, ramfs, some FUSE; sync_file_range: a seccomp filter, a non-Linux system), and
/// logs the first: the fallback is the system's, not an error.
final class Fallbacks: Sendable {
    private let recorded = Atomic(0)
    private let message: String
    private let directory: String
    private let logger: Logger

    init(_ message: String, directory: String, logger: Logger) {
        self.message = message
        self.directory = directory
        self.logger = logger
    }

    var count: Int { recorded.load(ordering: .relaxed) }

    func record(_ code: Int32) {
        guard recorded.add(1, ordering: .relaxed).oldValue == 0 else { return }
        logger.info("\(message)", metadata: ["directory": "\(directory)", "errno": "\(code)"])
    }
}

/// Streams a byte range of an open file in chunks, reading one chunk ahead on the store's threads
/// while the consumer handles the current one. Each read is under the store's deadline: a stall
/// mid-body throws (the server cuts the connection, the client sees a short body).
final class FilesystemImageReader: ImageDataReader {
    let length: Int64
    private let start: Int64
    private let chunkSize: Int
    private let io: StoreIO
    private let path: String
    private let descriptor: FileDescriptorBox
    /// The first chunk, read by the store before the response starts.
    private let prefetched = Mutex<ByteBuffer?>(nil)

    init(fd: Int32, bytes: Range<Int64>, chunkSize: Int, io: StoreIO, path: String) {
        self.descriptor = FileDescriptorBox(fd)
        self.start = bytes.lowerBound
        self.length = Int64(bytes.count)
        self.chunkSize = chunkSize
        self.io = io
        self.path = path
    }

    deinit {
        // Dropped without close: do not leak the descriptor. Closed on the store's threads, since a
        // close on NFS is a round trip and deinit may run on an event loop.
        let descriptor = self.descriptor
        io.submit { descriptor.close() }
    }

    func prefetchFirstChunk() async throws {
        guard length > 0 else { return }
        do {
            let first = try await readChunk(at: start, count: Int(min(Int64(chunkSize), length)))
            prefetched.withLock { $0 = first }
        } catch {
            await close()
            throw error
        }
    }

    func forEachChunk(_ body: @Sendable (ByteBuffer) async throws -> Void) async throws {
        try await stream(credits: nil, body)
    }

    func forEachChunk(heldAtMost limit: Int, _ body: @Sendable (ByteBuffer) async throws -> Void) async throws {
        try await stream(credits: BufferCredits(limit), body)
    }

    private func stream(credits: BufferCredits?, _ body: @Sendable (ByteBuffer) async throws -> Void) async throws {
        if descriptor.isClosed { throw ImageStoreError.internal("read of \(path) after close") }
        do {
            let end = start + length
            var offset = start
            if offset < end {
                var current: ByteBuffer
                // Bound only inside the `if`: a binding alive for the whole loop would keep the first
                // chunk, and its slot, until the end of the download (debug builds keep locals to the end
                // of their scope) and the read ahead would wait for it forever.
                if let first = prefetched.withLock({ $0.take() }) {
                    // Read before the response started, without a slot: it takes one now, so a download
                    // holds at most `limit` chunks in all (it held one more: 8 MiB of 8 downloads' peak).
                    if let credits {
                        await credits.acquire()
                        LargeBufferPool.attach(credits, to: first)
                    }
                    current = first
                } else {
                    current = try await readChunk(
                        at: offset, count: Int(min(Int64(chunkSize), end - offset)), credits: credits)
                }
                while true {
                    offset += Int64(current.readableBytes)
                    if offset >= end {
                        try await body(current)
                        break
                    }
                    let next = offset
                    async let ahead = readChunk(
                        at: next, count: Int(min(Int64(chunkSize), end - next)), credits: credits)
                    try await body(current)
                    // Let the sent chunk go before waiting: its slot may be the one the read ahead needs.
                    _ = consume current
                    current = try await ahead
                }
            }
        } catch {
            await close()
            throw error
        }
        await close()
    }

    func close() async {
        // Reads fail from now on; the close itself is queued and never waits on a hung share.
        descriptor.markClosed()
        let descriptor = self.descriptor
        io.submit { descriptor.close() }
    }

    private func readChunk(
        at offset: Int64, count: Int, credits: BufferCredits?
    ) async throws -> ByteBuffer {
        await credits?.acquire()
        let buffer = try await readChunk(at: offset, count: count)
        if let credits { LargeBufferPool.attach(credits, to: buffer) }
        return buffer
    }

    private func readChunk(at offset: Int64, count: Int) async throws -> ByteBuffer {
        let path = self.path
        let descriptor = self.descriptor
        return try await io.run("read \(path)", context: .read) {
            try descriptor.withOpen { fd in
                guard let fd else { throw ImageStoreError.internal("read of \(path) after close") }
                var buffer = LargeBufferPool.allocator.buffer(capacity: count)
                var done = 0
                while done < count {
                    let n = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count - done) { target in
                        try posixCall("read \(path)", context: .read) {
                            pread(fd, target.baseAddress!, count - done, off_t(offset) + off_t(done))
                        }
                    }
                    if n == 0 {
                        // The file shrank under us: it is not the image it was when opened.
                        throw ImageStoreError.internal("unexpected end of \(path) at \(offset + Int64(done))")
                    }
                    done += n
                }
                return buffer
            }
        }
    }
}

/// A read descriptor shared by a reader and its queued clean-up. The lock is held across `pread`, so a
/// concurrent close cannot free the descriptor (and let it be reused) under a read; only store threads
/// ever take it.
final class FileDescriptorBox: Sendable {
    private let fd: Mutex<Int32>
    /// Set by the reader's `close` at once, while the close itself may still be queued.
    private let closing = Atomic(false)

    init(_ fd: Int32) { self.fd = Mutex(fd) }

    func markClosed() { closing.store(true, ordering: .releasing) }
    var isClosed: Bool { closing.load(ordering: .acquiring) }

    /// `body` gets nil once the reader was closed.
    func withOpen<T>(_ body: (Int32?) throws -> T) rethrows -> T {
        try fd.withLock { fd in try body(fd >= 0 && !closing.load(ordering: .acquiring) ? fd : nil) }
    }

    /// Idempotent.
    func close() {
        fd.withLock { fd in
            if fd >= 0 { closeDescriptor(fd) }
            fd = -1
        }
    }
}

/// When this process started using a store: temporary files older than this were left by an earlier
/// process (the first store is created at start-up, so this is the process start for the server).
enum ProcessStart {
    static let time: Double = {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }()
}
