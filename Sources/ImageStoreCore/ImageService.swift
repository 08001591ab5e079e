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
///
/// Several replicas may share one catalogue and one store: an image being written names its replica
/// (`uploadOwner` = `processToken`, the replica id), and the final compare-and-set requires it still
/// does, so an image another replica took over (this one's lease expired) never becomes active from here.
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
    /// This replica's id: recorded in `uploadOwner` of the images it writes and in its temporary file
    /// names, so recovery and takeover touch only what a given replica left.
    public let processToken: String
    /// Where replicas record themselves (the repository, when it is one); nil: a single process.
    public let replicas: (any ReplicaRegistry)?
    /// This replica's lease, renewed by its heartbeat (`ReplicaHeartbeat`); nil: no lease is kept.
    public let lease: ReplicaLease?
    /// What this process is writing right now, whatever the catalogue says.
    public let inFlight = UploadsInFlight()
    let logger: Logger

    public init(
        repository: any ImageRepository, store: any ImageDataStore, writeGuard: any WriteGuard = UnguardedStore(),
        limits: Limits = .init(), requireFormatMatch: Bool = true, processToken: String = ImageService.makeProcessToken(),
        lease: ReplicaLease? = nil, logger: Logger = Logger(label: "imagestore.images")
    ) {
        self.repository = repository
        self.store = store
        self.writeGuard = writeGuard
        self.limits = limits
        self.requireFormatMatch = requireFormatMatch
        self.processToken = processToken
        self.replicas = repository as? any ReplicaRegistry
        self.lease = lease
        self.logger = logger
        self.space = SpaceGate(reserve: limits.reservedSpace) { [writeGuard, store] in
            if let capacity = try await writeGuard.freeSpace() { return capacity }
            return try await store.capacity()
        }
    }

    /// A fresh replica id: a lower-case UUID (it goes into temporary file names).
    public static func makeProcessToken() -> String {
        UUID().uuidString.lowercased()
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
        // Before the claim: recovery and takeover in this process must never see the claim without it.
        inFlight.insert(id)
        defer { inFlight.remove(id) }
        let leaseGeneration = lease?.generation
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
            // Still ours? A replica whose lease lapsed (stopped, partitioned) may have been taken over:
            // another replica reset the image and removed our temporary file. Checked before the rename
            // (so a taken-over upload publishes nothing) and again in the final compare-and-set.
            try await checkStillOwned(id, leaseGeneration: leaseGeneration)
            try await w.commit()
            committed = true
            do {
                return try await repository.update(id, expecting: [.saving]) { image in
                    guard image.uploadOwner == token else { throw Self.takenOver(id) }
                    image.status = .active
                    image.size = staged.size
                    image.checksum = staged.md5
                    image.osHashAlgo = staged.hashAlgorithm
                    image.osHashValue = staged.hashValue
                    if let virtualSize { image.virtualSize = virtualSize }
                    image.uploadOwner = nil
                }
            } catch let error as ImageStoreError where error.code == .conflict && error.message.hasPrefix(Self.takenOverPrefix) {
                throw error
            } catch let error as ImageStoreError where error.code == .notFound || error.code == .conflict {
                // Deleted while uploading: the delete wins, and our committed data goes (in the clean-up).
                throw ImageStoreError(
                    .deletedDuringUpload,
                    "Image \(id) could not be found after upload. The image may have been deleted during the upload, cleaning up the chunks uploaded."
                )
            } catch {
                // No answer (the database went away mid-commit, the deadline passed): the compare-and-set
                // may have committed all the same. Ask again; an image that is active with our bytes is
                // this upload's success.
                if let settled = try? await repository.get(id), settled.status == .active, settled.checksum == staged.md5,
                    settled.osHashValue == staged.hashValue
                {
                    return settled
                }
                throw error
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
            // Back to queued first, by compare-and-set: it waits on the row lock of a final compare-and-set
            // whose answer was lost (the database went away mid-commit), so what it sees is settled.
            var reset = false
            var settled = true
            do {
                try await repository.update(id, expecting: [.saving]) { image in
                    guard image.uploadOwner == token else { throw ImageStoreError.conflict("not this upload's") }
                    image.status = .queued
                    image.uploadOwner = nil
                }
                reset = true
            } catch let error as ImageStoreError where error.code == .conflict || error.code == .notFound {
                // Deleted, taken over, or active after all.
            } catch {
                settled = false
            }
            if committed {
                // Our data is in place under the image id. The rename never replaces, so an image that is
                // active now is active with our data (a commit whose answer was lost): keep it. Any other
                // state: no image points to it. Without an answer from the database nothing is decided:
                // the image stays `saving` under this replica, and its next takeover pass (an upload of
                // its own that is not in flight) removes the data and resets the image.
                guard settled else {
                    logger.warning(
                        "upload failed and the database does not answer: its image is resolved by the next takeover pass",
                        metadata: ["image_id": "\(id)"])
                    return
                }
                var keep = false
                if !reset {
                    do {
                        let current = try await repository.get(id)
                        keep = current?.status == .active || current?.status == .deactivated
                    } catch {
                        // Unknown: keep the data; an active image must never lose it. The start-up
                        // reconciliation removes data no active image points to.
                        keep = true
                    }
                }
                if !keep { _ = try? await store.delete(id) }
            }
            logger.info("upload failed", metadata: ["image_id": "\(id)", "reset_to_queued": "\(reset)", "error": "\(error)"])
        }.value
    }

    static let takenOverPrefix = "The upload lost its claim on image"

    /// 409, as Glance answers an upload whose image changed status under it (its `saving`→`active`
    /// save fails on the state it expected). The client may upload again: the image is `queued`.
    static func takenOver(_ id: ImageID) -> ImageStoreError {
        .conflict(
            "\(takenOverPrefix) \(id): this replica's lease expired, and the image was (or will be) reset to queued by another replica. Upload the data again.")
    }

    /// Throws `takenOver` unless this replica still holds its lease (as of when the upload started) and
    /// the image is still `saving` under its name.
    private func checkStillOwned(_ id: ImageID, leaseGeneration: Int?) async throws {
        // The database first: while it is down this answers 503 (try again), not a lost lease.
        guard let image = try await repository.get(id) else {
            throw ImageStoreError(
                .deletedDuringUpload,
                "Image \(id) could not be found after upload. The image may have been deleted during the upload, cleaning up the chunks uploaded.")
        }
        guard image.status == .saving, image.uploadOwner == processToken else { throw Self.takenOver(id) }
        if let lease, let leaseGeneration, !lease.holds(since: leaseGeneration) { throw Self.takenOver(id) }
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

    /// Statuses of an image some replica is writing.
    public static let writingStatuses: Set<ImageStatus> = [.saving, .uploading, .importing]

    /// Repairs what this replica's crashed predecessor left behind: uploads it held go back to `queued`,
    /// its temporary files are removed, interrupted deletes are finished, and data files and rows that
    /// disagree are reconciled. The store is only touched when the guard allows writes: on a missing
    /// share nothing is "repaired".
    ///
    /// Whose leftovers are "its own" depends on the catalogue. An embedded one (SQLite) serves one
    /// replica, so every other writer recorded in it was an earlier run of this one: all their uploads
    /// and temporary files go at once. A shared one (PostgreSQL) may have live replicas writing right
    /// now: only what carries this replica's id is touched here; what a dead replica left is taken over
    /// by `takeOverExpiredReplicas` once its lease expired, never earlier.
    public func recoverAfterRestart() async throws -> RecoveryReport {
        var report = RecoveryReport()
        let shared = replicas?.isShared ?? false
        let me = processToken
        for image in try await repository.images(withStatus: Self.writingStatuses) {
            guard !inFlight.contains(image.id) else { continue }
            let owner = image.uploadOwner
            guard owner == me || !shared else { continue }
            do {
                try await repository.update(image.id, expecting: [image.status]) { current in
                    // Compare-and-set on the owner too: a new upload may have claimed it since the listing.
                    guard current.uploadOwner == owner else { throw ImageStoreError.conflict("claimed again") }
                    current.status = .queued
                    current.uploadOwner = nil
                }
                report.uploadsReset += 1
            } catch let error as ImageStoreError where error.code == .conflict || error.code == .notFound {
                continue
            }
        }
        do {
            try await writeGuard.checkWritable()
        } catch {
            logger.warning("start-up recovery of the store skipped: it is not writable", metadata: ["reason": "\(error)"])
            return report
        }
        report.storeChecked = true
        if shared {
            // Names without a replica id come from a version before replicas, which ran alone: any such
            // file unchanged for twice the lease is a leftover.
            let legacyBefore = Date().addingTimeInterval(-2 * (lease?.leaseTime ?? .seconds(60)).fractionalSeconds)
            report.temporaryFilesRemoved = try await store.sweepTemporaryFiles {
                $0.replica == me || ($0.replica == nil && $0.modified < legacyBefore)
            }
        } else {
            report.temporaryFilesRemoved = try await store.sweepTemporaryFiles()
        }
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

// MARK: Takeover of dead replicas

extension ImageService {
    /// What one `takeOverExpiredReplicas` pass did, for the log and tests.
    public struct TakeoverReport: Sendable, Equatable {
        public var replicasRemoved: [String] = []
        public var uploadsReset = 0
        public var temporaryFilesRemoved = 0
        public init() {}
    }

    /// Finishes what replicas that stopped heartbeating for `lease` were writing: each of their images
    /// goes back to `queued` (with any data they renamed in but never published), their temporary files
    /// are removed, then their rows. Never earlier than the lease: a replica that heartbeats keeps
    /// everything, however slow its uploads.
    ///
    /// Two surviving replicas may run this at once: each image is first claimed by compare-and-set
    /// (still writing, still the dead replica's: owner → this replica), so exactly one of them resets
    /// it; the dead replica itself, if only stopped and resumed later, then fails its own final
    /// compare-and-set (the owner is no longer it) and publishes nothing.
    ///
    /// Images whose owner has no row at all (a replica of an earlier version, or a row removed while its
    /// images were still being reset) are treated the same once unchanged for twice the lease.
    public func takeOverExpiredReplicas(lease: Duration) async throws -> TakeoverReport {
        var report = TakeoverReport()
        guard let replicas else { return report }
        let me = processToken
        let expired = Set(try await replicas.expiredReplicas(lease: lease).map(\.id)).subtracting([me])
        let known = Set(try await replicas.replicas().map(\.id))
        let orphanedBefore = Date().addingTimeInterval(-2 * lease.fractionalSeconds)
        let candidates = try await repository.images(withStatus: Self.writingStatuses).filter { image in
            guard !inFlight.contains(image.id) else { return false }
            let owner = image.uploadOwner ?? ""
            if owner == me { return true }  // a claim of an earlier pass that could not finish
            if expired.contains(owner) { return true }
            return !known.contains(owner) && image.updatedAt < orphanedBefore
        }
        guard !candidates.isEmpty || !expired.isEmpty else { return report }
        do {
            try await writeGuard.checkWritable()
        } catch {
            // The files cannot be checked: change nothing (an image reset with a stray file left would
            // refuse its next upload). Retried at the next pass.
            logger.warning("takeover postponed: the store is not writable", metadata: ["reason": "\(error)"])
            return report
        }
        var unfinished = Set<String>()
        for image in candidates {
            let owner = image.uploadOwner
            do {
                // 1. Claim: from here the dead replica's final compare-and-set fails. Also for our own (a
                // no-op write): it waits on the row lock of any commit still in progress, so what follows
                // acts on a settled state.
                try await repository.update(image.id, expecting: [image.status]) { current in
                    guard current.uploadOwner == owner else { throw ImageStoreError.conflict("claimed meanwhile") }
                    current.uploadOwner = me
                }
                // 2. Its files: temporary ones, and data renamed in but never published (the image was
                // never active, so a file under its id is the dead upload's).
                let id = image.id
                if let owner, owner != me {
                    report.temporaryFilesRemoved += try await store.sweepTemporaryFiles { $0.replica == owner && $0.imageID == id }
                }
                try await store.delete(id)
                // 3. Back to queued: it can be uploaded again.
                try await repository.update(id, expecting: Self.writingStatuses) { current in
                    guard current.uploadOwner == me else { throw ImageStoreError.conflict("claimed meanwhile") }
                    current.status = .queued
                    current.uploadOwner = nil
                }
                report.uploadsReset += 1
                logger.warning(
                    "reset an upload of a replica whose lease expired",
                    metadata: ["image_id": "\(id)", "replica": "\(owner ?? "")"])
            } catch let error as ImageStoreError where error.code == .conflict || error.code == .notFound {
                continue  // another replica got there first, or the image is gone
            } catch {
                if let owner { unfinished.insert(owner) }
                logger.warning("takeover of an upload failed; retried later", metadata: ["image_id": "\(image.id)", "error": "\(error)"])
            }
        }
        for dead in expired.subtracting(unfinished) {
            report.temporaryFilesRemoved += try await store.sweepTemporaryFiles { $0.replica == dead }
            if try await replicas.removeReplica(dead, ifExpired: lease) {
                report.replicasRemoved.append(dead)
                logger.warning("removed a replica whose lease expired", metadata: ["replica": "\(dead)"])
            }
        }
        return report
    }
}
