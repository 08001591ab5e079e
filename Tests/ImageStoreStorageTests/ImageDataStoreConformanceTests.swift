import Crypto
import ImageStoreTestSupport
import Foundation
import ImageStoreCore
import ImageStoreStorage
import NIOCore
import Testing

/// The contract of `ImageDataStore`, run on every store.
@Suite struct ImageDataStoreConformanceTests {
    @Test(arguments: StoreKind.allCases)
    func roundTrip_withManySmallChunks_returnsSameBytesAndHashes(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            let bytes = randomBytes(3 * 1024 * 1024 + 123)
            let staged = try await upload(fixture.store, id, bytes, chunkSize: 1000)

            #expect(staged == StagedImageData(size: Int64(bytes.count), md5: md5Hex(bytes), hashValue: sha512Hex(bytes)))
            #expect(staged.hashAlgorithm == "sha512")
            #expect(try await fixture.store.size(id) == Int64(bytes.count))
            #expect(try await readAll(fixture.store, id) == bytes)
            if fixture.directory != nil {
                #expect(try fixture.filesOnDisk() == [id.description])
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func roundTrip_withOneBigChunkAndNoDeclaredSize_returnsSameBytesAndHashes(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            let bytes = randomBytes(5 * 1024 * 1024 + 7)
            let staged = try await upload(fixture.store, id, bytes, chunkSize: bytes.count, declareSize: false)

            #expect(staged.size == Int64(bytes.count))
            #expect(staged.md5 == md5Hex(bytes))
            #expect(staged.hashValue == sha512Hex(bytes))
            #expect(try await readAll(fixture.store, id) == bytes)
        }
    }

    /// Sizes around direct I/O's alignment (4 KiB pages, 1 MiB batches): the stored bytes, the size and
    /// the hashes are exactly the upload's, whether the body came in small buffers (copied into aligned
    /// batches) or in one buffer (sliced into batches at whatever address it has).
    @Test(arguments: StoreKind.allCases, [0, 1, 4095, 4096, 4097, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, (3 << 20) + 4097])
    func roundTrip_atAlignmentEdges_storesExactlyTheBytes(kind: StoreKind, size: Int) async throws {
        try await withStore(kind) { fixture in
            let bytes = randomBytes(size)
            for chunkSize in [64 * 1024, max(size, 1)] {
                let id = ImageID()
                let staged = try await upload(fixture.store, id, bytes, chunkSize: chunkSize)
                #expect(staged == StagedImageData(size: Int64(size), md5: md5Hex(bytes), hashValue: sha512Hex(bytes)))
                #expect(try await fixture.store.size(id) == Int64(size))
                #expect(try await readAll(fixture.store, id) == bytes)
                if let directory = fixture.directory {
                    let onDisk = try #require(FileManager.default.contents(atPath: "\(directory)/\(id)"))
                    #expect(onDisk.count == size)
                    #expect(Array(onDisk) == bytes)
                }
            }
            if fixture.directory != nil {
                #expect(try fixture.filesOnDisk().allSatisfy { !$0.hasPrefix(".") })
            }
        }
    }

    /// `hashing_algorithm`: os_hash_value follows it, checksum stays md5.
    @Test(arguments: StoreKind.allCases, HashAlgorithm.allCases)
    func roundTrip_withHashingAlgorithm_recordsThatAlgorithmsDigest(kind: StoreKind, algorithm: HashAlgorithm) async throws {
        try await withStore(kind, hashAlgorithm: algorithm) { fixture in
            let id = ImageID()
            let bytes = randomBytes(2 * 1024 * 1024 + 5)
            let staged = try await upload(fixture.store, id, bytes, chunkSize: 70_000)

            let expected: String
            switch algorithm {
            case .sha1: expected = Insecure.SHA1.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            case .sha256: expected = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            case .sha384: expected = SHA384.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            case .sha512: expected = sha512Hex(bytes)
            }
            #expect(staged.hashAlgorithm == algorithm.rawValue)
            #expect(staged.hashValue == expected)
            #expect(staged.md5 == md5Hex(bytes))
            #expect(try await readAll(fixture.store, id) == bytes)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func roundTrip_withEmptyImage_returnsEmptyHashes(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            let staged = try await upload(fixture.store, id, [])

            #expect(staged.size == 0)
            #expect(staged.md5 == "d41d8cd98f00b204e9800998ecf8427e")
            #expect(staged.hashValue == sha512Hex([]))
            #expect(try await fixture.store.size(id) == 0)
            #expect(try await readAll(fixture.store, id) == [])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func read_withRanges_returnsExactlyThoseBytes(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            let bytes = randomBytes(300_000)
            try await upload(fixture.store, id, bytes)
            let size = Int64(bytes.count)

            #expect(try await readAll(fixture.store, id, range: 0..<1) == [bytes[0]])
            #expect(try await readAll(fixture.store, id, range: (size - 1)..<size) == [bytes[bytes.count - 1]])
            #expect(try await readAll(fixture.store, id, range: 70_000..<200_001) == Array(bytes[70_000..<200_001]))
            #expect(try await readAll(fixture.store, id, range: 0..<size) == bytes)
            // An end past the data is clamped to it.
            #expect(try await readAll(fixture.store, id, range: 299_990..<400_000) == Array(bytes[299_990...]))
            let reader = try await fixture.store.read(id, range: 10..<20)
            #expect(reader.length == 10)
            await reader.close()
        }
    }

    @Test(arguments: StoreKind.allCases)
    func read_withStartAtOrPastEnd_throwsRangeNotSatisfiable(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            try await upload(fixture.store, id, randomBytes(100))

            await expectError(.rangeNotSatisfiable) { _ = try await fixture.store.read(id, range: 100..<101) }
            await expectError(.rangeNotSatisfiable) { _ = try await fixture.store.read(id, range: 500..<600) }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func read_whenClosedWithoutReading_deliversNothingAndAllowsDelete(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            try await upload(fixture.store, id, randomBytes(1000))
            let reader = try await fixture.store.read(id, range: nil)
            await reader.close()
            await reader.close()

            await #expect(throws: (any Error).self) { try await reader.forEachChunk { _ in } }
            #expect(try await fixture.store.delete(id))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func access_whenIDIsMissing_throwsNotFound(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            await expectError(.notFound) { _ = try await fixture.store.size(id) }
            await expectError(.notFound) { _ = try await fixture.store.read(id, range: nil) }
            await expectError(.notFound) { _ = try await fixture.store.read(id, range: 0..<1) }
            let deleted = try await fixture.store.delete(id)
            #expect(deleted == false)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func beginWrite_whenIDIsCommitted_throwsConflictAndKeepsData(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            let bytes = randomBytes(10_000)
            try await upload(fixture.store, id, bytes)

            await expectError(.conflict) { _ = try await fixture.store.beginWrite(id, expectedSize: nil) }
            #expect(try await readAll(fixture.store, id) == bytes)
            if fixture.directory != nil {
                #expect(try fixture.filesOnDisk() == [id.description])
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func commit_whenAnotherWriterCommittedFirst_throwsConflictAndKeepsFirstData(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            let first = randomBytes(20_000)
            let second = randomBytes(30_000)
            let writerA = try await fixture.store.beginWrite(id, expectedSize: nil)
            let writerB = try await fixture.store.beginWrite(id, expectedSize: nil)
            try await write(first, to: writerA, chunkSize: 4096)
            try await write(second, to: writerB, chunkSize: 4096)
            _ = try await writerA.finish()
            _ = try await writerB.finish()

            try await writerA.commit()
            await expectError(.conflict) { try await writerB.commit() }
            await writerB.abort()

            #expect(try await readAll(fixture.store, id) == first)
            if fixture.directory != nil {
                #expect(try fixture.filesOnDisk() == [id.description])
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func finishedData_beforeCommit_isNotVisible(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            let bytes = randomBytes(50_000)
            let writer = try await fixture.store.beginWrite(id, expectedSize: Int64(bytes.count))
            try await write(bytes, to: writer, chunkSize: 8192)
            _ = try await writer.finish()

            await expectError(.notFound) { _ = try await fixture.store.size(id) }
            await expectError(.notFound) { _ = try await fixture.store.read(id, range: nil) }
            #expect(try await fixture.store.storedIDs() == [])

            try await writer.commit()
            #expect(try await fixture.store.storedIDs() == [id])
            #expect(try await readAll(fixture.store, id) == bytes)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func write_whenMoreBytesThanDeclared_throwsSizeMismatchAndLeavesNothing(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            let writer = try await fixture.store.beginWrite(id, expectedSize: 100)
            try await writer.write(ByteBuffer(bytes: randomBytes(60)))

            let error = await expectError(.sizeMismatch) { try await writer.write(ByteBuffer(bytes: randomBytes(41))) }
            #expect(error?.message == "Size exceeds: expected 100 bytes, got 101 bytes")
            // The failure alone cleaned up; no abort needed for that.
            #expect(try fixture.filesOnDisk() == [])
            #expect(try await fixture.store.storedIDs() == [])
            await writer.abort()
            await expectError(.notFound) { _ = try await fixture.store.size(id) }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func finish_whenFewerBytesThanDeclared_throwsSizeMismatchAndLeavesNothing(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            let writer = try await fixture.store.beginWrite(id, expectedSize: 2_000_000)
            try await write(randomBytes(1_999_999), to: writer, chunkSize: 65536)

            let error = await expectError(.sizeMismatch) { _ = try await writer.finish() }
            #expect(error?.message == "Size mismatch: expected 2000000 bytes, got 1999999 bytes")
            #expect(try fixture.filesOnDisk() == [])
            await expectError(.internal) { try await writer.commit() }
            #expect(try await fixture.store.storedIDs() == [])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func abort_atAnyPoint_leavesNothingAndIsIdempotent(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            // Aborted while writing.
            let writing = try await fixture.store.beginWrite(id, expectedSize: nil)
            try await write(randomBytes(3_000_000), to: writing, chunkSize: 100_000)
            await writing.abort()
            await writing.abort()
            #expect(try fixture.filesOnDisk() == [])
            await expectError(.internal) { try await writing.write(ByteBuffer(bytes: [1])) }

            // Aborted after finish.
            let finished = try await fixture.store.beginWrite(id, expectedSize: nil)
            try await write(randomBytes(1000), to: finished, chunkSize: 100)
            _ = try await finished.finish()
            await finished.abort()
            #expect(try fixture.filesOnDisk() == [])
            await expectError(.notFound) { _ = try await fixture.store.size(id) }
            #expect(try await fixture.store.storedIDs() == [])

            // The id is free again, and an abort after commit keeps the data.
            let bytes = randomBytes(777)
            let committed = try await fixture.store.beginWrite(id, expectedSize: 777)
            try await write(bytes, to: committed, chunkSize: 777)
            _ = try await committed.finish()
            try await committed.commit()
            await committed.abort()
            #expect(try await readAll(fixture.store, id) == bytes)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func delete_twice_returnsTrueThenFalse(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let id = ImageID()
            try await upload(fixture.store, id, randomBytes(4096))

            #expect(try await fixture.store.delete(id) == true)
            #expect(try await fixture.store.delete(id) == false)
            await expectError(.notFound) { _ = try await fixture.store.size(id) }
            #expect(try fixture.filesOnDisk() == [])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func storedIDs_listsCommittedImagesOnly(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let ids = (0..<5).map { _ in ImageID() }
            for id in ids { try await upload(fixture.store, id, randomBytes(10)) }
            let pending = try await fixture.store.beginWrite(ImageID(), expectedSize: nil)
            try await pending.write(ByteBuffer(bytes: [1, 2, 3]))

            #expect(try await fixture.store.storedIDs() == ids.sorted())
            try await fixture.store.delete(ids[2])
            #expect(try await fixture.store.storedIDs() == ids.sorted().filter { $0 != ids[2] })
            await pending.abort()
        }
    }

    @Test(arguments: StoreKind.allCases)
    func capacity_reportsPlausibleNumbers(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let capacity = try await fixture.store.capacity()
            #expect(capacity.totalBytes > 0)
            #expect(capacity.freeBytes >= 0)
            #expect(capacity.freeBytes <= capacity.totalBytes)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func sweepTemporaryFiles_withNothingLeft_returnsZero(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            try await upload(fixture.store, ImageID(), randomBytes(10))
            #expect(try await fixture.store.sweepTemporaryFiles() == 0)
            #expect(try await fixture.store.storedIDs().count == 1)
        }
    }
}
