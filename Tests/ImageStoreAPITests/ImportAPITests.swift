import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreStorage
import ImageStoreTestSupport
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// Interoperable import through the real application: stage, glance-direct, web-download from a loopback
/// HTTP server, the errors Glance answers, and start-up recovery of an import a crash interrupted.
@Suite struct ImportAPITests {
    static let direct = #"{"method": {"name": "glance-direct"}}"#
    static func web(_ uri: String) -> String { #"{"method": {"name": "web-download", "uri": "\#(uri)"}}"# }

    @Test func infoImport_andTheHeadersOfCreate() async throws {
        try await APITestHarness().run { client in
            let (info, body) = try await client.json("/v2/info/import", method: .get)
            #expect(info.status == .ok)
            #expect(body?["import-methods"]?["value"] == ["glance-direct", "web-download", "copy-image"])
            let (created, _) = try await client.json(
                "/v2/images", method: .post, body: #"{"name": "n", "disk_format": "raw", "container_format": "bare"}"#)
            #expect(created.headers[HTTPField.Name("OpenStack-image-import-methods")!] == "glance-direct,web-download,copy-image")
        }
        try await APITestHarness { $0.enabledImportMethods = ["web-download"] }.run { client in
            let (_, body) = try await client.json("/v2/info/import", method: .get)
            #expect(body?["import-methods"]?["value"] == ["web-download"])
            let id = try await client.createImage()
            // Without glance-direct there is no staging (404), and the method is unknown (400).
            #expect(try await client.stage(id, [1, 2, 3]).status == .notFound)
            #expect(try await client.importImage(id, Self.direct).status == .badRequest)
        }
    }

    @Test func glanceDirect_stageThenImport_activeWithHashes_stagingEmpty_taskSucceeded() async throws {
        let harness = try APITestHarness { $0.workerSelfReferenceURL = "http://10.0.0.5:9292" }
        try await harness.run { client in
            let id = try await client.createImage()
            #expect(try await client.importImage(id, Self.direct).status == .conflict)  // nothing staged yet
            let data = randomBytes(1 << 20 + 5)
            let staged = try await client.stage(id, data)
            #expect(staged.status == .noContent, "\(staged.text)")
            let uploading = try await client.image(id)
            #expect(uploading["status"] == "uploading")
            #expect(uploading["os_glance_stage_host"] == "http://10.0.0.5:9292")
            // The staged bytes are on disk in the staging directory, under the image id.
            #expect(try harness.stagingFiles() == [id])
            #expect(try Data(contentsOf: URL(fileURLWithPath: harness.stagingDir + "/" + id)) == Data(data))
            #expect(try harness.storeFiles().filter { $0 != "os_glance_staging_store" }.isEmpty)
            // A second stage: the image is not queued any more.
            #expect(try await client.stage(id, data).status == .conflict)

            let accepted = try await client.importImage(id, Self.direct)
            #expect(accepted.status == .accepted, "\(accepted.text)")
            let image = try await client.waitForImport(id)
            #expect(image["status"] == "active")
            #expect(image["size"] == .int(Int64(data.count)))
            #expect(image["checksum"]?.stringValue == md5Hex(data))
            #expect(image["os_hash_value"]?.stringValue == sha512Hex(data))
            #expect(image["os_glance_failed_import"] == "")
            #expect(image["os_glance_importing_to_stores"] == "")
            #expect(image["os_glance_import_task"] == nil)
            #expect(image["os_glance_stage_host"] == nil)
            #expect(try Data(contentsOf: URL(fileURLWithPath: harness.datadir + "/" + id)) == Data(data))
            #expect(try harness.stagingFiles().isEmpty)

            let (tasksResponse, tasks) = try await client.json("/v2/images/\(id)/tasks", method: .get)
            #expect(tasksResponse.status == .ok)
            let task = try #require(tasks?["tasks"]?[0])
            #expect(tasks?["tasks"]?.arrayValue?.count == 1)
            #expect(task["type"] == "api_image_import")
            #expect(task["status"] == "success")
            #expect(task["input"]?["import_req"]?["method"]?["name"] == "glance-direct")
            #expect(task["request_id"]?.stringValue == accepted.headers[HTTPField.Name("x-openstack-request-id")!])
            // Active: no import of any kind but copy-image.
            #expect(try await client.importImage(id, Self.direct).status == .conflict)
        }
    }

    @Test func importAndStage_badInput_getsGlancesStatus() async throws {
        let harness = try APITestHarness { $0.imageSizeCap = 100 }
        try await harness.run { client in
            let id = try await client.createImage()
            for (body, status) in [
                (#"{}"#, HTTPResponse.Status.badRequest),
                (#"{"method": {}}"#, .badRequest),
                (#"{"method": {"name": "glance-download"}}"#, .badRequest),
                (#"{"method": {"name": "glance-direct"}, "all_stores": "yes"}"#, .badRequest),
                (#"{"method": {"name": "web-download", "uri": "http://example.com/x"}, "all_stores_must_succeed": false}"#, .badRequest),
                (#"{"method": {"name": "web-download"}}"#, .badRequest),
                // Import filtering: port 8080 and ftp are not allowed, loopback needs allowed_hosts.
                (Self.web("http://example.com:8080/x"), .badRequest),
                (Self.web("ftp://example.com/x"), .badRequest),
                (Self.web("http://127.0.0.1/x"), .badRequest),
                (#"{"method": {"name": "copy-image"}}"#, .conflict),  // not active
                ("not json", .badRequest),
            ] {
                let response = try await client.importImage(id, body)
                #expect(response.status == status, "\(body): \(response.status) \(response.text)")
            }
            #expect(try await client.importImage(UUID().uuidString, Self.direct).status == .notFound)
            // Stage: wrong Content-Type 415, over image_size_cap 413 — and the image is queued again,
            // nothing left in staging.
            let wrongType = try await client.execute(
                uri: "/v2/images/\(id)/stage", method: .put, headers: [.contentType: "text/plain"], body: ByteBuffer(string: "x"))
            #expect(wrongType.status == .unsupportedMediaType)
            #expect(try await client.stage(id, randomBytes(101)).status == .contentTooLarge)
            #expect(try await client.image(id)["status"] == "queued")
            #expect(try harness.stagingFiles().isEmpty)
            // Deleting a staged image removes its staged data.
            #expect(try await client.stage(id, randomBytes(10)).status == .noContent)
            #expect(try harness.stagingFiles() == [id])
            #expect(try await client.execute(uri: "/v2/images/\(id)", method: .delete).status == .noContent)
            #expect(try harness.stagingFiles().isEmpty)

            // copy-image on an active image with one store: with all_stores there is nothing to do (202),
            // naming stores means a store that already has it (400). No task either way.
            let active = try await client.createImage()
            #expect(try await client.upload(active, randomBytes(10)).status == .noContent)
            #expect(try await client.importImage(active, #"{"method": {"name": "copy-image"}, "all_stores": true}"#).status == .accepted)
            let copied = try await client.image(active)
            #expect(copied["os_glance_importing_to_stores"] == "")
            #expect(copied["os_glance_failed_import"] == "")
            #expect(try await client.importImage(active, #"{"method": {"name": "copy-image"}}"#).status == .badRequest)
            #expect(try await client.json("/v2/images/\(active)/tasks", method: .get).1?["tasks"] == [])
            // DELETE /v2/stores/...: no enabled_backends → 404, as Glance.
            #expect(try await client.execute(uri: "/v2/stores/file/\(active)", method: .delete).status == .notFound)
        }
    }

    @Test func multiStore_storesInTheBody_andDeleteFromStore_asGlance() async throws {
        let harness = try APITestHarness { config in
            config.enabledBackends = [StoreBackend(id: "fast", type: "file")]
            config.defaultBackend = "fast"
        }
        try await harness.run { client in
            let (created, _) = try await client.json(
                "/v2/images", method: .post, body: #"{"name": "n", "disk_format": "raw", "container_format": "bare"}"#)
            #expect(created.headers[HTTPField.Name("OpenStack-image-store-ids")!] == "fast")
            let id = try await client.createImage()
            #expect(try await client.stage(id, [1, 2, 3]).status == .noContent)
            // An unknown store is 409, stores with all_stores 400 (Glance's get_stores_from_request).
            #expect(try await client.importImage(id, #"{"method": {"name": "glance-direct"}, "stores": ["slow"]}"#).status == .conflict)
            #expect(
                try await client.importImage(id, #"{"method": {"name": "glance-direct"}, "stores": ["fast"], "all_stores": true}"#).status
                    == .badRequest)
            #expect(try await client.importImage(id, #"{"method": {"name": "glance-direct"}, "stores": ["fast"]}"#).status == .accepted)
            let image = try await client.waitForImport(id)
            #expect(image["status"] == "active")
            #expect(image["stores"] == "fast")
            let tasks = try await client.json("/v2/images/\(id)/tasks", method: .get).1
            #expect(tasks?["tasks"]?[0]?["input"]?["backend"] == ["fast"])
            // DELETE /v2/stores: unknown store 409; the only copy 403 (delete the image instead); not active 409.
            #expect(try await client.execute(uri: "/v2/stores/slow/\(id)", method: .delete).status == .conflict)
            let last = try await client.execute(uri: "/v2/stores/fast/\(id)", method: .delete)
            #expect(last.status == .forbidden)
            #expect(last.errorMessage?.contains("only store") == true)
            let queued = try await client.createImage()
            #expect(try await client.execute(uri: "/v2/stores/fast/\(queued)", method: .delete).status == .conflict)
            #expect(try await client.execute(uri: "/v2/stores/fast/\(UUID())", method: .delete).status == .notFound)
            #expect(try Data(contentsOf: URL(fileURLWithPath: harness.datadir + "/" + id)) == Data([1, 2, 3]))
        }
    }

    @Test func policy_stageAndImportNeedModify_copyImageNeedsAdmin() async throws {
        try await APITestHarness().run { client in
            let id = try await client.imageOfProjectA()
            let stage = try await client.execute(
                uri: "/v2/images/\(id)/stage", method: .put,
                headers: Persona.otherMember.headers.merging([.contentType: "application/octet-stream"]), body: ByteBuffer(bytes: [1]))
            #expect(stage.status == .notFound)  // another project cannot even see the private image
            #expect(try await client.call(.reader, .put, "/v2/images/\(id)/stage", "x", contentType: "application/octet-stream").status == .forbidden)
            #expect(try await client.call(.member, .put, "/v2/images/\(id)/stage", "xyz", contentType: "application/octet-stream").status == .noContent)
            #expect(try await client.call(.reader, .post, "/v2/images/\(id)/import", Self.direct).status == .forbidden)
            let active = try await client.imageOfProjectA("private", upload: true, name: "active")
            #expect(try await client.call(.member, .post, "/v2/images/\(active)/import", #"{"method": {"name": "copy-image"}, "all_stores": true}"#).status == .forbidden)
        }
    }

    @Test func stage_refusedByTheGuard_410_imageStaysQueued() async throws {
        let harness = try APITestHarness()
        let switchable = SwitchableGuard()
        let repository = InMemoryImageRepository()
        let store = InMemoryImageStore()
        let staging = InMemoryImageStore()
        let dependencies = ApplicationDependencies(
            repository: repository, store: store, writeGuard: switchable,
            staging: StagingArea(store: staging, writeGuard: switchable))
        try await harness.run(dependencies: dependencies) { client in
            let id = try await client.createImage()
            switchable.refuse.withLock { $0 = true }
            let response = try await client.stage(id, [1, 2, 3])
            #expect(response.status == .gone, "\(response.text)")
            #expect(try await client.image(id)["status"] == "queued")
            #expect(try await staging.storedIDs().isEmpty)
            switchable.refuse.withLock { $0 = false }
            #expect(try await client.stage(id, [1, 2, 3]).status == .noContent)
            // The share goes between stage and import: the import fails cleanly.
            switchable.refuse.withLock { $0 = true }
            #expect(try await client.importImage(id, Self.direct).status == .accepted)
            let failed = try await client.waitForImport(id)
            #expect(failed["status"] == "queued")
            #expect(failed["os_glance_failed_import"] == "file")
            #expect(try await store.storedIDs().isEmpty)
            let tasks = try await client.json("/v2/images/\(id)/tasks", method: .get).1
            #expect(tasks?["tasks"]?[0]?["status"] == "failure")
            #expect(tasks?["tasks"]?[0]?["message"]?.stringValue?.isEmpty == false)
        }
    }

    @Test func webDownload_fromLoopbackServer_active_andFailuresLeaveNothing() async throws {
        let data = randomBytes(300_000)
        try await LoopbackHTTPServer.with(data) { port in
            let harness = try APITestHarness { config in
                config.importFilter.allowedHosts = ["127.0.0.1"]
                config.importFilter.allowedPorts = [port]
                config.imageSizeCap = 400_000
            }
            try await harness.run { client in
                let id = try await client.createImage()
                let accepted = try await client.importImage(id, Self.web("http://127.0.0.1:\(port)/image"))
                #expect(accepted.status == .accepted, "\(accepted.text)")
                let image = try await client.waitForImport(id)
                #expect(image["status"] == "active")
                #expect(image["checksum"]?.stringValue == md5Hex(data))
                #expect(image["os_hash_value"]?.stringValue == sha512Hex(data))
                #expect(try Data(contentsOf: URL(fileURLWithPath: harness.datadir + "/" + id)) == Data(data))

                // 404 from the server, data over image_size_cap, a server that dies mid-body: each import
                // fails, the image is queued with os_glance_failed_import, and nothing is in the store.
                for path in ["/missing", "/big", "/dies"] {
                    let other = try await client.createImage()
                    #expect(try await client.importImage(other, Self.web("http://127.0.0.1:\(port)\(path)")).status == .accepted)
                    let failed = try await client.waitForImport(other)
                    #expect(failed["status"] == "queued", "\(path)")
                    #expect(failed["os_glance_failed_import"] == "file", "\(path)")
                    #expect(failed["os_glance_import_task"] == nil, "\(path)")
                    #expect(try harness.storeFiles().filter { !$0.hasPrefix("os_glance") } == [id], "\(path)")
                    let task = try await client.json("/v2/images/\(other)/tasks", method: .get).1?["tasks"]?[0]
                    #expect(task?["status"] == "failure", "\(path)")
                }
            }
        }
    }

    @Test func shutdownMidDownload_importFailsCleanly_nothingInTheStore() async throws {
        try await LoopbackHTTPServer.with([1]) { port in
            let harness = try APITestHarness { config in
                config.importFilter.allowedHosts = ["127.0.0.1"]
                config.importFilter.allowedPorts = [port]
            }
            let repository = InMemoryImageRepository()
            let tasks = InMemoryTaskRepository()
            // In memory: the harness removes its directory when the server has stopped.
            let store = InMemoryImageStore()
            let dependencies = ApplicationDependencies(repository: repository, store: store, tasks: tasks)
            let id = try await harness.run(dependencies: dependencies) { client in
                let id = try await client.createImage()
                #expect(try await client.importImage(id, Self.web("http://127.0.0.1:\(port)/slow")).status == .accepted)
                #expect(try await client.image(id)["status"] == "importing")
                try await Task.sleep(for: .milliseconds(300))
                return id
            }
            // The server stopped while the download ran: the import was stopped and undone.
            let imageID = try #require(ImageID(id))
            let image = try #require(try await repository.get(imageID))
            #expect(image.status == .queued)
            #expect(image.properties["os_glance_failed_import"] == "file")
            #expect(image.properties["os_glance_import_task"] == nil)
            #expect(image.uploadOwner == nil)
            #expect(try await store.storedIDs().isEmpty)
            var query = TaskListQuery()
            query.imageID = image.id
            #expect(try await tasks.tasks(query).map(\.status) == [.failure])
        }
    }

    @Test func restart_failsAnInterruptedImportCleanly_keepsAFinishedStage() async throws {
        let harness = try APITestHarness()
        let logger = Logger(label: "test")
        let repository = try SQLiteImageRepository(path: harness.base.path + "/recovery.db", logger: logger)
        let tasks = SQLiteTaskRepository(sharing: repository, logger: logger)
        let store = FilesystemImageStore(directory: harness.datadir, createDirectory: true, logger: logger)
        let stagingDir = harness.stagingDir
        try FileManager.default.createDirectory(atPath: stagingDir, withIntermediateDirectories: true)
        let staging = FilesystemImageStore(directory: stagingDir, createDirectory: true, logger: logger)
        // What a process that died mid-import left: the image importing (held by the dead process), the
        // task processing, its staged data, and data already renamed into the store but never active.
        let dead = ProcessInfo.processInfo.hostName + ":1:dead0000"
        let importing = Image(
            status: .importing, diskFormat: "raw", containerFormat: "bare", owner: "proj",
            properties: ["os_glance_import_task": "t-1", "os_glance_importing_to_stores": "file", "os_glance_failed_import": ""],
            uploadOwner: dead)
        try await repository.create(importing)
        try await tasks.createTask(ImageTask(id: "t-1", type: "api_image_import", status: .processing, imageID: importing.id))
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: stagingDir + "/\(importing.id)"))
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: harness.datadir + "/\(importing.id)"))
        // A finished stage (no owner): kept, still importable.
        let stagedImage = Image(status: .uploading, diskFormat: "raw", containerFormat: "bare", owner: "proj")
        try await repository.create(stagedImage)
        try Data([4, 5]).write(to: URL(fileURLWithPath: stagingDir + "/\(stagedImage.id)"))

        let dependencies = ApplicationDependencies(
            repository: repository, store: store, tasks: tasks, staging: StagingArea(store: staging, writeGuard: UnguardedStore()))
        try await harness.run(dependencies: dependencies) { client in
            // Recovery may still run in the background when the server listens (start-up budget).
            let image = try await client.waitForImport(importing.id.description)
            #expect(image["status"] == "queued")
            #expect(image["os_glance_failed_import"] == "file")
            #expect(image["os_glance_importing_to_stores"] == "")
            #expect(image["os_glance_import_task"] == nil)
            // Recovery fails the task right after it resets the image (start-up waits for it at most 1 s).
            try await waitFor { try await tasks.task("t-1")?.status == .failure }
            #expect(try harness.stagingFiles() == [stagedImage.id.description])
            #expect(try harness.storeFiles().filter { !$0.hasPrefix("os_glance") }.isEmpty)
            // The kept stage imports normally.
            #expect(try await client.image(stagedImage.id.description)["status"] == "uploading")
            #expect(try await client.importImage(stagedImage.id.description, Self.direct).status == .accepted)
            let done = try await client.waitForImport(stagedImage.id.description)
            #expect(done["status"] == "active")
            #expect(done["size"] == 2)
            #expect(try harness.stagingFiles().isEmpty)
        }
    }
}

// MARK: Helpers

extension APITestHarness {
    var stagingDir: String { datadir + "/os_glance_staging_store" }

    /// Files in the staging directory (staged data and temporaries).
    func stagingFiles() throws -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: stagingDir).sorted()) ?? []
    }
}

extension TestClientProtocol {
    func stage(_ id: String, _ data: [UInt8]) async throws -> TestResponse {
        try await execute(
            uri: "/v2/images/\(id)/stage", method: .put, headers: [.contentType: "application/octet-stream"],
            body: ByteBuffer(bytes: data))
    }

    func importImage(_ id: String, _ body: String) async throws -> TestResponse {
        try await execute(
            uri: "/v2/images/\(id)/import", method: .post, headers: [.contentType: "application/json"],
            body: ByteBuffer(string: body))
    }

    /// Polls the image until its import ended (active, or failed: `os_glance_failed_import` set).
    func waitForImport(_ id: String, timeout: Duration = .seconds(20)) async throws -> JSONValue {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let image = try await image(id)
            let failed = image["os_glance_failed_import"]?.stringValue ?? ""
            if image["status"] == "active" || !failed.isEmpty { return image }
            try #require(clock.now < deadline, "import of \(id) did not end: \(image)")
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

extension HTTPFields {
    func merging(_ other: HTTPFields) -> HTTPFields {
        var fields = self
        for field in other { fields[field.name] = field.value }
        return fields
    }
}

/// A guard the test flips: refusing, writes answer the store-unavailable error (410) and reads 503.
final class SwitchableGuard: WriteGuard {
    let refuse = Mutex(false)
    func checkWritable() async throws {
        if refuse.withLock({ $0 }) { throw ImageStoreError.storeUnavailable("The store is disabled (test)") }
    }
    func checkReadable() async throws {
        if refuse.withLock({ $0 }) { throw ImageStoreError(.readUnavailable, "The store is disabled (test)") }
    }
}

/// A Hummingbird server on a free loopback port: `/image` serves `data`, `/big` more than the cap,
/// `/dies` announces more than it sends and closes, `/redirect?to=U` is a 302 to U, `/loop` a 302 to
/// itself, anything else 404.
enum LoopbackHTTPServer {
    static func with(_ data: [UInt8], _ body: @Sendable (Int) async throws -> Void) async throws {
        let router = Router()
        router.get("/image") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: data))) }
        // 302 to the `to` query parameter (relative or absolute), for the redirect checks.
        router.get("/redirect") { request, _ in
            Response(status: .found, headers: [.location: request.uri.queryParameters.get("to") ?? "/image"])
        }
        router.get("/loop") { _, _ in Response(status: .found, headers: [.location: "/loop"]) }
        router.get("/big") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: 7, count: 500_000))) }
        router.get("/slow") { _, _ in
            Response(
                status: .ok, headers: [.contentLength: "1000000"],
                body: .init { writer in
                    try await writer.write(ByteBuffer(repeating: 1, count: 1000))
                    try await Task.sleep(for: .seconds(5))
                })
        }
        router.get("/dies") { _, _ in
            Response(
                status: .ok, headers: [.contentLength: "1000000"],
                body: .init { writer in
                    try await writer.write(ByteBuffer(repeating: 1, count: 1000))
                    throw CancellationError()
                })
        }
        let port = Mutex<Int?>(nil)
        var logger = Logger(label: "loopback")
        logger.logLevel = .critical
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } }, logger: logger)
        let serviceGroup = ServiceGroup(configuration: .init(services: [app], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await serviceGroup.run() }
            var bound: Int?
            for _ in 0..<200 {
                bound = port.withLock { $0 }
                if bound != nil { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let result: Result<Void, any Error>
            do {
                try await body(try #require(bound))
                result = .success(())
            } catch {
                result = .failure(error)
            }
            await serviceGroup.triggerGracefulShutdown()
            try await group.waitForAll()
            try result.get()
        }
    }
}
