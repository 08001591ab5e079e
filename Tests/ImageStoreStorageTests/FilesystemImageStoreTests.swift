import ImageStoreTestSupport
import Crypto
import Foundation
import ImageStoreCore
import ImageStoreStorage
import Logging
import NIOCore
import Synchronization
import Testing

/// What only the filesystem store has: temporary files, permissions, and real I/O failures.
@Suite struct FilesystemImageStoreTests {
    private func makeStore(_ directory: String, filePermissions: Int = 0) -> FilesystemImageStore {
        FilesystemImageStore(directory: directory, filePermissions: filePermissions, logger: testLogger)
    }

    private func setModificationDate(_ path: String, secondsAgo: TimeInterval) throws {
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSinceNow: -secondsAgo)], ofItemAtPath: path)
    }

    @Test func write_inProgress_usesHiddenTemporaryFileNamedAfterImage() async throws {
        try await withStore(.filesystem) { fixture in
            let id = ImageID()
            let writer = try await fixture.store.beginWrite(id, expectedSize: nil)
            try await writer.write(ByteBuffer(bytes: randomBytes(10)))

            let names = try fixture.filesOnDisk()
            #expect(names.count == 1)
            let name = try #require(names.first)
            #expect(name.hasPrefix(".\(id.description)."))
            #expect(name.hasSuffix(".tmp"))
            await writer.abort()
            #expect(try fixture.filesOnDisk() == [])
        }
    }

    @Test func sweepTemporaryFiles_removesOnlyStaleTemporaryFiles() async throws {
        try await withStore(.filesystem) { fixture in
            let directory = try #require(fixture.directory)
            let kept = ImageID()
            try await upload(fixture.store, kept, randomBytes(100))

            // Left by an earlier process: older than this one.
            let stale = "\(directory)/.\(ImageID()).0123abcd.tmp"
            #expect(FileManager.default.createFile(atPath: stale, contents: Data([1, 2, 3])))
            try setModificationDate(stale, secondsAgo: 3600)
            // Newer than this process: may be another upload of ours.
            let fresh = "\(directory)/.\(ImageID()).4567cdef.tmp"
            #expect(FileManager.default.createFile(atPath: fresh, contents: Data([4])))
            // Not a temporary file at all.
            let other = "\(directory)/.keep"
            #expect(FileManager.default.createFile(atPath: other, contents: Data()))
            try setModificationDate(other, secondsAgo: 3600)
            // An upload in progress whose file looks old (an NFS server clock behind ours).
            let active = ImageID()
            let bytes = randomBytes(5000)
            let writer = try await fixture.store.beginWrite(active, expectedSize: Int64(bytes.count))
            try await writer.write(ByteBuffer(bytes: bytes[0..<1000]))
            let activeTemp = try #require(try fixture.filesOnDisk().first { $0.hasPrefix(".\(active.description).") })
            try setModificationDate("\(directory)/\(activeTemp)", secondsAgo: 3600)

            #expect(try await fixture.store.sweepTemporaryFiles() == 1)

            #expect(!FileManager.default.fileExists(atPath: stale))
            #expect(FileManager.default.fileExists(atPath: fresh))
            #expect(FileManager.default.fileExists(atPath: other))
            #expect(FileManager.default.fileExists(atPath: "\(directory)/\(activeTemp)"))
            try await writer.write(ByteBuffer(bytes: bytes[1000...]))
            _ = try await writer.finish()
            try await writer.commit()
            #expect(try await readAll(fixture.store, active) == bytes)
            #expect(try await fixture.store.storedIDs() == [kept, active].sorted())
        }
    }

    @Test func commit_withFilePermissions_appliesThem() async throws {
        try await withStore(.filesystem, filePermissions: 0o640) { fixture in
            let directory = try #require(fixture.directory)
            let id = ImageID()
            try await upload(fixture.store, id, randomBytes(10))

            let attributes = try FileManager.default.attributesOfItem(atPath: "\(directory)/\(id)")
            let permissions = try #require(attributes[.posixPermissions] as? NSNumber)
            #expect(permissions.intValue == 0o640)
        }
    }

    @Test func writer_droppedWithoutCommitOrAbort_removesItsTemporaryFile() async throws {
        try await withStore(.filesystem) { fixture in
            do {
                let writer = try await fixture.store.beginWrite(ImageID(), expectedSize: nil)
                try await write(randomBytes(3 * 1024 * 1024), to: writer, chunkSize: 256 * 1024)
                #expect(try fixture.filesOnDisk().count == 1)
            }
            // The removal is queued behind the writes on the upload's own thread and there is no event
            // to await from outside: poll, bounded.
            let deadline = ContinuousClock.now + .seconds(10)
            while try !fixture.filesOnDisk().isEmpty && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(try fixture.filesOnDisk() == [])
        }
    }

    @Test func commit_whenDirectoryRemovedDuringWrite_throwsStoreUnavailable() async throws {
        let parent = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let directory = "\(parent)/images"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let store = makeStore(directory)
        let id = ImageID()
        let writer = try await store.beginWrite(id, expectedSize: nil)
        try await writer.write(ByteBuffer(bytes: randomBytes(100_000)))

        try FileManager.default.removeItem(atPath: directory)

        await expectError(.storeUnavailable) {
            try await writer.write(ByteBuffer(bytes: randomBytes(100_000)))
            _ = try await writer.finish()
            try await writer.commit()
        }
        await writer.abort()
        await expectError(.storeUnavailable) { _ = try await store.beginWrite(ImageID(), expectedSize: nil) }
        await expectError(.notFound) { _ = try await store.size(id) }
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    @Test func write_whenFilesystemIsFull_throwsStorageFullAndLeavesNothing() async throws {
        try await withTmpfs(sizeBytes: 2 << 20) { directory in
            let store = makeStore(directory)
            #expect(try await store.capacity().totalBytes == 2 * 1024 * 1024)
            let small = ImageID()
            try await upload(store, small, randomBytes(100_000))

            let writer = try await store.beginWrite(ImageID(), expectedSize: nil)
            let error = await expectError(.storageFull) {
                try await write(randomBytes(5 * 1024 * 1024), to: writer, chunkSize: 64 * 1024)
                _ = try await writer.finish()
            }
            #expect(error?.message.hasPrefix("Image storage media is full: ") == true)
            await writer.abort()

            #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == [small.description])
            #expect(try await store.size(small) == 100_000)
        }
    }

    /// With direct I/O on, the upload's descriptor has O_DIRECT on a filesystem that takes it
    /// (the test directory is on ext4 here); the last partial page is written buffered and the file is exact.
    @Test func directIO_onADiskFilesystem_writesWithODirect() async throws {
        let recorder = RecordingLogHandler()
        try await withStore(.filesystem) { fixture in
            let directory = try #require(fixture.directory)
            let store = FilesystemImageStore(directory: directory, directIO: true, logger: Logger(label: "test") { _ in recorder })
            #expect(store.directIO)
            let id = ImageID()
            let bytes = randomBytes((2 << 20) + 4097)
            let writer = try await store.beginWrite(id, expectedSize: Int64(bytes.count))
            let temporary = try #require(try fixture.filesOnDisk().first)
            let flags = try #require(openFlags(of: "\(directory)/\(temporary)"))
            #expect(flags & oDirect != 0)
            try await write(bytes, to: writer, chunkSize: 64 * 1024)
            let staged = try await writer.finish()
            try await writer.commit()
            #expect(staged.md5 == md5Hex(bytes))
            #expect(try Array(#require(FileManager.default.contents(atPath: "\(directory)/\(id)"))) == bytes)
            #expect(store.directIOFallbackCount == 0)
            #expect(recorder.messages.filter { $0.contains("direct I/O") } == [])
        }
    }

    @Test func directIO_off_writesThroughThePageCache() async throws {
        try await withStore(.filesystemBuffered) { fixture in
            let directory = try #require(fixture.directory)
            let writer = try await fixture.store.beginWrite(ImageID(), expectedSize: nil)
            let temporary = try #require(try fixture.filesOnDisk().first)
            let flags = try #require(openFlags(of: "\(directory)/\(temporary)"))
            #expect(flags & oDirect == 0)
            await writer.abort()
        }
    }

    /// A filesystem that refuses O_DIRECT (ramfs; tmpfs too before Linux 6.6) gets buffered writes: every
    /// upload succeeds with exact bytes, and the fallback is logged once for the store, not per upload.
    @Test func directIO_whenTheFilesystemRefusesIt_fallsBackToBufferedWritesAndLogsOnce() async throws {
        try await withRamfs { directory in
            let recorder = RecordingLogHandler()
            let store = FilesystemImageStore(directory: directory, directIO: true, logger: Logger(label: "test") { _ in recorder })
            for size in [0, 4097, (1 << 20) + 1] {
                let id = ImageID()
                let bytes = randomBytes(size)
                let writer = try await store.beginWrite(id, expectedSize: Int64(size))
                let temporary = try #require(
                    try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasPrefix(".") })
                let flags = try #require(openFlags(of: "\(directory)/\(temporary)"))
                #expect(flags & oDirect == 0)
                try await write(bytes, to: writer, chunkSize: 64 * 1024)
                let staged = try await writer.finish()
                try await writer.commit()
                #expect(staged == StagedImageData(size: Int64(size), md5: md5Hex(bytes), hashValue: sha512Hex(bytes)))
                #expect(try Array(#require(FileManager.default.contents(atPath: "\(directory)/\(id)"))) == bytes)
            }
            #expect(store.directIOFallbackCount == 3)
            #expect(recorder.messages.filter { $0.contains("direct I/O") }.count == 1)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).allSatisfy { !$0.hasPrefix(".") })
        }
    }

    /// tmpfs: whether or not this kernel takes O_DIRECT there (it does since Linux 6.6), uploads are exact.
    @Test(arguments: [true, false])
    func upload_onTmpfs_storesExactBytes(directIO: Bool) async throws {
        try await withTmpfs(sizeBytes: 16 << 20) { directory in
            let store = FilesystemImageStore(directory: directory, directIO: directIO, logger: testLogger)
            for size in [1, 4096, (1 << 20) - 1, (3 << 20) + 5] {
                let id = ImageID()
                let bytes = randomBytes(size)
                let staged = try await upload(store, id, bytes)
                #expect(staged.md5 == md5Hex(bytes))
                #expect(try Array(#require(FileManager.default.contents(atPath: "\(directory)/\(id)"))) == bytes)
            }
        }
    }

    // MARK: Write-behind (filesystem_store_flush_after)

    /// Buffered uploads start the writeback of each completed window and wait for the one before it; the
    /// bytes on disk and the digests are exact whatever the chunking, and the tail is left to the fsync.
    @Test func writeBehind_startsEachWindow_waitsForThePreviousOne_bytesExact() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let recorder = RecordingLogHandler()
        var store = FilesystemImageStore(
            directory: directory, directIO: false, flushAfter: 1 << 20, logger: Logger(label: "test") { _ in recorder })
        let calls = SyncFileRangeRecorder(real: store.syncFileRange)
        store.syncFileRange = calls.call
        let id = ImageID()
        let bytes = randomBytes((3 << 20) + 4097)
        let staged = try await upload(store, id, bytes, chunkSize: 100_000)
        #expect(staged == StagedImageData(size: Int64(bytes.count), md5: md5Hex(bytes), hashValue: sha512Hex(bytes)))
        #expect(try Array(#require(FileManager.default.contents(atPath: "\(directory)/\(id)"))) == bytes)
        let window: Int64 = 1 << 20
        let wait: UInt32 = 1 | 2 | 4  // WAIT_BEFORE | WRITE | WAIT_AFTER
        #expect(
            calls.calls == [
                .init(offset: 0, length: window, flags: 2),
                .init(offset: window, length: window, flags: 2), .init(offset: 0, length: window, flags: wait),
                .init(offset: 2 * window, length: window, flags: 2), .init(offset: window, length: window, flags: wait),
            ])
        #expect(store.writeBehindFallbackCount == 0)
        #expect(recorder.messages.filter { $0.contains("sync_file_range") } == [])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == [id.description])
    }

    /// 0 turns it off, and direct I/O has nothing to write behind: no call at all.
    @Test(arguments: [(directIO: false, flushAfter: 0), (directIO: true, flushAfter: 1 << 20)])
    func writeBehind_offOrDirectIO_makesNoCall(directIO: Bool, flushAfter: Int) async throws {
        try await withStore(.filesystem) { fixture in
            let directory = try #require(fixture.directory)
            var store = FilesystemImageStore(directory: directory, directIO: directIO, flushAfter: flushAfter, logger: testLogger)
            let calls = SyncFileRangeRecorder(real: store.syncFileRange)
            store.syncFileRange = calls.call
            let id = ImageID()
            let bytes = randomBytes((3 << 20) + 1)
            let staged = try await upload(store, id, bytes)
            #expect(staged.md5 == md5Hex(bytes))
            #expect(try Array(#require(FileManager.default.contents(atPath: "\(directory)/\(id)"))) == bytes)
            #expect(calls.calls == [])
        }
    }

    /// Where the system refuses sync_file_range (ENOSYS from a seccomp filter or an old kernel, EINVAL,
    /// EPERM), uploads are written as without write-behind: exact bytes, no more calls for that upload,
    /// logged once per store.
    @Test(arguments: [ENOSYS, EINVAL, EPERM])
    func writeBehind_whenRefused_fallsBackToPlainBufferedWrites_logsOnce(refusal: Int32) async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let recorder = RecordingLogHandler()
        var store = FilesystemImageStore(
            directory: directory, directIO: false, flushAfter: 1 << 20, logger: Logger(label: "test") { _ in recorder })
        let calls = SyncFileRangeRecorder(real: store.syncFileRange, refusing: refusal)
        store.syncFileRange = calls.call
        for size in [(2 << 20) + 5, 3 << 20, 100] {
            let id = ImageID()
            let bytes = randomBytes(size)
            let staged = try await upload(store, id, bytes, chunkSize: 256 * 1024)
            #expect(staged == StagedImageData(size: Int64(size), md5: md5Hex(bytes), hashValue: sha512Hex(bytes)))
            #expect(try Array(#require(FileManager.default.contents(atPath: "\(directory)/\(id)"))) == bytes)
        }
        // One refused call per upload that completed a window, then none.
        #expect(calls.calls.count == 2)
        #expect(store.writeBehindFallbackCount == 2)
        #expect(recorder.messages.filter { $0.contains("sync_file_range") }.count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).allSatisfy { !$0.hasPrefix(".") })
    }

    /// A writeback error reported by the wait fails the upload (the kernel reports it once per
    /// descriptor: swallowed here, the fsync would not see it), and nothing is left on disk.
    @Test func writeBehind_writebackError_failsTheUpload_nothingLeft() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var store = FilesystemImageStore(directory: directory, directIO: false, flushAfter: 1 << 20, logger: testLogger)
        let calls = SyncFileRangeRecorder(real: store.syncFileRange, refusing: EIO, flags: 1 | 2 | 4)
        store.syncFileRange = calls.call
        let writer = try await store.beginWrite(ImageID(), expectedSize: 4 << 20)
        await expectError(.storeUnavailable) {
            try await write(randomBytes(4 << 20), to: writer, chunkSize: 1 << 20)
            _ = try await writer.finish()
        }
        await writer.abort()
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == [])
        #expect(store.writeBehindFallbackCount == 0)
    }

    /// tmpfs and ramfs take sync_file_range (nothing to write back): uploads with small windows are exact.
    @Test(arguments: [false, true])
    func writeBehind_onTmpfsAndRamfs_uploadsExact(ramfs: Bool) async throws {
        let body: (String) async throws -> Void = { directory in
            let store = FilesystemImageStore(directory: directory, directIO: false, flushAfter: 1 << 20, logger: testLogger)
            for size in [1, (1 << 20) - 1, (3 << 20) + 5] {
                let id = ImageID()
                let bytes = randomBytes(size)
                let staged = try await upload(store, id, bytes)
                #expect(staged.md5 == md5Hex(bytes))
                #expect(try Array(#require(FileManager.default.contents(atPath: "\(directory)/\(id)"))) == bytes)
            }
            #expect(store.writeBehindFallbackCount == 0)
        }
        if ramfs { try await withRamfs(body) } else { try await withTmpfs(sizeBytes: 16 << 20, body) }
    }

    @Test func beginWrite_whenFilesystemIsReadOnly_throwsWriteDenied() async throws {
        try await withTmpfs(sizeBytes: 1 << 20, readOnly: true) { directory in
            let store = makeStore(directory)
            await expectError(.writeDenied) { _ = try await store.beginWrite(ImageID(), expectedSize: 10) }
            let ids = try await store.storedIDs()
            #expect(ids == [])
        }
    }

    @Test func storedIDs_ignoresNamesThatAreNotCanonicalImageIDs() async throws {
        try await withStore(.filesystem) { fixture in
            let directory = try #require(fixture.directory)
            let id = ImageID()
            try await upload(fixture.store, id, randomBytes(1))
            for name in ["notes.txt", id.description.uppercased(), ".\(ImageID()).1.tmp"] {
                #expect(FileManager.default.createFile(atPath: "\(directory)/\(name)", contents: Data()))
            }
            #expect(try await fixture.store.storedIDs() == [id])
        }
    }

    /// Not a benchmark with a threshold: shows the pipeline's throughput in the test log.
    @Test func upload_of256MiB_reportsThroughput() async throws {
        try await withStore(.filesystem) { fixture in
            let id = ImageID()
            let block = ByteBuffer(bytes: randomBytes(1024 * 1024))
            let blocks = 256
            let total = Int64(blocks * block.readableBytes)

            // Reset the peak-RSS mark (Linux), so the print below shows what this upload added.
            try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
            let rssBefore = memoryStatus("VmRSS")
            let clock = ContinuousClock()
            let started = clock.now
            let writer = try await fixture.store.beginWrite(id, expectedSize: total)
            for _ in 0..<blocks {
                // Request bodies arrive in pieces much smaller than a batch.
                var remaining = block
                while let piece = remaining.readSlice(length: min(64 * 1024, remaining.readableBytes)) {
                    try await writer.write(piece)
                    if remaining.readableBytes == 0 { break }
                }
            }
            let staged = try await writer.finish()
            try await writer.commit()
            let uploadTime = started.duration(to: clock.now)
            let peakDuringUpload = memoryStatus("VmHWM")

            let readStarted = clock.now
            let reader = try await fixture.store.read(id, range: nil)
            let readBytes = ByteCounter()
            try await reader.forEachChunk { readBytes.add($0.readableBytes) }
            let downloadTime = readStarted.duration(to: clock.now)

            var md5 = Insecure.MD5()
            var sha512 = SHA512()
            for _ in 0..<blocks {
                block.withUnsafeReadableBytes {
                    md5.update(bufferPointer: $0)
                    sha512.update(bufferPointer: $0)
                }
            }
            #expect(staged.size == total)
            #expect(staged.md5 == md5.finalize().map { String(format: "%02x", $0) }.joined())
            #expect(staged.hashValue == sha512.finalize().map { String(format: "%02x", $0) }.joined())
            #expect(readBytes.value == total)
            print(
                "upload 256 MiB (md5+sha512+fsync): \(megabytesPerSecond(total, uploadTime)) MB/s; "
                    + "download: \(megabytesPerSecond(total, downloadTime)) MB/s; "
                    + "peak RSS \(peakDuringUpload / 1024) MiB (\(rssBefore / 1024) MiB before; other tests run in parallel)")
        }
    }

    /// A `/proc/self/status` value in KiB (0 where there is none).
    private func memoryStatus(_ field: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") }
        return line.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
    }

    private func megabytesPerSecond(_ bytes: Int64, _ duration: Duration) -> Int {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return Int(Double(bytes) / 1_000_000 / seconds)
    }
}

final class ByteCounter: Sendable {
    private let total = Mutex<Int64>(0)
    func add(_ count: Int) { total.withLock { $0 += Int64(count) } }
    var value: Int64 { total.withLock { $0 } }
}
