#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ImageStoreCore
import Logging
import NIOCore
import Synchronization

/// The open temporary file of one upload. Touched only on the upload's file thread (every access is
/// an item on that serial executor), hence `@unchecked Sendable`.
///
/// With direct I/O (`filesystem_store_direct_io`) the descriptor has O_DIRECT: full batches go from the
/// pool's page-aligned blocks to the disk without the kernel copying them into the page cache (that
/// copy was ~1.4 s of CPU per GiB). O_DIRECT needs the memory, the length and the file offset aligned,
/// so only the aligned part of a write goes direct; the rest (the upload's last partial page) is written
/// after turning O_DIRECT off on the same descriptor, and the file stays buffered from then on.
///
/// Buffered, with write-behind (`filesystem_store_flush_after`): each time a window of the file is
/// complete, its writeback is started and the window before it is waited for (`sync_file_range`), so
/// an upload leaves at most about two windows dirty in the page cache and the fsync before publishing,
/// which runs under the deadline, has only that left to write instead of the whole image.
final class TemporaryFile: @unchecked Sendable {
    /// Alignment of direct writes: a page satisfies every logical block size up to 4 KiB.
    static let directIOAlignment = 4096

    let directory: String
    let tempPath: String
    let finalPath: String
    private var fd: Int32
    /// Set once `publish` renamed the data into place.
    private var published = false
    /// Whether the descriptor has O_DIRECT now.
    private(set) var isDirect: Bool
    /// Bytes written so far (the offset of the next write).
    private var written = 0
    /// Page-aligned copy space for a batch whose memory is not aligned (a large incoming buffer is
    /// sliced into batches, not copied); made on first need.
    private var bounce: ByteBuffer?
    /// Told when the filesystem refuses a direct write (errno) and the file falls back to buffered writes.
    private let onDirectRefused: @Sendable (Int32) -> Void
    /// The write-behind window in bytes; 0: none (off, direct I/O, or refused by the system).
    private var flushWindow: Int
    /// Writeback was started for every byte below this offset (a multiple of `flushWindow`).
    private var flushStarted = 0
    private let writeBehind: WriteBehind

    init(
        fd: Int32, directory: String, tempPath: String, finalPath: String, direct: Bool = false,
        writeBehind: WriteBehind = .off, onDirectRefused: @escaping @Sendable (Int32) -> Void = { _ in }
    ) {
        self.fd = fd
        self.directory = directory
        self.tempPath = tempPath
        self.finalPath = finalPath
        self.isDirect = direct
        self.onDirectRefused = onDirectRefused
        self.writeBehind = writeBehind
        // Direct writes leave nothing dirty but the last partial page.
        self.flushWindow = direct ? 0 : writeBehind.window
    }

    func write(_ buffer: ByteBuffer) throws {
        guard fd >= 0 else { throw ImageStoreError.internal("write to a closed temporary file \(tempPath)") }
        try buffer.withUnsafeReadableBytes { bytes in
            var rest = bytes[...]
            if isDirect { rest = try writeDirect(bytes) }
            if !rest.isEmpty {
                try writeAll(fd, UnsafeRawBufferPointer(rebasing: rest), "write \(tempPath)")
                written += rest.count
            }
        }
        if flushWindow > 0 { try flushBehind() }
    }

    /// For each window completed since the last call: start its writeback, then wait for the window
    /// before it (started one window ago, so usually already written). Runs on the file thread as part
    /// of a batch's write, so it is under the pipeline's deadline like the write itself.
    private func flushBehind() throws {
        let window = flushWindow
        while written - flushStarted >= window {
            let start = flushStarted
            guard try syncRange(start, window, SyncFileRange.write) else { return }
            if start >= window {
                let flags = SyncFileRange.waitBefore | SyncFileRange.write | SyncFileRange.waitAfter
                guard try syncRange(start - window, window, flags) else { return }
            }
            flushStarted = start + window
        }
    }

    /// One `sync_file_range`; false when the system refuses it (write-behind is then off for this file,
    /// reported once per store). Any other error fails the upload: the kernel reports a writeback error
    /// once per descriptor, so one swallowed here would not be seen by the fsync.
    private func syncRange(_ offset: Int, _ length: Int, _ flags: UInt32) throws -> Bool {
        while true {
            let code = writeBehind.call(fd, Int64(offset), Int64(length), flags)
            if code == 0 { return true }
            if code == EINTR { continue }
            if SyncFileRange.isRefusal(code) {
                flushWindow = 0
                writeBehind.onRefused(code)
                return false
            }
            throw imageStoreError(errno: code, "sync_file_range \(tempPath)", context: .write)
        }
    }

