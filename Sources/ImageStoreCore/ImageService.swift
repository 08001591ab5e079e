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
    /// Every store (`enabled_backends`), each with its own guard; one in legacy mode.
    public let stores: ImageStores
    /// The default store and its guard (`stores.default`).
    public let store: any ImageDataStore
    public let writeGuard: any WriteGuard
    public let limits: Limits
    /// Space before bytes, shared by every upload of this service (see `SpaceGate`).
    public let space: SpaceGate
    /// `[image_format] require_image_format_match`: data that is not its `disk_format` is refused (415).
    public let requireFormatMatch: Bool
    /// `[image_format] gpt_safety_checks_nonfatal`: GPT/MBR safety checks (`mbr`) whose failure is let through.
    public let gptNonfatalChecks: Set<String>
    /// This replica's id: recorded in `uploadOwner` of the images it writes and in its temporary file
    /// names, so recovery and takeover touch only what a given replica left.
    public let processToken: String
    /// Where `PUT /stage` puts data until it is imported (`[os_glance_staging_store]`); nil: no staging.
    public let staging: StagingArea?
    /// Where replicas record themselves (the repository, when it is one); nil: a single process.
    public let replicas: (any ReplicaRegistry)?
    /// This replica's lease, renewed by its heartbeat (`ReplicaHeartbeat`); nil: no lease is kept.
    public let lease: ReplicaLease?
    /// What this process is writing right now, whatever the catalogue says.
    public let inFlight = UploadsInFlight()
    let logger: Logger

    public init(
        repository: any ImageRepository, store: any ImageDataStore, writeGuard: any WriteGuard = UnguardedStore(),
        limits: Limits = .init(), requireFormatMatch: Bool = true, gptNonfatalChecks: Set<String> = [],
        processToken: String = ImageService.makeProcessToken(),
        staging: StagingArea? = nil, lease: ReplicaLease? = nil, stores: ImageStores? = nil,
        logger: Logger = Logger(label: "imagestore.images")
    ) {
        self.repository = repository
        let stores = stores ?? ImageStores(single: store, writeGuard: writeGuard, reservedSpace: limits.reservedSpace)
        self.stores = stores
        self.store = stores.default.store
        self.writeGuard = stores.default.writeGuard
        self.staging = staging
        self.limits = limits
        self.requireFormatMatch = requireFormatMatch
        self.gptNonfatalChecks = gptNonfatalChecks
        self.processToken = processToken
        self.replicas = repository as? any ReplicaRegistry
        self.lease = lease
        self.logger = logger
        self.space = stores.default.space
    }

    /// A fresh replica id: a lower-case UUID (it goes into temporary file names).
    public static func makeProcessToken() -> String {
        UUID().uuidString.lowercased()
    }

    // MARK: Upload

    /// Streams `body` into the store as the data of image `id`; returns the now-active image.
    /// - Parameter storeID: the store to write to (`X-Image-Meta-Store`); nil: the default store. An
    ///   unknown id is 400 and changes nothing.
    public func upload<Body: AsyncSequence>(
        _ id: ImageID, body: Body, declaredSize: Int64?, storeID: String? = nil
    ) async throws -> Image where Body.Element == ByteBuffer {
        try await receive(id, mode: .upload, declaredSize: declaredSize, storeID: storeID) { sink in
            try await Self.pump(body, into: sink)
        }
    }

    /// `PUT /stage`: streams `body` into the staging area exactly as an upload goes to the store
    /// (same checks, hashing and clean-up); the image ends `uploading` with its data staged.
    /// `stageHost` becomes `os_glance_stage_host` (Glance's `worker_self_reference_url`).
    public func stage<Body: AsyncSequence>(
        _ id: ImageID, body: Body, declaredSize: Int64?, stageHost: String? = nil
    ) async throws -> Image where Body.Element == ByteBuffer {
        guard let staging else { throw ImageStoreError.notFound("The staging area is not configured.") }
        // The staging directory is made on first use, once its guard allows writes (so never in a bare
        // mount point, and a store nobody stages to gets no extra directory).
        try await staging.writeGuard.checkWritable()
        try await staging.store.prepare()
        return try await receive(id, mode: .stage(host: stageHost), declaredSize: declaredSize) { sink in
            try await Self.pump(body, into: sink)
        }
    }

    /// An import's write to one store: streams `source` (staged data, a web download) into the store for
    /// an image its importer holds (`importing`, `uploadOwner` this process), records the store and the
    /// hashes, and — with `setActive` (Glance's `set_active`) — makes it `active`, with `finalize` applied
    /// in the same compare-and-set. On failure nothing is left in the store and the image stays
    /// `importing`, held by its importer, which decides whether another store is tried.
    public func importData(
        _ id: ImageID, storeID: String? = nil, setActive: Bool = true, finalize: @escaping @Sendable (inout Image) -> Void,
        source: (@escaping @Sendable (ByteBuffer) async throws -> Void) async throws -> Void
    ) async throws -> Image {
        try await receive(id, mode: .importing(finalize, setActive: setActive), declaredSize: nil, storeID: storeID, source: source)
    }

    /// What `receive` is doing: where the bytes go and which statuses it moves the image through.
    enum ReceiveMode: Sendable {
        case upload
        case stage(host: String?)
        case importing(@Sendable (inout Image) -> Void, setActive: Bool)

        /// The status an image must have to start, the one it has while bytes flow, and at the end.
        var statuses: (from: ImageStatus, during: ImageStatus, done: ImageStatus) {
            switch self {
            case .upload: (.queued, .saving, .active)
            case .stage: (.queued, .uploading, .uploading)
            case .importing(_, let setActive): (.importing, .importing, setActive ? .active : .importing)
            }
        }
    }

    /// Errors from a request body are the client going away; ours pass through unchanged.
    static func pump<Body: AsyncSequence>(
        _ body: Body, into sink: @escaping @Sendable (ByteBuffer) async throws -> Void
    ) async throws where Body.Element == ByteBuffer {
        do {
            for try await chunk in body { try await sink(chunk) }
        } catch let error as ImageStoreError {
            throw error
        } catch is CancellationError {
            throw ImageStoreError(.clientDisconnected, "The upload was cancelled")
        } catch {
            throw ImageStoreError(.clientDisconnected, "The client stopped sending the image data: \(error)")
        }
    }

    /// The one path image bytes take in (upload, stage, import): status compare-and-set, guard check,
    /// streaming into a temporary object while counting against cap/quota/declared size/free space and
    /// inspecting the format, finish (fsync), guard check again, commit, final compare-and-set.
    /// Any failure aborts the temporary object and puts the image back to `queued`.
    private func receive(
        _ id: ImageID, mode: ReceiveMode, declaredSize: Int64?, storeID: String? = nil,
        source: (@escaping @Sendable (ByteBuffer) async throws -> Void) async throws -> Void
    ) async throws -> Image {
        let (from, during, done) = mode.statuses
        // An unknown store is refused before anything is looked at or changed (400, as Glance).
        let named = try stores.store(named: storeID)
        let target: any ImageDataStore
        let guardian: any WriteGuard
        var space = named.space
        if case .stage = mode, let staging {
            (target, guardian) = (staging.store, staging.writeGuard)
            space = self.space
        } else {
            (target, guardian) = (named.store, named.writeGuard)
        }
        let stores = self.stores
        guard let image = try await repository.get(id) else { throw ImageStoreError.notFound("No image found with ID \(id)") }
        guard image.diskFormat != nil, image.containerFormat != nil else {
            throw ImageStoreError.badRequest("Properties disk_format, container_format must be set prior to saving data.")
        }
        guard image.status == from else {
            throw ImageStoreError.conflict("Image status transition from \(image.status.rawValue) to \(during.rawValue) is not allowed")
        }
        if case .importing = mode, image.uploadOwner != processToken {
            throw ImageStoreError.conflict("Image \(id) is being imported by another process")
        }
        if let declaredSize {
            guard declaredSize >= 0 else { throw ImageStoreError.badRequest("Image size must not be negative") }
            if declaredSize > limits.imageSizeCap { throw tooLarge() }
        }
        let quotaLeft = try await remainingQuota(for: image)
        if let declaredSize, let quotaLeft, declaredSize > quotaLeft { throw quotaExceeded(quotaLeft) }
        // Glance's check_quota: an upload of unknown size (an empty body too) is refused up front when
        // nothing is left. (Glance's imports always know their size.)
        if case .upload = mode, declaredSize == nil, let quotaLeft, quotaLeft <= 0 { throw quotaExceeded(quotaLeft) }

        try await guardian.checkWritable()
        // Space before bytes: a declared size is checked against the free space above the reserve before
        // anything is written (the image stays queued); a streamed upload is stopped at the reserve.
        // Without a reserve, only uploads that declare their size are measured.
        var ticket: SpaceTicket?
        if declaredSize != nil || !space.reserve.isNone { ticket = try await space.admit(declared: declaredSize) }
        defer { ticket?.release() }

        let token = processToken
        // Before the claim: recovery and takeover in this process must never see the claim without it.
        inFlight.insert(id)
        defer { inFlight.remove(id) }
        let leaseGeneration = lease?.generation
        try await repository.update(id, expecting: [from]) { image in
            image.status = during
            image.uploadOwner = token
        }

        var writer: (any ImageDataWriter)?
        var committed = false
        do {
            // glance_store reads a size of 0 as "not given": `x-openstack-image-size: 0` never refuses a body.
            let w = try await target.beginWrite(id, expectedSize: declaredSize == 0 ? nil : declaredSize)
            writer = w
            // As Glance, only `bare` containers are inspected: the format is checked on the bytes as they
            // pass, never by reading the data again.
            // Used by one stream at a time, strictly in order.
            nonisolated(unsafe) let inspection = image.containerFormat == "bare" ? FormatInspection() : nil
            let counter = ReceivedBytes()
            let cap = limits.imageSizeCap
            let tooLarge = self.tooLarge()
            let overQuota = quotaLeft.map { quotaExceeded($0) }
            try await source { [ticket] chunk in
                let received = counter.add(chunk.readableBytes)
                if received > cap { throw tooLarge }
                if let quotaLeft, received > quotaLeft, let overQuota { throw overQuota }
                try await ticket?.willWrite(chunk.readableBytes)
                if let inspection { chunk.withUnsafeReadableBytes { inspection.eat($0) } }
                try await w.write(chunk)
            }
            // A cancelled request (shutdown past the drain timeout) may see its body end early:
            // never treat that as the whole image.
            // An empty body that ended normally is a 0-byte image, as in Glance (glance_store writes an
            // empty file; size 0, the digests of no bytes).
            do { try Task.checkCancellation() } catch {
                throw ImageStoreError(.clientDisconnected, "The upload was cancelled")
            }
            // A mismatch or a failed safety check (qcow2 backing file…) is 415, and the data is dropped.
            let virtualSize = try inspection?.finish().verdict(
                diskFormat: image.diskFormat ?? "", requireMatch: requireFormatMatch, gptNonfatalChecks: gptNonfatalChecks)
            let staged = try await w.finish()
            // The share may have gone away while we streamed: check again before publishing.
            try await guardian.checkWritable()
            // Still ours? A replica whose lease lapsed (stopped, partitioned) may have been taken over:
            // another replica reset the image and removed our temporary file. Checked before the rename
            // (so a taken-over upload publishes nothing) and again in the final compare-and-set.
            try await checkStillOwned(id, during: during, leaseGeneration: leaseGeneration)
            try await w.commit()
            committed = true
            do {
                return try await repository.update(id, expecting: [during]) { image in
                    guard image.uploadOwner == token else { throw Self.takenOver(id) }
                    image.status = done
                    image.uploadOwner = nil
                    switch mode {
                    case .stage(let host):
                        // Staged data is hashed again when it is imported; only its host is recorded.
                        if let host { image.properties["os_glance_stage_host"] = host }
                        return
                    case .importing(let finalize, _):
                        // Still the importer's until it says otherwise (more stores to write).
                        if done == .importing { image.uploadOwner = token }
                        finalize(&image)
                    case .upload:
                        break
                    }
                    // Where the data now is (Glance's `stores`): the one store written.
                    stores.record([named.id], on: &image)
                    image.size = staged.size
                    image.checksum = staged.md5
                    image.osHashAlgo = staged.hashAlgorithm
                    image.osHashValue = staged.hashValue
                    if let virtualSize { image.virtualSize = virtualSize }
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
            // An import's image stays `importing` with its importer, which may try another store or reverts it.
            var resetsImage = true
            if case .importing = mode { resetsImage = false }
            await cleanUpFailedUpload(
                id, store: target, during: during, writer: writer, committed: committed, resetsImage: resetsImage, error: error)
            throw error
        }
    }

    /// Removes the temporary data and puts the image back to `queued`. Runs detached so a cancelled
    /// request (client gone) still cleans up completely.
    private func cleanUpFailedUpload(
        _ id: ImageID, store: any ImageDataStore, during: ImageStatus, writer: (any ImageDataWriter)?, committed: Bool,
        resetsImage: Bool = true, error: any Error
    ) async {
        let repository = self.repository
        let logger = self.logger
        let token = processToken
        await Task.detached {
            await writer?.abort()
            // Back to queued first, by compare-and-set: it waits on the row lock of a final compare-and-set
            // whose answer was lost (the database went away mid-commit), so what it sees is settled.
            var reset = false
            var settled = true
            do {
                if resetsImage {
                    try await repository.update(id, expecting: [during]) { image in
                        guard image.uploadOwner == token else { throw ImageStoreError.conflict("not this upload's") }
                        image.status = .queued
                        image.uploadOwner = nil
                    }
                    reset = true
                }
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
    private func checkStillOwned(_ id: ImageID, during: ImageStatus, leaseGeneration: Int?) async throws {
        // The database first: while it is down this answers 503 (try again), not a lost lease.
        guard let image = try await repository.get(id) else {
            throw ImageStoreError(
                .deletedDuringUpload,
                "Image \(id) could not be found after upload. The image may have been deleted during the upload, cleaning up the chunks uploaded.")
        }
        guard image.status == during, image.uploadOwner == processToken else { throw Self.takenOver(id) }
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

    /// Opens the image's data (or a range of it) from the best copy: the stores holding it by weight,
    /// falling back to the next when one refuses reads (guard) or has lost the file. Returns nil when
    /// the image has no data (→ 204). When every copy is unreadable, the last store's error (503).
    public func download(_ image: Image, range: Range<Int64>?) async throws -> (any ImageDataReader)? {
        guard image.hasData else { return nil }
        return try await openData(image, range: range)
    }

    /// `download` whatever the image's status: an import to several stores reads the stores it has
    /// written while the image is still `importing`.
    func openData(_ image: Image, range: Range<Int64>?) async throws -> (any ImageDataReader)? {
        var lastError: (any Error)?
        for named in stores.readOrder(of: image) {
            do {
                try await named.writeGuard.checkReadable()
                return try await named.store.read(image.id, range: range)
            } catch let error as ImageStoreError where error.code == .notFound {
                continue
            } catch {
                logger.warning(
                    "a copy of the image is not readable; trying the next store",
                    metadata: ["image_id": "\(image.id)", "store": "\(named.id)", "error": "\(error)"])
                lastError = error
            }
        }
        if let lastError { throw lastError }
        return nil
    }

    // MARK: Delete

    /// Deletes an image and its data in every store holding it. Every one of those stores must allow
    /// writes first: a delete refused by a guard changes nothing.
    public func delete(_ id: ImageID) async throws {
        guard let image = try await repository.get(id) else { throw ImageStoreError.notFound("No image found with ID \(id)") }
        if image.isProtected { throw ImageStoreError.forbidden("Image \(id) is protected and cannot be deleted.") }
        let hasData = image.hasData || image.status == .pendingDelete
        if hasData {
            let holders = stores.readOrder(of: image)
            for named in holders { try await named.writeGuard.checkWritable() }
            // pending_delete first: a crash between here and the row removal is finished at start-up,
            // and a failed data delete can be rolled back to the previous status.
            let previous = image.status
            try await repository.update(id, expecting: [previous]) { $0.status = .pendingDelete }
            var remaining = holders.map(\.id)
            do {
                for named in holders {
                    try await named.store.delete(id)
                    remaining.removeAll { $0 == named.id }
                }
            } catch {
                // The copies already gone are no longer listed: the image never points at missing data.
                let stores = self.stores
                let left = remaining
                _ = try? await repository.update(id, expecting: [.pendingDelete]) { image in
                    image.status = previous
                    if left.count != holders.count { stores.record(left, on: &image) }
                }
                throw error
            }
        }
        if let staging, image.status == .uploading || image.status == .importing {
            // Staged data belongs to the image: it goes with it (a running import then fails and stops).
            try await staging.writeGuard.checkWritable()
            _ = try await staging.store.delete(id)
        }
        // An upload in flight (saving) sees the row gone at its final compare-and-set and cleans up.
        try await repository.delete(id)
    }
}

// MARK: Copies in several stores

extension ImageService {
    /// Copies an active image's data into store `storeID` (copy-image): read from the best readable
    /// copy, written under the target's guard and reserve exactly as an upload (temporary file, fsync,
    /// guard check again, rename), checked against the image's checksum and multihash, then recorded in
    /// the image's stores by compare-and-set. Any failure leaves nothing in the target store.
    /// Returns the image as recorded; an image already in the store is returned unchanged.
    ///
    /// Within an import to several stores (`importTask`: the task holding the image's import lock) the
    /// image may still be `importing` with its data in the stores written so far; `finalize` (the
    /// import's progress, `active` once Glance's `set_active` says so) is applied in the same
    /// compare-and-set, which also requires the lock to be still that task's.
    @discardableResult
    public func copy(
        _ id: ImageID, to storeID: String, importTask: String? = nil, finalize: (@Sendable (inout Image) -> Void)? = nil
    ) async throws -> Image {
        let target = try stores.store(named: storeID)
        guard let image = try await repository.get(id) else { throw ImageStoreError.notFound("No image found with ID \(id)") }
        if let importTask {
            guard image.properties[ImportProperty.task] == importTask, image.status == .importing || image.status == .active else {
                throw ImageStoreError.conflict("Image \(id) is no longer held by import task \(importTask)")
            }
        } else if image.status != .active {
            throw ImageStoreError.conflict("Only images with status active can be targeted for copying")
        }
        if stores.locations(of: image).contains(target.id) { return image }
        inFlight.insert(id)
        defer { inFlight.remove(id) }
        try await target.writeGuard.checkWritable()
        let ticket = try await target.space.admit(declared: image.size)
        defer { ticket.release() }
        guard let reader = try await openData(image, range: nil) else {
            throw ImageStoreError.conflict("Image \(id) has no readable data to copy")
        }
        var writer: (any ImageDataWriter)?
        var committed = false
        let stores = self.stores
        do {
            let w = try await target.store.beginWrite(id, expectedSize: image.size)
            writer = w
            try await reader.forEachChunk { chunk in
                try await ticket.willWrite(chunk.readableBytes)
                try await w.write(chunk)
            }
            let staged = try await w.finish()
            // The copy must be the image: never record a store holding other bytes.
            guard staged.md5 == image.checksum, image.osHashValue == nil || staged.hashValue == image.osHashValue else {
                throw ImageStoreError.internal("the copy of image \(id) to store \(target.id) does not match the image's checksum")
            }
            try await target.writeGuard.checkWritable()
            try await w.commit()
            committed = true
            return try await repository.update(id, expecting: [.active, .deactivated, .importing]) { image in
                if let importTask, image.properties[ImportProperty.task] != importTask {
                    throw ImageStoreError.conflict("Image \(id) is no longer held by import task \(importTask)")
                }
                if importTask == nil, image.status == .importing {
                    throw ImageStoreError.conflict("Only images with status active can be targeted for copying")
                }
                var ids = stores.locations(of: image)
                ids.append(target.id)
                stores.record(ids, on: &image)
                finalize?(&image)
            }
        } catch {
            await reader.close()
            await writer?.abort()
            if committed {
                // Ours unless the image (still) lists the store: then another copy won and it is kept.
                let current = try? await repository.get(id)
                if current.map({ !stores.locations(of: $0).contains(target.id) }) ?? true {
                    _ = try? await target.store.delete(id)
                }
            }
            throw error
        }
    }

    /// Undoes an import whose `all_stores_must_succeed` failed after its first store (Glance reverts every
    /// store and queues the image): back to `queued` without data, its lock held by `taskID` kept for the
    /// caller to release, then the data goes from every store (a copy whose store refuses now is an
    /// orphan the start-up reconciliation removes).
    public func revertImport(_ id: ImageID, taskID: String) async {
        guard let before = try? await repository.get(id), before.properties[ImportProperty.task] == taskID else { return }
        let holders = stores.readOrder(of: before)
        do {
            try await repository.update(id, expecting: [.active, .importing]) { image in
                guard image.properties[ImportProperty.task] == taskID else { throw ImageStoreError.conflict("not this import's") }
                image.status = .queued
                image.uploadOwner = nil
                image.size = nil
                image.virtualSize = nil
                image.checksum = nil
                image.osHashAlgo = nil
                image.osHashValue = nil
                image.properties[ImageStores.locationsProperty] = nil
            }
        } catch {
            logger.warning("could not revert an import", metadata: ["image_id": "\(id)", "error": "\(error)"])
            return
        }
        for named in holders {
            do {
                try await named.writeGuard.checkWritable()
                try await named.store.delete(id)
            } catch {
                logger.warning(
                    "a reverted import's copy stays until start-up reconciliation",
                    metadata: ["image_id": "\(id)", "store": "\(named.id)", "error": "\(error)"])
            }
        }
    }

    /// `DELETE /v2/stores/{store}/{image}`: removes the copy in one store. The image must be active and
    /// keep at least one other copy (403, as Glance: delete the image instead). The store is struck
    /// from the image first, so it never points at missing data; data whose delete fails after that is
    /// an orphan the start-up reconciliation removes.
    public func removeCopy(_ id: ImageID, from storeID: String) async throws {
        guard let named = stores.store(storeID) else {
            throw ImageStoreError.conflict("The selected store \(storeID) is not available on this node.")
        }
        guard let image = try await repository.get(id) else { throw ImageStoreError.notFound("Failed to find image \(id)") }
        guard image.status == .active else {
            throw ImageStoreError.conflict("It's not allowed to remove image data from store if image status is not 'active'")
        }
        // Glance's order: the last copy (403) before a store that does not hold it (404).
        let holders = stores.locations(of: image)
        guard holders.count > 1 else {
            throw ImageStoreError.forbidden(
                "Cannot delete image data from the only store containing it. Consider deleting the image instead.")
        }
        guard holders.contains(named.id) else {
            throw ImageStoreError.notFound("Image \(id) is not stored in store \(named.id).")
        }
        try await named.writeGuard.checkWritable()
        let stores = self.stores
        try await repository.update(id, expecting: [.active]) { image in
            let left = stores.locations(of: image).filter { $0 != named.id }
            guard !left.isEmpty else {
                throw ImageStoreError.forbidden(
                    "Cannot delete image data from the only store containing it. Consider deleting the image instead.")
            }
            stores.record(left, on: &image)
        }
        do {
            try await named.store.delete(id)
        } catch {
            logger.warning(
                "a copy struck from the image could not be deleted; start-up reconciliation removes it",
                metadata: ["image_id": "\(id)", "store": "\(named.id)", "error": "\(error)"])
        }
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
        /// Imports a dead process was running, failed cleanly (their image back to `queued`): their task ids.
        public var interruptedImports: [String] = []
        /// Staged data no finished stage or running import holds, removed.
        public var stagedDataRemoved = 0
    }

    /// Statuses of an image some replica is writing.
    public static let writingStatuses: Set<ImageStatus> = [.saving, .uploading, .importing]

    /// What recovery and takeover do to an image whose writer is gone: back to `queued`, unowned; an
    /// import fails as Glance reports it (`os_glance_failed_import` names the stores it was going to).
    static func abandon(_ image: inout Image) {
        if image.status == .importing {
            let stores = image.properties[ImportProperty.importingToStores] ?? ""
            image.properties[ImportProperty.task] = nil
            image.properties[ImportProperty.importingToStores] = ""
            image.properties[ImportProperty.failedImport] = stores
            // An import to several stores may have written some already: the image no longer points to
            // them (queued has no data), so the reconciliation below removes them as orphans.
            image.properties[ImageStores.locationsProperty] = nil
            image.size = nil
            image.virtualSize = nil
            image.checksum = nil
            image.osHashAlgo = nil
            image.osHashValue = nil
        }
        image.status = .queued
        image.uploadOwner = nil
    }

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
        let inFlight = self.inFlight
        // Left behind: not being written by this process now (an upload in flight, or an import it runs),
        // and — in a shared catalogue — this replica's own (other replicas' are taken over after their
        // lease). An embedded catalogue serves one replica: every other writer was an earlier run of it.
        @Sendable func leftBehind(_ image: Image) -> Bool {
            guard !inFlight.contains(image.id) else { return false }
            if image.status == .importing && image.uploadOwner == me { return false }
            // A finished stage (no owner) stays staged, importable.
            if image.status == .uploading && image.uploadOwner == nil { return false }
            return !shared || image.uploadOwner == me
        }
        for image in try await repository.images(withStatus: Self.writingStatuses) where leftBehind(image) {
            let owner = image.uploadOwner
            do {
                try await repository.update(image.id, expecting: [image.status]) { current in
                    // Compare-and-set on the owner too: a new upload may have claimed it since the listing.
                    guard current.uploadOwner == owner else { throw ImageStoreError.conflict("claimed again") }
                    Self.abandon(&current)
                }
                // An import that was running fails cleanly: never half-active; its staged data is swept below.
                if image.status == .importing {
                    if let task = image.properties[ImportProperty.task], !task.isEmpty { report.interruptedImports.append(task) }
                } else {
                    report.uploadsReset += 1
                }
            } catch let error as ImageStoreError where error.code == .conflict || error.code == .notFound {
                continue
            }
        }
        // A copy (copy-image) this process's predecessor was making: the image stays active with the
        // copies it has; the stores it was going to are reported failed, and its lock goes.
        for image in try await repository.images(withStatus: [.active]) {
            guard let task = image.properties[ImportProperty.task], !task.isEmpty, let owner = image.uploadOwner,
                !inFlight.contains(image.id), !shared || owner == me
            else { continue }
            do {
                try await repository.update(image.id, expecting: [.active]) { current in
                    guard current.uploadOwner == owner, current.properties[ImportProperty.task] == task else {
                        throw ImageStoreError.conflict("claimed again")
                    }
                    ImageImporter.endCopy(&current, failed: ImageStores.parse(current.properties[ImportProperty.importingToStores] ?? ""))
                }
                report.interruptedImports.append(task)
            } catch let error as ImageStoreError where error.code == .conflict || error.code == .notFound {
                continue
            }
        }
        // Each store is reconciled on its own once its guard allows writes: one gone share does not keep
        // the others unrepaired. `storeChecked` only when every store (and staging) was.
        var writable: [NamedStore] = []
        for named in stores.all {
            do {
                try await named.writeGuard.checkWritable()
                writable.append(named)
            } catch {
                logger.warning(
                    "start-up recovery of a store skipped: it is not writable", metadata: ["store": "\(named.id)", "reason": "\(error)"])
            }
        }
        var stagingWritable = staging != nil
        do {
            guard !writable.isEmpty else { throw ImageStoreError(.storeUnavailable, "no store is writable") }
            if let staging { try await staging.writeGuard.checkWritable() }
        } catch {
            // With several stores the staging area (inside the default store, or on its own share) being
            // gone only postpones its own part: the other stores are reconciled all the same.
            guard stores.isMultiStore, !writable.isEmpty else {
                logger.warning("start-up recovery of the store skipped: it is not writable", metadata: ["reason": "\(error)"])
                return report
            }
            logger.warning("start-up recovery of the staging area skipped: it is not writable", metadata: ["reason": "\(error)"])
            stagingWritable = false
        }
        report.storeChecked = writable.count == stores.all.count && (staging == nil || stagingWritable)
        let staging = stagingWritable ? self.staging : nil
        if shared {
            // Names without a replica id come from a version before replicas, which ran alone: any such
            // file unchanged for twice the lease is a leftover.
            let legacyBefore = Date().addingTimeInterval(-2 * (lease?.leaseTime ?? .seconds(60)).fractionalSeconds)
            let mine: @Sendable (TemporaryFileInfo) -> Bool = { $0.replica == me || ($0.replica == nil && $0.modified < legacyBefore) }
            for named in writable { report.temporaryFilesRemoved += try await named.store.sweepTemporaryFiles(where: mine) }
            if let staging {
                do { report.temporaryFilesRemoved += try await staging.store.sweepTemporaryFiles(where: mine) } catch {
                    logger.info("staging area not swept", metadata: ["reason": "\(error)"])
                }
            }
        } else {
            for named in writable { report.temporaryFilesRemoved += try await named.store.sweepTemporaryFiles() }
            if let staging {
                // A staging directory nobody staged to yet does not exist: nothing to clean there.
                do { report.temporaryFilesRemoved += try await staging.store.sweepTemporaryFiles() } catch {
                    logger.info("staging area not swept", metadata: ["reason": "\(error)"])
                }
            }
        }
        if let staging {
            let stagedIDs = (try? await staging.store.storedIDs()) ?? []
            for id in stagedIDs {
                // Staged data is kept for a finished stage, and for an import or stage running now (here, or
                // on another replica of a shared catalogue: a dead one's is left to its takeover).
                let image = try await repository.get(id)
                if let image, image.status == .uploading, image.uploadOwner == nil { continue }
                if let image, image.status == .importing || image.status == .uploading,
                    let owner = image.uploadOwner, owner == me || shared
                {
                    continue
                }
                if (try? await staging.store.delete(id)) == true { report.stagedDataRemoved += 1 }
            }
            // Only what was staged here: with a staging area per replica, another replica's staged images
            // have their data there, and stay staged.
            for image in try await repository.images(withStatus: [.uploading]) where image.uploadOwner == nil && staging.holds(image) {
                do {
                    _ = try await staging.store.size(image.id)
                    continue
                } catch let error as ImageStoreError where error.code == .notFound {}
                // "Staged" with nothing staged: it can only be staged again.
                _ = try? await repository.update(image.id, expecting: [.uploading]) { image in
                    guard image.uploadOwner == nil else { return }
                    image.status = .queued
                    image.properties[ImportProperty.stageHost] = nil
                }
                report.uploadsReset += 1
            }
        }
        let writableIDs = Set(writable.map(\.id))
        for image in try await repository.images(withStatus: [.pendingDelete]) {
            // Finished only where every copy can be removed now; the rest waits for the next attempt.
            let holders = stores.readOrder(of: image)
            guard holders.allSatisfy({ writableIDs.contains($0.id) }) else { continue }
            do {
                for named in holders { try await named.store.delete(image.id) }
                try await repository.delete(image.id)
                report.deletesFinished += 1
            } catch {
                logger.warning("could not finish an interrupted delete", metadata: ["image_id": "\(image.id)", "error": "\(error)"])
            }
        }
        let withDataImages = try await repository.images(withStatus: [.active, .deactivated])
        // Uploads other replicas hold right now may be between their rename and `active`: not ours to judge.
        let heldElsewhere = Set(try await repository.images(withStatus: [.saving, .importing]).map(\.id))
        let stores = self.stores
        for named in writable {
            let withData = Set(withDataImages.filter { stores.locations(of: $0).contains(named.id) }.map(\.id))
            // Copies being made now (copy-image holds its active image) are not orphans.
            let copying = Set(withDataImages.filter { $0.uploadOwner != nil }.map(\.id))
            let stored = Set(try await named.store.storedIDs())
            for id in stored.subtracting(withData).subtracting(heldElsewhere).subtracting(copying) {
                // Unreferenced: renamed into place but never marked active (or its image is gone, or no
                // longer lists this store). Recovery may run late (the share answered only after start-up),
                // with uploads of this process running: look at the image again right before deleting, and
                // leave data an upload holds or published.
                if inFlight.contains(id) { continue }
                if let image = try await repository.get(id) {
                    if [.saving, .importing].contains(image.status) || image.uploadOwner != nil { continue }
                    if image.hasData && stores.locations(of: image).contains(named.id) { continue }
                }
                logger.warning("removing data no active image points to", metadata: ["image_id": "\(id)", "store": "\(named.id)"])
                if (try? await named.store.delete(id)) == true { report.orphanedDataRemoved += 1 }
            }
            for id in withData.subtracting(stored) {
                // The listing may predate an upload that became active since: ask the store again.
                // Only a definite "not found" changes the image; a store that stopped answering fails this
                // attempt (retried later).
                do {
                    _ = try await named.store.size(id)
                    continue
                } catch let error as ImageStoreError where error.code == .notFound {}
                do {
                    let updated = try await repository.update(id, expecting: [.active, .deactivated]) { image in
                        // The store is struck from the image; with no copy left it goes back to queued.
                        let left = stores.locations(of: image).filter { $0 != named.id }
                        if left.isEmpty {
                            image.status = .queued
                            image.size = nil
                            image.checksum = nil
                            image.osHashAlgo = nil
                            image.osHashValue = nil
                            image.properties[ImageStores.locationsProperty] = nil
                        } else {
                            stores.record(left, on: &image)
                        }
                    }
                    if updated.status == .queued {
                        logger.error("active image has no data file: reset to queued", metadata: ["image_id": "\(id)"])
                        report.missingDataReset += 1
                    } else {
                        logger.error(
                            "a store lost its copy of an image: struck from the image's stores",
                            metadata: ["image_id": "\(id)", "store": "\(named.id)"])
                    }
                } catch {
                    logger.warning("could not reset an image without data", metadata: ["image_id": "\(id)", "error": "\(error)"])
                }
            }
        }
        return report
    }
}

/// The staging store of interoperable import (Glance's `os_glance_staging_store`): a data store with its
/// own guard (the store's guard when it lives on the same share).
public struct StagingArea: Sendable {
    public let store: any ImageDataStore
    public let writeGuard: any WriteGuard
    /// This replica's `worker_self_reference_url`, recorded as `os_glance_stage_host` on what it stages:
    /// an image staged under another host has its data in that replica's staging area, not here.
    public let stageHost: String?
    public init(store: any ImageDataStore, writeGuard: any WriteGuard, stageHost: String? = nil) {
        self.store = store
        self.writeGuard = writeGuard
        self.stageHost = stageHost
    }

    /// Whether `image`'s staged data would be in this staging area: staged with no host recorded (one
    /// staging area for every replica) or under this replica's.
    public func holds(_ image: Image) -> Bool {
        guard let host = image.properties[ImportProperty.stageHost], !host.isEmpty else { return true }
        return host == stageHost
    }
}

/// Bytes received so far by one stream (its chunks arrive strictly in order).
final class ReceivedBytes: @unchecked Sendable {
    private(set) var total: Int64 = 0
    func add(_ count: Int) -> Int64 {
        total += Int64(count)
        return total
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
            // A finished stage has no writer: it waits, importable, for its import.
            if image.status == .uploading && image.uploadOwner == nil { return false }
            let owner = image.uploadOwner ?? ""
            if owner == me { return true }  // a claim of an earlier pass that could not finish
            if expired.contains(owner) { return true }
            return !known.contains(owner) && image.updatedAt < orphanedBefore
        }
        guard !candidates.isEmpty || !expired.isEmpty else { return report }
        do {
            // Every store: a dead upload's files may be in any of them.
            for named in stores.all { try await named.writeGuard.checkWritable() }
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
                    for named in stores.all {
                        report.temporaryFilesRemoved += try await named.store.sweepTemporaryFiles { $0.replica == owner && $0.imageID == id }
                    }
                }
                for named in stores.all { try await named.store.delete(id) }
                // 3. Back to queued: it can be uploaded again.
                try await repository.update(id, expecting: Self.writingStatuses) { current in
                    guard current.uploadOwner == me else { throw ImageStoreError.conflict("claimed meanwhile") }
                    Self.abandon(&current)
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
            for named in stores.all {
                report.temporaryFilesRemoved += try await named.store.sweepTemporaryFiles { $0.replica == dead }
            }
            if try await replicas.removeReplica(dead, ifExpired: lease) {
                report.replicasRemoved.append(dead)
                logger.warning("removed a replica whose lease expired", metadata: ["replica": "\(dead)"])
            }
        }
        return report
    }
}
