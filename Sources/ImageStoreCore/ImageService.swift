import Foundation
import Logging
import NIOCore

/// The image-data workflows (upload, download, delete) written against the seams only:
/// metadata repository, data store and write guard. This is where "nothing is ever lost" is decided.
///
/// Upload, in order: status `queued`→`saving` by compare-and-set (so two uploads cannot both win),
/// guard check, stream into a temporary object while counting against cap/quota/declared size,
/// finish (fsync), guard check again, commit (rename), then `saving`→`active` by compare-and-set.
/// Any failure aborts the temporary object and puts the image back to `queued`.
public struct ImageService: Sendable {
    public struct Limits: Sendable {
        /// `image_size_cap`: the largest image accepted.
        public var imageSizeCap: Int64
        /// `user_storage_quota`: bytes per owner; 0 means no quota.
        public var userStorageQuota: Int64
        /// `filesystem_store_reserved_space`: free space uploads must leave on the store.
        public var reservedSpace: ReservedSpace
        public init(imageSizeCap: Int64 = 1 << 40, userStorageQuota: Int64 = 0, reservedSpace: ReservedSpace = .none) {
            self.imageSizeCap = imageSizeCap
            self.userStorageQuota = userStorageQuota
            self.reservedSpace = reservedSpace
        }
    }

    public let repository: any ImageRepository
    public let store: any ImageDataStore
    public let writeGuard: any WriteGuard
    public let limits: Limits
    /// Space before bytes, shared by every upload of this service (see `SpaceGate`).
    public let space: SpaceGate
    /// `[image_format] require_image_format_match`: data that is not its `disk_format` is refused (415).
    public let requireFormatMatch: Bool
    /// Identifies this process in `uploadOwner`, so a restart resets only its own stuck uploads.
    public let processToken: String
    let logger: Logger

    public init(
        repository: any ImageRepository, store: any ImageDataStore, writeGuard: any WriteGuard = UnguardedStore(),
        limits: Limits = .init(), requireFormatMatch: Bool = true, processToken: String = ImageService.makeProcessToken(),
        logger: Logger = Logger(label: "imagestore.images")
    ) {
        self.repository = repository
        self.store = store
        self.writeGuard = writeGuard
        self.limits = limits
        self.requireFormatMatch = requireFormatMatch
        self.processToken = processToken
        self.logger = logger
        self.space = SpaceGate(reserve: limits.reservedSpace) { [writeGuard, store] in
            if let capacity = try await writeGuard.freeSpace() { return capacity }
            return try await store.capacity()
        }
    }

    public static func makeProcessToken() -> String {
        let host = ProcessInfo.processInfo.hostName
        return "\(host):\(getpid()):\(UUID().uuidString.prefix(8).lowercased())"
    }

    // MARK: Upload