    /// Writes the aligned part of `bytes` with O_DIRECT; returns what is left for a buffered write.
    private func writeDirect(_ bytes: UnsafeRawBufferPointer) throws -> Slice<UnsafeRawBufferPointer> {
        let alignment = Self.directIOAlignment
        let length = written % alignment == 0 ? bytes.count & ~(alignment - 1) : 0
        var done = 0
        while done < length {
            let chunk = UnsafeRawBufferPointer(rebasing: bytes[done..<length])
            let count: Int?
            if Int(bitPattern: chunk.baseAddress) % alignment == 0 {
                count = try directWrite(chunk)
            } else {
                count = try directWriteThroughBounce(chunk)
            }
            guard let count else {
                try stopDirect()
                return bytes[done...]
            }
            done += count
            written += count
            // A short write left the offset unaligned: the rest cannot go direct.
            if count % alignment != 0 {
                try stopDirect()
                return bytes[done...]
            }
        }
        if length < bytes.count { try stopDirect() }
        return bytes[length...]
    }

    /// One direct write; nil when the filesystem refuses it (EINVAL), which is reported.
    private func directWrite(_ chunk: UnsafeRawBufferPointer) throws -> Int? {
        while true {
            let count = writeOnce(fd, chunk)
            if count >= 0 { return count }
            let code = errno
            if code == EINTR { continue }
            if code == EINVAL {
                onDirectRefused(code)
                return nil
            }
            throw imageStoreError(errno: code, "write \(tempPath)", context: .write)
        }
    }

    private func directWriteThroughBounce(_ chunk: UnsafeRawBufferPointer) throws -> Int? {
        if bounce == nil { bounce = LargeBufferPool.allocator.buffer(capacity: LargeBufferPool.blockSize) }
        let count = min(chunk.count, LargeBufferPool.blockSize)
        return try bounce!.withUnsafeMutableWritableBytes { space in
            space.baseAddress!.copyMemory(from: chunk.baseAddress!, byteCount: count)
            return try directWrite(UnsafeRawBufferPointer(start: space.baseAddress!, count: count))
        }
    }

    /// Writes through the page cache from here on.
    private func stopDirect() throws {
        isDirect = false
        bounce = nil
        let code = setDirectIO(fd, false)
        if code != 0 { throw imageStoreError(errno: code, "clear O_DIRECT on \(tempPath)", context: .write) }
    }

    /// fsync, permissions, close: after this the bytes are durable under the temporary name.
    /// Returns how long the fsync took (logged at debug: with write-behind it stays small).
    func makeDurable(permissions: Int) throws -> Duration {
        guard fd >= 0 else { throw ImageStoreError.internal("temporary file \(tempPath) already closed") }
        let fsyncTime = try ContinuousClock().measure {
            try posixCall("fsync \(tempPath)", context: .write) { fsync(fd) }
        }
        if permissions > 0 {
            try posixCall("chmod \(tempPath)", context: .write) { fchmod(fd, mode_t(permissions)) }
        }
        let closing = fd
        fd = -1
        bounce = nil
        try closeFile(closing, "close \(tempPath)")
        return fsyncTime
    }

    /// Publishes the data under the image id, never replacing existing data, and makes the new name
    /// durable. Either the data is published durably or nothing is published.
    func publish() throws {
        try renameNoReplace(tempPath, finalPath)
        published = true
        do {
            try fsyncDirectory(directory)
        } catch {
            // The caller will treat the commit as failed and not delete the image's data: do not
            // leave a published file nobody accounts for.
            _ = unlink(finalPath)
            published = false
            throw error
        }
    }

    /// Closes and removes the temporary file. Touches the committed name only when this upload published
    /// it and then failed (its publish answered after the deadline, so the upload was refused): that
    /// file is an orphan no image points to. Idempotent.
    func discard() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        bounce = nil
        // Best effort: a temp that cannot be removed now (store gone) is removed by the start-up sweep.
        _ = unlink(tempPath)
        if published {
            _ = unlink(finalPath)
            published = false
            try? fsyncDirectory(directory)
        }
    }
}

/// Runs the three stages of an upload in parallel: writing the file, md5, the `os_hash_value` digest. Each stage has its
/// own serial thread and receives the same immutable batch (ByteBuffer storage is shared, not copied).
/// At most `maxInFlight` batches are queued at once; `submit` waits beyond that (backpressure), so
/// memory stays at a few MiB per upload whatever the image size.
final class UploadPipeline: Sendable {
    static let maxInFlight = 4

