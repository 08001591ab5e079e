import Foundation
import Logging
import NIOCore
import Synchronization

/// The interoperable import methods (`enabled_import_methods`).
public enum ImportMethod: Sendable, Equatable {
    case glanceDirect
    case webDownload(uri: String)
    case copyImage

    public static let allNames = ["glance-direct", "web-download", "copy-image"]

    public var name: String {
        switch self {
        case .glanceDirect: "glance-direct"
        case .webDownload: "web-download"
        case .copyImage: "copy-image"
        }
    }
}

/// The image properties an import maintains, as Glance names them.
public enum ImportProperty {
    public static let task = "os_glance_import_task"
    public static let importingToStores = "os_glance_importing_to_stores"
    public static let failedImport = "os_glance_failed_import"
    public static let stageHost = "os_glance_stage_host"
}

/// Downloads a `web-download` URI, handing each chunk to `sink` in order (the sink applies the size
/// cap, so a server that sends too much is stopped there). Throws an `ImageStoreError` saying why.
public protocol ImageSourceFetcher: Sendable {
    func fetch(_ uri: String, into sink: @escaping @Sendable (ByteBuffer) async throws -> Void) async throws
    /// Whether `uri` passes `[import_filtering_opts]` (asked when the import is requested).
    func permits(_ uri: String) async -> Bool
}

/// Runs imports in the background (a Swift task per import, owned by this object, not by the request
/// that started it: a client that disconnects does not stop its import). Each import is recorded as a
/// Glance `api_image_import` task; the image carries Glance's progress properties and the
/// `os_glance_import_task` lock while it runs. Success: `active`, staging data removed. Failure: back to
/// `queued`, `os_glance_failed_import` names the store, staging data removed, the task says why.
public final class ImageImporter: Sendable {
    public let service: ImageService
    public let tasks: any TaskRepository
    /// The store images are imported to (the one `/v2/info/stores` lists).
    public let storeID: String
    let fetcher: (any ImageSourceFetcher)?
    let logger: Logger
    private let running = Mutex<[String: Task<Void, Never>]>([:])

    public init(
        service: ImageService, tasks: any TaskRepository, storeID: String, fetcher: (any ImageSourceFetcher)?, logger: Logger
    ) {
        self.service = service
        self.tasks = tasks
        self.storeID = storeID
        self.fetcher = fetcher
        self.logger = logger
    }

    /// Glance's checks of the image's state for `method` (`images.py import_image`), each a 409.
    public static func checkState(_ image: Image, for method: ImportMethod) throws {
        if image.status == .active && method != .copyImage {
            throw ImageStoreError.conflict("Image with status active cannot be target for import")
        }
        if image.status != .active && method == .copyImage {
            throw ImageStoreError.conflict("Only images with status active can be targeted for copying")
        }
        if case .webDownload = method, image.status != .queued {
            throw ImageStoreError.conflict("Image needs to be in 'queued' state to use 'web-download' method")
        }
        // `uploading` with an owner is a stage still streaming: nothing is staged yet.
        if method == .glanceDirect && (image.status != .uploading || image.uploadOwner != nil) {
            throw ImageStoreError.conflict("Image needs to be staged before 'glance-direct' method can be used")
        }
        if image.containerFormat == nil {
            throw ImageStoreError.conflict("'container_format' needs to be set before import")
        }
        if image.diskFormat == nil { throw ImageStoreError.conflict("'disk_format' needs to be set before import") }
    }