    /// Streams `body` into the store as the data of image `id`; returns the now-active image.
    public func upload<Body: AsyncSequence>(
        _ id: ImageID, body: Body, declaredSize: Int64?
    ) async throws -> Image where Body.Element == ByteBuffer {
        guard let image = try await repository.get(id) else { throw ImageStoreError.notFound("No image found with ID \(id)") }
        guard image.diskFormat != nil, image.containerFormat != nil else {
            throw ImageStoreError.badRequest("Properties disk_format, container_format must be set prior to saving data.")
        }
        guard image.status == .queued else {
            throw ImageStoreError.conflict("Image status transition from \(image.status.rawValue) to saving is not allowed")
        }
        if let declaredSize {
            guard declaredSize >= 0 else { throw ImageStoreError.badRequest("Image size must not be negative") }
            if declaredSize > limits.imageSizeCap { throw tooLarge() }
        }
        let quotaLeft = try await remainingQuota(for: image)
        if let declaredSize, let quotaLeft, declaredSize > quotaLeft { throw quotaExceeded(quotaLeft) }

        try await writeGuard.checkWritable()
        // Space before bytes: a declared size is checked against the free space above the reserve before
        // anything is written (the image stays queued); a streamed upload is stopped at the reserve.
        // Without a reserve, only uploads that declare their size are measured.
        var ticket: SpaceTicket?
        if declaredSize != nil || !limits.reservedSpace.isNone { ticket = try await space.admit(declared: declaredSize) }
        defer { ticket?.release() }

        let token = processToken
        try await repository.update(id, expecting: [.queued]) { image in
            image.status = .saving
            image.uploadOwner = token
        }

        var writer: (any ImageDataWriter)?
        var committed = false
        do {
            let w = try await store.beginWrite(id, expectedSize: declaredSize)
            writer = w
            var received: Int64 = 0
            // As Glance, only `bare` containers are inspected: the format is checked on the bytes as they
            // pass, never by reading the data again.
            let inspection = image.containerFormat == "bare" ? FormatInspection() : nil
            do {
                for try await chunk in body {
                    received += Int64(chunk.readableBytes)
                    if received > limits.imageSizeCap { throw tooLarge() }
                    if let quotaLeft, received > quotaLeft { throw quotaExceeded(quotaLeft) }
                    try await ticket?.willWrite(chunk.readableBytes)
                    if let inspection { chunk.withUnsafeReadableBytes { inspection.eat($0) } }
                    try await w.write(chunk)
                }
                // A cancelled request (shutdown past the drain timeout) may see its body end early:
                // never treat that as the whole image.
                try Task.checkCancellation()
                guard received > 0 else {
                    throw ImageStoreError.badRequest("The request body is empty: an upload needs the image data.")
                }
            } catch let error as ImageStoreError {
                throw error
            } catch is CancellationError {
                throw ImageStoreError(.clientDisconnected, "The upload was cancelled")
            } catch {
                // Errors from the body sequence are the client going away.
                throw ImageStoreError(.clientDisconnected, "The client stopped sending the image data: \(error)")
            }
            // A mismatch or a failed safety check (qcow2 backing file…) is 415, and the data is dropped.
            let virtualSize = try inspection?.finish().verdict(diskFormat: image.diskFormat ?? "", requireMatch: requireFormatMatch)
            let staged = try await w.finish()
            // The share may have gone away while we streamed: check again before publishing.
            try await writeGuard.checkWritable()
            try await w.commit()
            committed = true
            do {
                return try await repository.update(id, expecting: [.saving]) { image in
                    image.status = .active
                    image.size = staged.size
                    image.checksum = staged.md5
                    image.osHashAlgo = staged.hashAlgorithm
                    image.osHashValue = staged.hashValue
                    if let virtualSize { image.virtualSize = virtualSize }
                    image.uploadOwner = nil
                }
            } catch let error as ImageStoreError where error.code == .notFound || error.code == .conflict {
                // Deleted while uploading: the delete wins, and our committed data goes (in the clean-up).
                throw ImageStoreError(
                    .deletedDuringUpload,
                    "Image \(id) could not be found after upload. The image may have been deleted during the upload, cleaning up the chunks uploaded."
                )
            }
        } catch {
            await cleanUpFailedUpload(id, writer: writer, committed: committed, error: error)
            throw error
        }
    }

    /// Removes the temporary data and puts the image back to `queued`. Runs detached so a cancelled
    /// request (client gone) still cleans up completely.
    private func cleanUpFailedUpload(_ id: ImageID, writer: (any ImageDataWriter)?, committed: Bool, error: any Error) async {
        let repository = self.repository
        let store = self.store
        let logger = self.logger
        let token = processToken
        await Task.detached {
            await writer?.abort()
            // Committed data whose image did not become active is an orphan: never leave it.
            if committed { _ = try? await store.delete(id) }
            do {
                try await repository.update(id, expecting: [.saving]) { image in
                    guard image.uploadOwner == token else { return }
                    image.status = .queued
                    image.uploadOwner = nil
                }
            } catch {
                // Deleted meanwhile, or another state: nothing to restore.
            }
            logger.info("upload failed, image back to queued", metadata: ["image_id": "\(id)", "error": "\(error)"])
        }.value
    }

    private func remainingQuota(for image: Image) async throws -> Int64? {
        guard limits.userStorageQuota > 0 else { return nil }
        let used = try await repository.storageUsed(owner: image.owner, excluding: image.id)
        return max(0, limits.userStorageQuota - used)
    }

    private func tooLarge() -> ImageStoreError {
        ImageStoreError(.imageTooLarge, "The incoming image is too large: the limit is \(limits.imageSizeCap) bytes (image_size_cap)")
    }

    private func quotaExceeded(_ left: Int64) -> ImageStoreError {
        ImageStoreError(
            .quotaExceeded,
            "Image exceeds the storage quota: \(left) bytes remaining of \(limits.userStorageQuota) (user_storage_quota)")
    }

    // MARK: Download

    /// Opens the image's data (or a range of it). Returns nil when the image has no data (→ 204).
    public func download(_ image: Image, range: Range<Int64>?) async throws -> (any ImageDataReader)? {
        guard image.hasData else { return nil }
        try await writeGuard.checkReadable()
        do {
            return try await store.read(image.id, range: range)
        } catch let error as ImageStoreError where error.code == .notFound {
            return nil
        }
    }

    // MARK: Delete