    let file: TemporaryFile
    /// Deadlines and the count of stuck calls, shared with the store.
    private let io: StoreIO
    private let fileThread: BlockingExecutor
    private let md5Thread: BlockingExecutor
    private let multihashThread: BlockingExecutor
    private let md5 = DigestBox(Digest.md5())
    private let multihash: DigestBox<MultihashDigest>

    private struct State {
        var inFlight = 0
        /// The first failure (a write error, or cancellation by abort); later batches are skipped.
        var failure: (any Error)?
        var waiter: (threshold: Int, continuation: CheckedContinuation<Void, any Error>)?
        /// A call on the file thread overran the deadline (the share hangs).
        var stuck = false
    }
    private let state = Mutex(State())

    init(file: TemporaryFile, id: ImageID, hashAlgorithm: HashAlgorithm, io: StoreIO) {
        self.file = file
        self.io = io
        multihash = DigestBox(MultihashDigest(hashAlgorithm))
        let label = "imagestore.upload.\(id.description.prefix(8))"
        fileThread = BlockingExecutor(threads: 1, name: "\(label).file")
        md5Thread = BlockingExecutor(threads: 1, name: "\(label).md5")
        multihashThread = BlockingExecutor(threads: 1, name: "\(label).\(hashAlgorithm.rawValue)")
    }

    /// Queues one batch on all three stages, waiting first while the pipeline is full.
    func submit(_ batch: ByteBuffer) async throws {
        try await waitWithDeadline(inFlightAtMost: Self.maxInFlight - 1)
        state.withLock { $0.inFlight += 1 }
        let completion = BatchCompletion(pipeline: self)
        let file = self.file
        fileThread.submit {
            if !self.hasFailed {
                do { try file.write(batch) } catch { self.fail(error) }
            }
            completion.stageDone()
        }
        let md5 = self.md5
        md5Thread.submit {
            if !self.hasFailed { md5.digest.update(batch) }
            completion.stageDone()
        }
        let multihash = self.multihash
        multihashThread.submit {
            if !self.hasFailed { multihash.digest.update(batch) }
            completion.stageDone()
        }
    }

    /// Waits until every queued batch is written and hashed; throws the first failure.
    func drain() async throws {
        try await waitWithDeadline(inFlightAtMost: 0)
    }

    /// After `drain`: the digests.
    func digests() async throws -> (md5: Digest, multihash: MultihashDigest) {
        let md5 = self.md5
        let multihash = self.multihash
        async let md5Value = md5Thread.run { md5.digest }
        async let multihashValue = multihashThread.run { multihash.digest }
        let result = try await (md5Value, multihashValue)
        md5Thread.close()
        multihashThread.close()
        return result
    }

    /// Runs blocking work on the file thread, after every write queued before it, under the store's
    /// deadline. Work past the deadline still runs (it is queued); its caller gets the store-unavailable
    /// error at the deadline.
    func onFileThread<T: Sendable>(
        _ what: String, _ body: @escaping @Sendable (TemporaryFile) throws -> T
    ) async throws -> T {
        let file = self.file
        let fileThread = self.fileThread
        let answer = await value(within: io.timeout) { () -> Result<T, any Error> in
            do { return .success(try await fileThread.run { try body(file) }) } catch { return .failure(error) }
        }
        if let answer { return try answer.get() }
        try Task.checkCancellation()
        throw stuck("\(what) \(file.tempPath)")
    }

    /// Waits for room in the pipeline; no progress within the deadline means the file (a write on a
    /// hung share) is stuck: the upload fails with the store-unavailable error and the store is told.
    private func waitWithDeadline(inFlightAtMost threshold: Int) async throws {
        // Room already: no wait, so no deadline to race (the race is two tasks and a timer per batch).
        let ready = state.withLock { state -> Result<Void, any Error>? in
            if let failure = state.failure { return .failure(failure) }
            return state.inFlight <= threshold ? .success(()) : nil
        }
        if let ready { return try ready.get() }
        // Not cancelled at the deadline: `fail` below ends the wait with the real error instead.
        let answer = await value(within: io.timeout) { () -> Result<Void, any Error> in
            do { return .success(try await self.waitUntil(inFlightAtMost: threshold)) } catch { return .failure(error) }
        }
        if let answer { return try answer.get() }
        try Task.checkCancellation()
        let error = stuck("write \(file.tempPath)")
        fail(error)
        throw error
    }