    /// Takes the image's import lock (`importing`, owned by this process; for copy-image the image stays
    /// `active`), records the task and starts the import in the background. Returns the task as recorded.
    /// - Parameters:
    ///   - input: the task's `input` JSON text (`image_id`, `import_req`, `backend`).
    ///   - stores: where the data goes, in order (validated by the caller); empty: the default store.
    ///     glance-direct and web-download write the first and copy to the others; copy-image copies to each.
    ///   - allMustSucceed: `all_stores_must_succeed`: a copy that fails stops the import (task failure);
    ///     otherwise the failed stores are only named in `os_glance_failed_import`.
    public func start(
        _ id: ImageID, method: ImportMethod, input: String, owner: String?, userID: String?, requestID: String?,
        stores: [String] = [], allMustSucceed: Bool = true
    ) async throws -> ImageTask {
        let targets = stores.isEmpty ? [storeID] : stores
        if method == .copyImage, !service.stores.isMultiStore || targets.allSatisfy({ service.stores.store($0) == nil }) {
            throw ImageStoreError.conflict("copy-image needs a second store")
        }
        if case .webDownload = method, fetcher == nil {
            throw ImageStoreError.badRequest("Unknown import method name 'web-download'.")
        }
        if method == .glanceDirect, service.staging == nil {
            throw ImageStoreError.badRequest("Unknown import method name 'glance-direct'.")
        }
        let taskID = UUID().uuidString.lowercased()
        let isCopy = method == .copyImage
        let from: ImageStatus = method == .glanceDirect ? .uploading : isCopy ? .active : .queued
        let token = service.processToken
        // Held in flight from before the claim to the end of the run: recovery and takeover in this process
        // must never take an import it is running for a leftover.
        let inFlight = service.inFlight
        inFlight.insert(id)
        var started = false
        defer { if !started { inFlight.remove(id) } }
        try await service.repository.update(id, expecting: nil) { image in
            if let held = image.properties[ImportProperty.task], !held.isEmpty {
                throw ImageStoreError.conflict(
                    "New operation on image '\(id)' is not permitted as prior operation is still in progress")
            }
            try ImageImporter.checkState(image, for: method)
            // A copy keeps the image active (its data is served meanwhile); the owner marks the copy as
            // this process's, so a restart can tell a copy that died from one running.
            if !isCopy { image.status = .importing }
            image.uploadOwner = token
            image.properties[ImportProperty.task] = taskID
            // Glance's add_importing_stores / remove_failed_stores (sorted lists).
            image.properties[ImportProperty.importingToStores] = ImageImporter.merge(
                image.properties[ImportProperty.importingToStores], adding: targets)
            image.properties[ImportProperty.failedImport] = ImageImporter.merge(
                image.properties[ImportProperty.failedImport], removing: targets)
        }
        let task = ImageTask(
            id: taskID, type: "api_image_import", status: .pending, input: input, owner: owner, imageID: id, userID: userID,
            requestID: requestID, expiresAt: Date().addingTimeInterval(48 * 3600))
        do {
            try await tasks.createTask(task)
        } catch {
            // No task, no import: give the image back as it was.
            _ = try? await service.repository.update(id, expecting: [isCopy ? .active : .importing]) { image in
                image.status = from
                image.uploadOwner = nil
                image.properties[ImportProperty.task] = nil
                image.properties[ImportProperty.importingToStores] = ""
            }
            throw error
        }
        started = true
        running.withLock { running in
            running[taskID] = Task.detached { [self] in
                await self.run(id, taskID: taskID, method: method, targets: targets, allMustSucceed: allMustSucceed)
                inFlight.remove(id)
                _ = self.running.withLock { $0.removeValue(forKey: taskID) }
            }
        }
        logger.info("import started", metadata: ["image_id": "\(id)", "task_id": "\(taskID)", "method": "\(method.name)"])
        return task
    }

    /// Whether a web-download of `uri` would be allowed (no web-download client: never).
    public func permits(_ uri: String) async -> Bool { await fetcher?.permits(uri) ?? false }

    /// Imports in flight right now.
    public var runningCount: Int { running.withLock { $0.count } }

    /// Waits until every running import has ended (tests; shutdown after `cancelAll`).
    public func waitForAll() async {
        while true {
            let tasks = running.withLock { Array($0.values) }
            if tasks.isEmpty { return }
            for task in tasks { await task.value }
        }
    }

    /// Stops every running import (server shutdown): each fails cleanly (image `queued`, nothing staged).
    public func cancelAll() async {
        let tasks = running.withLock { Array($0.values) }
        for task in tasks { task.cancel() }
        await waitForAll()
    }

    /// The end of a copy as Glance reports it: lock released, nothing left importing, `failed` named.
    public static func endCopy(_ image: inout Image, failed: [String]) {
        image.properties[ImportProperty.failedImport] = merge(image.properties[ImportProperty.failedImport], adding: failed)
        image.properties[ImportProperty.importingToStores] = ""
        image.properties[ImportProperty.task] = nil
        image.uploadOwner = nil
    }