    /// Deletes an image and its data. A delete refused by the guard changes nothing.
    public func delete(_ id: ImageID) async throws {
        guard let image = try await repository.get(id) else { throw ImageStoreError.notFound("No image found with ID \(id)") }
        if image.isProtected { throw ImageStoreError.forbidden("Image \(id) is protected and cannot be deleted.") }
        let hasData = image.hasData || image.status == .pendingDelete
        if hasData {
            try await writeGuard.checkWritable()
            // pending_delete first: a crash between here and the row removal is finished at start-up,
            // and a failed data delete can be rolled back to the previous status.
            let previous = image.status
            try await repository.update(id, expecting: [previous]) { $0.status = .pendingDelete }
            do {
                try await store.delete(id)
            } catch {
                _ = try? await repository.update(id, expecting: [.pendingDelete]) { $0.status = previous }
                throw error
            }
        }
        // An upload in flight (saving) sees the row gone at its final compare-and-set and cleans up.
        try await repository.delete(id)
    }
}

// MARK: Start-up recovery

extension ImageService {
    /// What `recoverAfterRestart` did, for the log.
    public struct RecoveryReport: Sendable, Equatable {
        public var uploadsReset = 0
        public var temporaryFilesRemoved = 0
        public var deletesFinished = 0
        /// Data files no active image points to (a crash between rename and `active`), removed.
        public var orphanedDataRemoved = 0
        /// Active images whose data file is gone: reset to `queued` so they can be uploaded again.
        public var missingDataReset = 0
        /// False when the guard refused writes: only the metadata part ran.
        public var storeChecked = false
    }

    /// Repairs what a crashed process of this host left behind: uploads it held go back to `queued`,
    /// temporary files are removed, interrupted deletes are finished, and data files and rows that
    /// disagree are reconciled. Uploads held by other hosts (other replicas) are left alone. The
    /// store is only touched when the guard allows writes: on a missing share nothing is "repaired".
    public func recoverAfterRestart() async throws -> RecoveryReport {
        var report = RecoveryReport()
        let host = processToken.split(separator: ":").first.map(String.init) ?? ""
        for image in try await repository.images(withStatus: [.saving]) {
            let owner = image.uploadOwner ?? ""
            guard owner.isEmpty || owner.split(separator: ":").first.map(String.init) == host else { continue }
            guard owner != processToken else { continue }
            try await repository.update(image.id, expecting: [.saving]) { image in
                image.status = .queued
                image.uploadOwner = nil
            }
            report.uploadsReset += 1
        }
        do {
            try await writeGuard.checkWritable()
        } catch {
            logger.warning("start-up recovery of the store skipped: it is not writable", metadata: ["reason": "\(error)"])
            return report
        }
        report.storeChecked = true
        report.temporaryFilesRemoved = try await store.sweepTemporaryFiles()
        for image in try await repository.images(withStatus: [.pendingDelete]) {
            do {
                try await store.delete(image.id)
                try await repository.delete(image.id)
                report.deletesFinished += 1
            } catch {
                logger.warning("could not finish an interrupted delete", metadata: ["image_id": "\(image.id)", "error": "\(error)"])
            }
        }
        let withData = Set(try await repository.images(withStatus: [.active, .deactivated]).map(\.id))
        let stored = Set(try await store.storedIDs())
        // Uploads other replicas hold right now may be between their rename and `active`: not ours to judge.
        let heldElsewhere = Set(try await repository.images(withStatus: [.saving]).map(\.id))
        for id in stored.subtracting(withData).subtracting(heldElsewhere) {
            // Unreferenced: renamed into place but never marked active (or its image is gone). Recovery may
            // run late (the share answered only after start-up), with uploads of this process running:
            // look at the image again right before deleting, and leave data an upload holds or published.
            if let image = try await repository.get(id), [.saving, .active, .deactivated].contains(image.status) { continue }
            logger.warning("removing data no active image points to", metadata: ["image_id": "\(id)"])
            if (try? await store.delete(id)) == true { report.orphanedDataRemoved += 1 }
        }
        for id in withData.subtracting(stored) {
            // The listing may predate an upload that became active since: ask the store again.
            // Only a definite "not found" resets the image; a store that stopped answering fails this
            // attempt (retried later).
            do {
                _ = try await store.size(id)
                continue
            } catch let error as ImageStoreError where error.code == .notFound {}
            logger.error("active image has no data file: resetting it to queued", metadata: ["image_id": "\(id)"])
            do {
                try await repository.update(id, expecting: [.active, .deactivated]) { image in
                    image.status = .queued
                    image.size = nil
                    image.checksum = nil
                    image.osHashAlgo = nil
                    image.osHashValue = nil
                }
                report.missingDataReset += 1
            } catch {
                logger.warning("could not reset an image without data", metadata: ["image_id": "\(id)", "error": "\(error)"])
            }
        }
        return report
    }
}