    /// Counts the file thread as stuck until everything queued on it so far has returned.
    private func stuck(_ what: String) -> ImageStoreError {
        state.withLock { $0.stuck = true }
        let release = io.uploadStuck(what)
        fileThread.submit { release() }
        return io.timedOut(what, context: .write)
    }

    /// Stops the pipeline: queued batches are skipped, a waiting `submit`/`drain` throws.
    func cancel(_ error: any Error) {
        fail(error)
    }

    /// Lets the threads exit once their queues are empty.
    func shutDown() {
        fileThread.close()
        md5Thread.close()
        multihashThread.close()
    }

    /// Removes the temporary file behind any pending writes; waits for that at most the deadline, and
    /// not at all when a call on the file thread already overran it (the removal would only queue behind
    /// the hung call and spend a second deadline before the client hears 410).
    func discard() async {
        let file = self.file
        let fileThread = self.fileThread
        guard !state.withLock({ $0.stuck }) else {
            fileThread.submit { file.discard() }
            return
        }
        _ = await value(within: io.timeout) { try? await fileThread.run { file.discard() } }
    }

    /// Queues the removal of the temporary file behind any pending writes, without waiting (deinit).
    func discardInBackground() {
        let file = self.file
        fileThread.submit { file.discard() }
    }

    private var hasFailed: Bool {
        state.withLock { $0.failure != nil }
    }

    private func fail(_ error: any Error) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            if state.failure == nil { state.failure = error }
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume(throwing: error)
    }

    fileprivate func batchDone() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            state.inFlight -= 1
            guard let waiter = state.waiter, state.inFlight <= waiter.threshold else { return nil }
            state.waiter = nil
            return waiter.continuation
        }
        waiter?.resume()
    }

    private func waitUntil(inFlightAtMost threshold: Int) async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { state -> Result<Void, any Error>? in
                    if let failure = state.failure { return .failure(failure) }
                    if state.inFlight <= threshold { return .success(()) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.waiter = (threshold, continuation)
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                defer { state.waiter = nil }
                return state.waiter?.continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}

/// A running digest owned by one hashing thread (only ever touched there), hence `@unchecked Sendable`.
private final class DigestBox<Digest>: @unchecked Sendable {
    var digest: Digest
    init(_ digest: Digest) { self.digest = digest }
}

/// Counts the three stages of one batch; the last one frees its pipeline slot.
private final class BatchCompletion: Sendable {
    private let remaining = Atomic(3)
    private let pipeline: UploadPipeline

    init(pipeline: UploadPipeline) {
        self.pipeline = pipeline
    }

    func stageDone() {
        if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            pipeline.batchDone()
        }
    }
}

/// One upload into the filesystem store.
///
/// Small incoming buffers are coalesced into ~1 MiB batches (large ones are sliced, without copying)
/// before entering the pipeline, so per-batch overhead stays negligible. Any failure removes the
/// temporary file at once; `abort` is still safe (and idempotent) afterwards.
final class FilesystemImageWriter: ImageDataWriter {
    static let batchSize = 1 << 20

    private enum Phase {
        case writing
        case finished(StagedImageData)
        case committed
        case closed  // aborted or failed: nothing is left on disk
    }

    private struct State {
        var phase = Phase.writing
        var tracker: SizeTracker
        var pending: ByteBuffer?
    }

    private let id: ImageID
    private let pipeline: UploadPipeline
    private let filePermissions: Int
    private let logger: Logger
    private let state: Mutex<State>
    private let allocator = LargeBufferPool.allocator

    init(
        id: ImageID, expectedSize: Int64?, file: TemporaryFile, filePermissions: Int, hashAlgorithm: HashAlgorithm,
        io: StoreIO, logger: Logger
    ) {
        self.id = id
        self.pipeline = UploadPipeline(file: file, id: id, hashAlgorithm: hashAlgorithm, io: io)
        self.filePermissions = filePermissions
        self.logger = logger
        self.state = Mutex(State(tracker: SizeTracker(expectedSize: expectedSize)))
        ActiveTemporaryFiles.insert(file.tempPath)
    }

    deinit {
        // Safety net for a writer dropped without commit or abort: the temp file must not stay.
        let unfinished = state.withLock { state -> Bool in
            switch state.phase {
            case .committed, .closed: return false
            case .writing, .finished: return true
            }
        }
        if unfinished {
            logger.warning(
                "upload writer dropped without commit or abort; removing its temporary file",
                metadata: ["image_id": "\(id)"])
            pipeline.cancel(CancellationError())
            pipeline.discardInBackground()
        }
        pipeline.shutDown()
        ActiveTemporaryFiles.remove(pipeline.file.tempPath)
    }