    private func run(_ id: ImageID, taskID: String, method: ImportMethod, targets: [String], allMustSucceed: Bool) async {
        _ = try? await tasks.updateTask(taskID) { $0.status = .processing }
        if method == .copyImage {
            if let failure = await copy(id, taskID: taskID, to: targets, allMustSucceed: allMustSucceed) {
                _ = try? await tasks.updateTask(taskID) { task in
                    task.status = .failure
                    task.message = failure
                }
                logger.warning("import failed", metadata: ["image_id": "\(id)", "task_id": "\(taskID)", "error": "\(failure)"])
                return
            }
            await succeed(id, taskID: taskID)
            return
        }
        await importToStores(id, taskID: taskID, method: method, targets: targets, allMustSucceed: allMustSucceed)
    }

    private func succeed(_ id: ImageID, taskID: String) async {
        _ = try? await tasks.updateTask(taskID) { task in
            task.status = .success
            task.result = "{\"image_id\": \"\(id)\"}"
        }
        logger.info("import done", metadata: ["image_id": "\(id)", "task_id": "\(taskID)"])
    }

    /// glance-direct and web-download, as Glance's serial flow (`api_image_import.get_flow`, one
    /// `_ImportToStore` per store, `max_parallel_stores = 1`): the stores are written one after the
    /// other, and `os_glance_importing_to_stores` loses each as it is done. Glance's `set_active`: with
    /// `all_stores_must_succeed` the image stays `importing` until the last store is written, and any store
    /// failing fails the import (what was written goes, the image is `queued`); without it the image is
    /// `active` after the first store that succeeds, a store that fails (the first one too) is added to
    /// `os_glance_failed_import` and the next is tried, and the import fails only when none succeeded.
    ///
    /// The first store that succeeds gets the data from the source (staging, the web server); later
    /// ones copy it from a store already written (checked against the image's hashes): a web download is
    /// fetched again only for a store tried after every earlier one failed. Data that is refused for itself (not its format, too large, the web
    /// server failing) would fail in every store: that fails the whole import at once.
    private func importToStores(_ id: ImageID, taskID: String, method: ImportMethod, targets: [String], allMustSucceed: Bool) async {
        let token = service.processToken
        var written: [String] = []
        var failed: [String] = []
        for (index, store) in targets.enumerated() {
            let rest = Array(targets[(index + 1)...])
            // Glance's set_active. The last store's is applied by the completion below, in the same
            // compare-and-set that releases the lock, once the staged copy is gone: a client that sees
            // `active` finds the import finished.
            let setActive = !allMustSucceed && !rest.isEmpty
            // The store is done: out of the importing list (Glance's remove_importing_stores), `active` when
            // set_active says so, still the importer's until the completion.
            let done: @Sendable (inout Image) -> Void = { image in
                image.properties[ImportProperty.importingToStores] = ImageImporter.merge(
                    image.properties[ImportProperty.importingToStores], removing: [store])
                if setActive && image.status == .importing { image.status = .active }
                image.uploadOwner = token
            }
            do {
                try Task.checkCancellation()
                if written.isEmpty {
                    try await importFromSource(id, method: method, store: store, setActive: setActive, finalize: done)
                } else {
                    try await service.copy(id, to: store, importTask: taskID, finalize: done)
                }
                written.append(store)
                logger.info("image imported to a store", metadata: ["image_id": "\(id)", "store": "\(store)", "task_id": "\(taskID)"])
            } catch {
                let fatal = allMustSucceed || Self.failsEveryStore(error) || Task.isCancelled
                logger.warning(
                    "import to a store failed",
                    metadata: ["image_id": "\(id)", "store": "\(store)", "error": "\(error)", "import_continues": "\(!fatal)"])
                guard fatal else {
                    failed.append(store)
                    let repository = service.repository
                    // Detached: a cancelled import (shutdown) still leaves its image's properties right.
                    _ = await Task.detached {
                        try? await repository.update(id, expecting: nil) { image in
                            guard image.properties[ImportProperty.task] == taskID else { return }
                            image.properties[ImportProperty.importingToStores] = ImageImporter.merge(
                                image.properties[ImportProperty.importingToStores], removing: [store])
                            image.properties[ImportProperty.failedImport] = ImageImporter.merge(
                                image.properties[ImportProperty.failedImport], adding: [store])
                        }
                    }.value
                    continue
                }
                // Glance reverts: what was written goes and the image is queued. web-download's revert
                // names every store failed (`BaseDownload.revert`); glance-direct names the store that
                // failed, and ImageStore those not tried too (Glance leaves them "importing" on an image it
                // leaves `importing`: see docs/api.md).
                if !written.isEmpty { await service.revertImport(id, taskID: taskID) }
                let named: [String] =
                    if case .webDownload = method { targets } else { failed + [store] + rest }
                await fail(id, taskID: taskID, method: method, failedStores: named, error: error)
                return
            }
        }
        if written.isEmpty {
            // Every store failed (all_stores_must_succeed false): Glance's _VerifyImageState reverts to queued.
            await fail(
                id, taskID: taskID, method: method, failedStores: failed,
                error: ImageStoreError(.internal, "None of the uploads finished! Failed stores: \(failed.joined(separator: ","))"))
            return
        }
        // Glance's _DeleteFromFS then _CompleteTask: the staged copy goes, the lock is released.
        if method == .glanceDirect, let staging = service.staging { _ = try? await staging.store.delete(id) }
        let repository = service.repository
        let completed = await Task.detached {
            do {
                try await repository.update(id, expecting: [.importing, .active]) { image in
                    guard image.properties[ImportProperty.task] == taskID else {
                        throw ImageStoreError.conflict("Image \(id) is no longer held by import task \(taskID)")
                    }
                    image.status = .active
                    image.properties[ImportProperty.task] = nil
                    image.properties[ImportProperty.stageHost] = nil
                    image.uploadOwner = nil
                }
                return true
            } catch {
                // No answer (the database went away): the compare-and-set may have committed all the same.
                let settled = try? await repository.get(id)
                return settled?.status == .active && settled?.properties[ImportProperty.task] == nil
            }
        }.value
        guard completed else {
            // Never left `importing` for good: what was written goes, as for any failure.
            await service.revertImport(id, taskID: taskID)
            await fail(
                id, taskID: taskID, method: method, failedStores: targets,
                error: ImageStoreError(.internal, "The import could not be completed: the image could not be made active"))
            return
        }
        await succeed(id, taskID: taskID)
    }

    /// Writes the image's data to `store` from where the import gets it: the staging area or the web.
    private func importFromSource(
        _ id: ImageID, method: ImportMethod, store: String, setActive: Bool, finalize: @escaping @Sendable (inout Image) -> Void
    ) async throws {
        switch method {
        case .glanceDirect:
            guard let staging = service.staging else { throw ImageStoreError.internal("no staging area") }
            try await staging.writeGuard.checkReadable()
            let reader = try await staging.store.read(id, range: nil)
            do {
                _ = try await service.importData(id, storeID: store, setActive: setActive, finalize: finalize) { sink in
                    try await reader.forEachChunk(sink)
                }
            } catch {
                await reader.close()
                throw error
            }
        case .webDownload(let uri):
            guard let fetcher else { throw ImageStoreError.internal("no web-download client") }
            _ = try await service.importData(id, storeID: store, setActive: setActive, finalize: finalize) { sink in
                try await fetcher.fetch(uri, into: sink)
            }
        case .copyImage:
            throw ImageStoreError.internal("copy-image has no source but the image")
        }
    }

    /// Errors about the data itself or where it comes from (not its format, too large, over quota, the
    /// web server or the staged copy failing, the image gone or taken): every store would refuse it alike.
    /// A store's own trouble (its share gone, full, read-only, an I/O error) is that store's only.
    static func failsEveryStore(_ error: any Error) -> Bool {
        guard let error = error as? ImageStoreError else { return error is CancellationError }
        switch error.code {
        case .storeUnavailable, .storageFull, .writeDenied, .internal: return false
        default: return true
        }
    }

    /// Glance's `merge_store_list`: the comma-separated list with `adding` added and `removing` taken out,
    /// sorted, without duplicates or empty names.
    public static func merge(_ list: String?, adding: [String] = [], removing: [String] = []) -> String {
        var stores = Set(ImageStores.parse(list ?? ""))
        stores.formUnion(adding.filter { !$0.isEmpty })
        stores.subtract(removing)
        return stores.sorted().joined(separator: ",")
    }