    func write(_ buffer: ByteBuffer) async throws {
        let batches: [ByteBuffer]
        do {
            batches = try state.withLock { state in
                guard case .writing = state.phase else {
                    throw ImageStoreError.internal("write after the upload of \(id) was finished or aborted")
                }
                try state.tracker.add(buffer.readableBytes)
                return coalesce(buffer, into: &state.pending)
            }
            for batch in batches {
                try await pipeline.submit(batch)
            }
        } catch {
            await fail()
            throw error
        }
    }

    func finish() async throws -> StagedImageData {
        do {
            let (size, last) = try state.withLock { state in
                guard case .writing = state.phase else {
                    throw ImageStoreError.internal("finish of the upload of \(id) called twice or after abort")
                }
                try state.tracker.checkComplete()
                defer { state.pending = nil }
                return (state.tracker.received, state.pending)
            }
            if let last { try await pipeline.submit(last) }
            try await pipeline.drain()
            let permissions = filePermissions
            let fsyncTime = try await pipeline.onFileThread("fsync") { try $0.makeDurable(permissions: permissions) }
            logger.debug(
                "upload fsynced",
                metadata: [
                    "image_id": "\(id)", "size": "\(size)",
                    "fsync_ms": "\((fsyncTime.fractionalMilliseconds * 10).rounded() / 10)",
                ])
            let (md5, multihash) = try await pipeline.digests()
            let staged = UploadHasher.staged(size: size, md5: md5, multihash: multihash)
            try state.withLock { state in
                guard case .writing = state.phase else { throw ImageStoreError.internal("upload of \(id) aborted") }
                state.phase = .finished(staged)
            }
            return staged
        } catch {
            await fail()
            throw error
        }
    }

    func commit() async throws {
        try state.withLock { state in
            guard case .finished = state.phase else {
                throw ImageStoreError.internal("commit of \(id) before finish, or after abort")
            }
        }
        do {
            try await pipeline.onFileThread("publish") { try $0.publish() }
        } catch {
            await fail()
            throw error
        }
        state.withLock { $0.phase = .committed }
        pipeline.shutDown()
        ActiveTemporaryFiles.remove(pipeline.file.tempPath)
    }

    func abort() async {
        await fail()
    }

    /// Stops the pipeline and removes the temporary file, once.
    private func fail() async {
        let shouldDiscard = state.withLock { state -> Bool in
            switch state.phase {
            case .committed, .closed: return false
            case .writing, .finished:
                state.phase = .closed
                state.pending = nil
                return true
            }
        }
        guard shouldDiscard else { return }
        pipeline.cancel(ImageStoreError.internal("upload of \(id) aborted"))
        // Queued behind any pending write, so the descriptor is not closed under a running write; on a
        // hung share it runs (removing the temporary file) once the share answers again.
        await pipeline.discard()
        pipeline.shutDown()
        ActiveTemporaryFiles.remove(pipeline.file.tempPath)
    }

    /// Appends `buffer` to the pending batch; returns the batches that are full. Large buffers are
    /// sliced (shared storage, no copy); only the remainder of a buffer is copied.
    private func coalesce(_ buffer: ByteBuffer, into pending: inout ByteBuffer?) -> [ByteBuffer] {
        var input = buffer
        var full: [ByteBuffer] = []
        if var batch = pending {
            let take = min(Self.batchSize - batch.readableBytes, input.readableBytes)
            var head = input.readSlice(length: take)!
            batch.writeBuffer(&head)
            if batch.readableBytes >= Self.batchSize {
                full.append(batch)
                pending = nil
            } else {
                pending = batch
                return full
            }
        }
        while input.readableBytes >= Self.batchSize {
            full.append(input.readSlice(length: Self.batchSize)!)
        }
        if input.readableBytes > 0 {
            var batch = allocator.buffer(capacity: Self.batchSize)
            batch.writeBuffer(&input)
            pending = batch
        }
        return full
    }
}

/// Temporary files of uploads in progress in this process, which the sweep must never remove (an NFS
/// server's clock may make a fresh file look older than the process).
enum ActiveTemporaryFiles {
    private static let paths = Mutex<Set<String>>([])

    static func insert(_ path: String) { _ = paths.withLock { $0.insert(path) } }
    static func remove(_ path: String) { _ = paths.withLock { $0.remove(path) } }
    static func contains(_ path: String) -> Bool { paths.withLock { $0.contains(path) } }
}