    /// Copies an active image to `stores` one after the other, each under its own guard; the image's
    /// `os_glance_importing_to_stores` shrinks as each ends and a failed one goes to
    /// `os_glance_failed_import`. Returns why the import failed (a copy failed and all had to succeed),
    /// or nil. The lock is released at the end either way.
    ///
    /// When all must succeed and one fails, Glance reverts: the copies this import made go again (the
    /// image stays `active` where it was); the failed store and those not tried are named failed.
    private func copy(_ id: ImageID, taskID: String, to stores: [String], allMustSucceed: Bool) async -> String? {
        var failure: String?
        var made: [String] = []
        var pending = stores
        let repository = service.repository
        while !pending.isEmpty {
            let store = pending.removeFirst()
            var failed: [String] = []
            do {
                try Task.checkCancellation()
                try await service.copy(id, to: store)
                made.append(store)
                logger.info("image copied", metadata: ["image_id": "\(id)", "store": "\(store)", "task_id": "\(taskID)"])
            } catch {
                let message =
                    switch error {
                    case let error as ImageStoreError: error.message
                    case is CancellationError: "The import was stopped: the server is shutting down"
                    default: "\(error)"
                    }
                logger.warning("copy to a store failed", metadata: ["image_id": "\(id)", "store": "\(store)", "error": "\(message)"])
                failed = [store]
                if allMustSucceed || error is CancellationError {
                    // Glance stops at the first failure when all must succeed: the rest is not attempted.
                    failed += pending
                    pending = []
                    failure = "Failed to copy the image to store \(store): \(message)"
                    for copy in made.reversed() { try? await service.removeCopy(id, from: copy) }
                }
            }
            let left = pending
            let failedNow = failed
            // Detached: a cancelled import (shutdown) still leaves its image's properties right.
            _ = await Task.detached {
                try? await repository.update(id, expecting: nil) { image in
                    guard image.properties[ImportProperty.task] == taskID else { return }
                    image.properties[ImportProperty.failedImport] = ImageImporter.merge(
                        image.properties[ImportProperty.failedImport], adding: failedNow)
                    image.properties[ImportProperty.importingToStores] = ImageImporter.merge(
                        image.properties[ImportProperty.importingToStores], removing: [store] + failedNow)
                    if left.isEmpty { ImageImporter.endCopy(&image, failed: []) }
                }
            }.value
        }
        return failure
    }

    private func fail(_ id: ImageID, taskID: String, method: ImportMethod, failedStores: [String], error: any Error) async {
        let message =
            switch error {
            case let error as ImageStoreError: error.message
            case is CancellationError: "The import was stopped: the server is shutting down"
            default: "\(error)"
            }
        let token = service.processToken
        let repository = service.repository
        let staging = service.staging
        // Detached: a cancelled import (shutdown) still leaves its image clean.
        await Task.detached {
            do {
                try await repository.update(id, expecting: nil) { image in
                    guard image.properties[ImportProperty.task] == taskID else { return }
                    if image.status == .importing && (image.uploadOwner == token || image.uploadOwner == nil) {
                        image.status = .queued
                        image.uploadOwner = nil
                    }
                    ImageImporter.endCopy(&image, failed: failedStores)
                }
            } catch {
                // Deleted meanwhile: nothing to restore.
            }
            if method == .glanceDirect, let staging {
                // The image is queued again: its staged data can never be imported, so it goes now.
                _ = try? await staging.store.delete(id)
            }
        }.value
        _ = try? await tasks.updateTask(taskID) { task in
            task.status = .failure
            task.message = message
        }
        logger.warning("import failed", metadata: ["image_id": "\(id)", "task_id": "\(taskID)", "error": "\(message)"])
    }
}

/// `[import_filtering_opts]`: which `web-download` URIs may be fetched, as Glance's `validate_import_uri`.
/// An allow list, when not empty, wins over its deny list. Hosts are compared as Glance's
/// `normalize_hostname` leaves them: IP addresses in their canonical form, numeric spellings that are not
/// one (`2130706433`, `127.1`, `0x7f.1`, leading zeros) refused, names as written — and a name must
/// resolve (`permits`). Beyond Glance, loopback, private and link-local addresses are refused unless
/// `allowed_hosts` names the host, written literally or as what a name resolves to (the server must not
/// be a way into its own network).
public struct ImportFilter: Sendable, Equatable {
    public var allowedSchemes: [String] = ["http", "https"]
    public var disallowedSchemes: [String] = []
    public var allowedHosts: [String] = []
    public var disallowedHosts: [String] = []
    public var allowedPorts: [Int] = [80, 443]
    public var disallowedPorts: [Int] = []

    public init() {}

    /// The checks that need no lookup: scheme, host as written, port, no credentials, no internal address
    /// written literally. `permits` adds the name's resolution.
    public func allows(_ uri: String) -> Bool {
        guard let (url, host) = Self.parse(uri), let scheme = url.scheme?.lowercased(), !scheme.isEmpty else { return false }
        if !allowedSchemes.isEmpty ? !allowedSchemes.contains(scheme) : disallowedSchemes.contains(scheme) { return false }
        guard let host else { return false }
        if !allowedHosts.isEmpty ? !allowedHosts.contains(host.text) : disallowedHosts.contains(host.text) { return false }
        if let port = url.port, !allowedPorts.isEmpty ? !allowedPorts.contains(port) : disallowedPorts.contains(port) {
            return false
        }
        if url.user != nil || url.password != nil { return false }
        if Self.isInternal(host.text) && !allowedHosts.contains(host.text) { return false }
        return true
    }

    /// `allows`, then for a host name: it must resolve (Glance's `normalize_hostname` looks it up), and
    /// none of its addresses may be internal unless `allowed_hosts` names it. Checked for the URI of the
    /// request and again for every redirect. (The HTTP client resolves the name again to connect: a
    /// name whose DNS answer changes in between is not caught.)
    /// - Parameter resolve: the name's addresses (numeric), under a deadline; throws or returns none
    ///   when it does not resolve.
    public func permits(_ uri: String, resolve: @Sendable (String) async throws -> [String]) async -> Bool {
        guard allows(uri), let (_, parsed) = Self.parse(uri), let host = parsed else { return false }
        if host.isAddress || host.text == "localhost" { return true }
        guard let addresses = try? await resolve(host.text), !addresses.isEmpty else { return false }
        if allowedHosts.contains(host.text) { return true }
        return !addresses.contains { address in
            let bare = String(address.split(separator: "%", maxSplits: 1).first ?? "")
            return Self.isInternal(Self.normalize(bare)?.text ?? bare)
        }
    }

    private static func parse(_ uri: String) -> (URLComponents, (text: String, isAddress: Bool)?)? {
        guard let url = URLComponents(string: uri) else { return nil }
        guard let raw = url.host, !raw.isEmpty else { return (url, nil) }
        return (url, normalize(raw.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))))
    }

    /// Glance's `normalize_hostname`: an IPv4 or IPv6 address in canonical form, a name unchanged, nil
    /// for what is neither (all digits, digits and dots that are not four decimal octets).
    public static func normalize(_ host: String) -> (text: String, isAddress: Bool)? {
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        if octets.count == 4,
            octets.allSatisfy({ $0.count >= 1 && $0.count <= 3 && $0.allSatisfy(\.isASCIIDigit) && ($0 == "0" || $0.first != "0") }),
            octets.allSatisfy({ Int($0)! <= 255 })
        {
            return (host, true)
        }
        if host.contains(":") {
            var address = in6_addr()
            guard inet_pton(AF_INET6, host, &address) == 1 else { return nil }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return nil }
            return (String(cString: text), true)
        }
        if host.allSatisfy({ $0.isASCIIDigit || $0 == "." }) { return nil }
        return (host, false)
    }

    /// Loopback, private, link-local, shared or unspecified addresses, and `localhost`.
    static func isInternal(_ host: String) -> Bool {
        if host == "localhost" || host.hasSuffix(".localhost") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false).map { UInt8($0) }
        if parts.count == 4, parts.allSatisfy({ $0 != nil }) {
            let a = parts[0]!, b = parts[1]!
            return a == 127 || a == 10 || a == 0 || (a == 172 && (16...31).contains(b)) || (a == 192 && b == 168)
                || (a == 169 && b == 254) || (a == 100 && (64...127).contains(b))
        }
        if host.contains(":") {
            return host == "::1" || host == "::" || host.hasPrefix("fe80:") || host.hasPrefix("fc") || host.hasPrefix("fd")
                || host.hasPrefix("::ffff:")
        }
        return false
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
