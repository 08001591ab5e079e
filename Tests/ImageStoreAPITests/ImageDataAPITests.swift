import Crypto
import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreTestSupport
import NIOCore
import Synchronization
import Testing

@Suite struct ImageDataAPITests {
    @Test func uploadDownload_roundTripWithChecksums() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let data = randomBytes(3 << 20 + 17)
            let upload = try await client.upload(id, data)
            #expect(upload.status == .noContent)
            let image = try await client.image(id)
            #expect(image["status"] == "active")
            #expect(image["size"] == .int(Int64(data.count)))
            #expect(image["checksum"]?.stringValue == md5Hex(data))
            #expect(image["os_hash_algo"] == "sha512")
            #expect(image["os_hash_value"]?.stringValue == sha512Hex(data))
            // Bytes on disk are exactly the upload, under the image id and nothing else.
            #expect(try harness.storeFiles() == [id])
            let onDisk = try Data(contentsOf: URL(fileURLWithPath: harness.datadir + "/" + id))
            #expect(onDisk == Data(data))

            let download = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
            #expect(download.status == .ok)
            #expect(Array(download.body.readableBytesView) == data)
            #expect(download.headers[.contentLength] == "\(data.count)")
            #expect(download.headers[HTTPField.Name("Content-MD5")!] == md5Hex(data))
            #expect(download.headers[.contentType] == "application/octet-stream")
        }
    }

    /// `filesystem_store_flush_after` (1 MiB windows, so these uploads cross several; 0: off): the
    /// upload and a glance-direct import end `active` with exact checksums and exactly the bytes on disk.
    @Test(arguments: [1, 0])
    func upload_andImport_withWriteBehind_orWithout_areExact(flushAfterMiB: Int) async throws {
        let harness = try APITestHarness { $0.store.flushAfterMiB = flushAfterMiB }
        let data = randomBytes(5 << 20 + 4099)
        try await harness.run { client in
            let uploaded = try await client.createImage()
            #expect(try await client.upload(uploaded, data).status == .noContent)
            let imported = try await client.createImage()
            #expect(try await client.stage(imported, data).status == .noContent)
            #expect(try await client.importImage(imported, ImportAPITests.direct).status == .accepted)
            #expect(try await client.waitForImport(imported)["status"] == "active")
            for id in [uploaded, imported] {
                let image = try await client.image(id)
                #expect(image["status"] == "active")
                #expect(image["size"] == .int(Int64(data.count)))
                #expect(image["checksum"]?.stringValue == md5Hex(data))
                #expect(image["os_hash_value"]?.stringValue == sha512Hex(data))
                let onDisk = try Data(contentsOf: URL(fileURLWithPath: harness.datadir + "/" + id))
                #expect(onDisk == Data(data))
            }
            #expect(try harness.storeFiles().filter { $0 != "os_glance_staging_store" } == [uploaded, imported].sorted())
            #expect(try harness.stagingFiles().isEmpty)
        }
    }

    /// `hashing_algorithm = sha256`: os_hash_algo/os_hash_value follow it for uploads and for
    /// glance-direct imports; checksum stays md5.
    @Test func hashingAlgorithm_sha256_appliesToUploadAndImport() async throws {
        let harness = try APITestHarness { $0.hashingAlgorithm = .sha256 }
        let data = randomBytes(1 << 20 + 3)
        let sha256 = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        try await harness.run { client in
            let uploaded = try await client.createImage()
            #expect(try await client.upload(uploaded, data).status == .noContent)
            let image = try await client.image(uploaded)
            #expect(image["os_hash_algo"] == "sha256")
            #expect(image["os_hash_value"]?.stringValue == sha256)
            #expect(image["checksum"]?.stringValue == md5Hex(data))

            let imported = try await client.createImage()
            #expect(try await client.stage(imported, data).status == .noContent)
            #expect(try await client.importImage(imported, ImportAPITests.direct).status == .accepted)
            let done = try await client.waitForImport(imported)
            #expect(done["status"] == "active")
            #expect(done["os_hash_algo"] == "sha256")
            #expect(done["os_hash_value"]?.stringValue == sha256)
        }
    }

    @Test func download_ranges() async throws {
        try await APITestHarness().run { client in
            let id = try await client.createImage()
            let data = randomBytes(1000)
            #expect(try await client.upload(id, data).status == .noContent)
            for (header, expected, contentRange) in [
                ("bytes=0-9", Array(data[0..<10]), "bytes 0-9/1000"),
                ("bytes=990-", Array(data[990...]), "bytes 990-999/1000"),
                ("bytes=-5", Array(data[995...]), "bytes 995-999/1000"),
                ("bytes=500-5000", Array(data[500...]), "bytes 500-999/1000"),
                // webob parses a suffix of 0 as a start of 0.
                ("bytes=-0", data, "bytes 0-999/1000"),
                ("bytes=-2000", data, "bytes 0-999/1000"),
            ] {
                let response = try await client.execute(uri: "/v2/images/\(id)/file", method: .get, headers: [.range: header])
                #expect(response.status == .partialContent, "\(header)")
                #expect(Array(response.body.readableBytesView) == expected, "\(header)")
                #expect(response.headers[.contentRange] == contentRange)
                #expect(response.headers[HTTPField.Name("Content-MD5")!] == md5Hex(data))
            }
            for header in ["bytes=1000-", "bytes=5-2", "bytes=abc", "items=0-1", "bytes=-"] {
                let response = try await client.execute(uri: "/v2/images/\(id)/file", method: .get, headers: [.range: header])
                #expect(response.status == .rangeNotSatisfiable, "\(header)")
            }
            let multi = try await client.execute(uri: "/v2/images/\(id)/file", method: .get, headers: [.range: "bytes=0-1,5-6"])
            #expect(multi.status == .badRequest)
        }
    }

    @Test func download_noData_is204() async throws {
        try await APITestHarness().run { client in
            let id = try await client.createImage()
            let response = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
            #expect(response.status == .noContent)
            #expect(try await client.execute(uri: "/v2/images/8a5b5dbd-5c55-4b05-8e5a-0f86bb8b0dd0/file", method: .get).status == .notFound)
        }
    }

    @Test func upload_errors() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            // Wrong Content-Type → 415.
            let wrongType = try await client.execute(
                uri: "/v2/images/\(id)/file", method: .put, headers: [.contentType: "application/json"], body: .init(string: "x"))
            #expect(wrongType.status == .unsupportedMediaType)
            #expect(wrongType.headers[.contentType]?.hasPrefix("application/json") == true)
            // Formats unset → 400.
            let bare = try await client.createImage(#"{"name": "noformats"}"#)
            let noFormats = try await client.upload(bare, [1, 2, 3])
            #expect(noFormats.status == .badRequest)
            #expect(noFormats.errorMessage?.contains("disk_format") == true)
            // Declared size larger than the body → 400, image back to queued, nothing on disk.
            let mismatch = try await client.upload(id, [1, 2, 3], headers: [HTTPField.Name("x-openstack-image-size")!: "10"])
            #expect(mismatch.status == .badRequest)
            #expect(mismatch.errorMessage?.contains("Size mismatch") == true)
            // Declared smaller than the body → 400 too.
            let over = try await client.upload(id, [1, 2, 3, 4, 5], headers: [HTTPField.Name("x-openstack-image-size")!: "2"])
            #expect(over.status == .badRequest)
            let bad = try await client.upload(id, [1], headers: [HTTPField.Name("x-openstack-image-size")!: "many"])
            #expect(bad.status == .badRequest)
            #expect(try await client.image(id)["status"] == "queued")
            #expect(try harness.storeFiles() == [])
            // Then a good upload works, and a second one is 409.
            #expect(try await client.upload(id, [7, 7, 7]).status == .noContent)
            let second = try await client.upload(id, [8])
            #expect(second.status == .conflict)
            #expect(try harness.storeFiles() == [id])
            #expect(try await client.upload("8a5b5dbd-5c55-4b05-8e5a-0f86bb8b0dd0", [1]).status == .notFound)
            #expect(try await client.upload("../../etc/passwd", [1]).status == .notFound)
        }
    }

    @Test func upload_overImageSizeCap_is413_andQueued() async throws {
        let harness = try APITestHarness { $0.imageSizeCap = 1000 }
        try await harness.run { client in
            let id = try await client.createImage()
            let response = try await client.upload(id, randomBytes(1001))
            #expect(response.status == .contentTooLarge)
            #expect(response.errorMessage?.contains("too large") == true)
            #expect(try await client.image(id)["status"] == "queued")
            #expect(try harness.storeFiles() == [])
            #expect(try await client.upload(id, randomBytes(1000)).status == .noContent)
        }
    }

    @Test func upload_overUserQuota_is413() async throws {
        let harness = try APITestHarness { $0.userStorageQuota = 1500 }
        try await harness.run { client in
            let first = try await client.createImage()
            #expect(try await client.upload(first, randomBytes(1000)).status == .noContent)
            let second = try await client.createImage()
            let response = try await client.upload(second, randomBytes(600))
            #expect(response.status == .contentTooLarge)
            #expect(response.errorMessage?.contains("quota") == true)
            #expect(try await client.image(second)["status"] == "queued")
            #expect(try harness.storeFiles() == [first])
            #expect(try await client.upload(second, randomBytes(500)).status == .noContent)
        }
    }

    @Test func upload_diskFull_is413_andLeavesNothing() async throws {
        let harness = try APITestHarness()
        let datadir = harness.datadir
        try FileManager.default.createDirectory(atPath: datadir, withIntermediateDirectories: true)
        try Mounts.tmpfs(at: datadir, sizeBytes: 1 << 20)
        defer { Mounts.unmount(datadir) }
        try await harness.run { client in
            let id = try await client.createImage()
            let response = try await client.upload(id, randomBytes(3 << 20))
            #expect(response.status == .contentTooLarge)
            #expect(response.errorMessage?.contains("full") == true)
            #expect(try await client.image(id)["status"] == "queued")
            #expect(try harness.storeFiles() == [])
        }
    }

    @Test func concurrentUploads_eightImagesAllSucceed_oneImageOnlyOneWins() async throws {
        try await APITestHarness().run { client in
            var ids: [String] = []
            for _ in 0..<8 { ids.append(try await client.createImage()) }
            let payloads = ids.map { _ in randomBytes(256 << 10) }
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for (id, data) in zip(ids, payloads) {
                    group.addTask { try await HTTPOneShot.put(port: client.port!, path: "/v2/images/\(id)/file", body: data) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == .noContent }, "\(statuses)")
            for (id, data) in zip(ids, payloads) {
                let image = try await client.image(id)
                #expect(image["status"] == "active")
                #expect(image["checksum"]?.stringValue == md5Hex(data))
            }
            // Two uploads racing for one image: exactly one wins, the other is 409.
            let contested = try await client.createImage()
            let race = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        try await HTTPOneShot.put(port: client.port!, path: "/v2/images/\(contested)/file", body: randomBytes(4 << 20))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(race.sorted { $0.code < $1.code } == [.noContent, .conflict])
            #expect(try await client.image(contested)["status"] == "active")
        }
    }

    @Test func clientDisconnectMidUpload_leavesNoTempFile_andImageQueued() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let port = client.port!
            let connection = try await RawHTTPConnection.startUpload(
                port: port, path: "/v2/images/\(id)/file", .contentLength(10 << 20), sending: randomBytes(2 << 20))
            // Wait until the upload is really in progress, then vanish.
            try await waitFor { try await client.image(id)["status"] == "saving" }
            connection.reset()
            try await waitFor { try await client.image(id)["status"] == "queued" }
            try await waitFor { try harness.storeFiles().isEmpty }
            #expect(try harness.storeFiles() == [])
            // The client can upload again.
            #expect(try await client.upload(id, [1, 2, 3]).status == .noContent)
        }
    }

    @Test func deleteDuringUpload_wins_uploadEnds410_nothingLeft() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let port = client.port!
            let total = 4 << 20
            let connection = try await RawHTTPConnection.startUpload(
                port: port, path: "/v2/images/\(id)/file", .contentLength(total), sending: randomBytes(1 << 20))
            try await waitFor { try await client.image(id)["status"] == "saving" }
            #expect(try await client.execute(uri: "/v2/images/\(id)", method: .delete).status == .noContent)
            let reply = try await offPool {
                try? connection.send(randomBytes(total - (1 << 20)))
                defer { connection.closeNormally() }
                return connection.receive(until: "\r\n\r\n", timeout: 60)
            }
            #expect(reply.hasPrefix("HTTP/1.1 410"), "\(reply)")
            #expect(try await client.execute(uri: "/v2/images/\(id)", method: .get).status == .notFound)
            try await waitFor { try harness.storeFiles().isEmpty }
            #expect(try harness.storeFiles() == [])
        }
    }

    @Test func stalledClient_isCutOff_uploadCleanedUp_serverHealthy() async throws {
        let harness = try APITestHarness { $0.clientSocketTimeout = .seconds(1) }
        // The server also closes the test client's own keep-alive connection whenever it idles 1 s (that
        // is the feature), so this test talks only through fresh connections, and an error from the
        // framework closing its idle client after the test body finished is not a failure.
        let finished = TestFlag()
        try await ignoringTeardownErrors(after: finished) {
            try await harness.run { client in
                let port = client.port!
                let (created, createdBody) = try await HTTPOneShot.request(
                    port: port, method: "POST", path: "/v2/images", json: #"{"disk_format": "raw", "container_format": "bare"}"#)
                #expect(created == .created)
                let id = try #require(try? JSONValue.parse(Array(createdBody.utf8))["id"]?.stringValue)
                // The test client's own keep-alive connection idles too: check through fresh connections.
                func status() async throws -> String? {
                    let (_, body) = try await HTTPOneShot.request(port: port, method: "GET", path: "/v2/images/\(id)")
                    return try? JSONValue.parse(Array(body.utf8))["status"]?.stringValue
                }
                let connection = try await RawHTTPConnection.startUpload(
                    port: port, path: "/v2/images/\(id)/file", .contentLength(1 << 20), sending: randomBytes(1000))
                // A byte every 500 ms (inside the 1 s timeout) until the upload's handler has claimed the
                // image: on a loaded machine the handler can start after a cut-off that came first, and then
                // still holds the image while the test goes on; a cut-off before the claim tests nothing.
                // (Not more often: after 4 unread body parts the server stops reading, and while it does not
                // read, its silence timer does not count: ClientSilenceHandler.)
                let claimed = TestFlag()
                let giveUp = Date().addingTimeInterval(20)  // past waitFor's 10 s: never a thread left spinning
                async let trickle: Bool = offPool {
                    while !claimed.isSet && Date() < giveUp {
                        guard (try? connection.send([0])) != nil else { return false }
                        Thread.sleep(forTimeInterval: 0.5)
                    }
                    return true
                }
                try await waitFor { try await status() == "saving" }
                claimed.set()
                let notCutBeforeTheClaim = try await trickle
                #expect(notCutBeforeTheClaim, "the server cut the upload off before its handler claimed the image")
                // Then silence: the server closes the connection after client_socket_timeout.
                let start = ContinuousClock.now
                let (_, closed) = try await offPool { connection.receiveUntilClosed(timeout: 10) }
                let cutAfter = ContinuousClock.now - start
                connection.closeNormally()
                #expect(closed, "the stalled upload was not cut off")
                #expect(cutAfter < .seconds(5), "cut off after \(cutAfter)")
                // Its handler failed: the image is back to queued (from saving) and nothing is left.
                try await waitFor { try await status() == "queued" }
                try await waitFor { try harness.storeFiles().isEmpty }
                #expect(try harness.storeFiles() == [])
                #expect(try await HTTPOneShot.put(port: port, path: "/v2/images/\(id)/file", body: [1, 2, 3]) == .noContent)
                #expect(try await status() == "active")
                finished.set()
            }
        }
    }

    @Test func expect100Continue_isAnswered() async throws {
        try await APITestHarness().run { client in
            let id = try await client.createImage()
            let port = client.port!
            let (interim, final) = try await offPool {
                let connection = try RawHTTPConnection(port: port)
                defer { connection.closeNormally() }
                try connection.send(
                    "PUT /v2/images/\(id)/file HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
                let interim = connection.receive(until: "\r\n\r\n")
                try connection.send([1, 2, 3, 4])
                return (interim, connection.receive(until: "\r\n\r\n"))
            }
            #expect(interim.hasPrefix("HTTP/1.1 100 Continue"))
            #expect(final.contains("204"))
        }
    }

    @Test func chunkedUpload_withDeclaredSize() async throws {
        try await APITestHarness().run { client in
            let id = try await client.createImage()
            let port = client.port!
            let data = randomBytes(100_000)
            let reply = try await offPool {
                let connection = try RawHTTPConnection(port: port)
                defer { connection.closeNormally() }
                try connection.send(
                    "PUT /v2/images/\(id)/file HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nx-openstack-image-size: \(data.count)\r\n\r\n")
                for chunk in stride(from: 0, to: data.count, by: 30_000) {
                    let part = Array(data[chunk..<min(chunk + 30_000, data.count)])
                    try connection.send(String(part.count, radix: 16) + "\r\n")
                    try connection.send(part + Array("\r\n".utf8))
                }
                try connection.send("0\r\n\r\n")
                return connection.receive(until: "\r\n\r\n")
            }
            #expect(reply.contains("204"))
            #expect(try await client.image(id)["checksum"]?.stringValue == md5Hex(data))
        }
    }
}

/// Rethrows unless `finished` was set: then the error came from the test framework's teardown.
func ignoringTeardownErrors(after finished: TestFlag, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch  where finished.isSet {
    }
}

final class TestFlag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// Polls `condition` for up to 10 s (the server's cleanup is asynchronous to the client).
func waitFor(_ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    // Once more at the end: on a loaded machine one answer can take most of the 10 s.
    if try await condition() { return }
    Issue.record("condition not met within 10 s")
}

/// One request on its own connection (the test client has a single connection).
enum HTTPOneShot {
    /// One request (optionally with a JSON body) on a fresh connection; returns the status and the body text.
    static func request(port: Int, method: String, path: String, json: String? = nil) async throws -> (HTTPResponse.Status, String) {
        try await offPool {
            let connection = try RawHTTPConnection(port: port)
            defer { connection.closeNormally() }
            let payload = json.map { "Content-Type: application/json\r\nContent-Length: \($0.utf8.count)\r\n\r\n\($0)" } ?? "\r\n"
            try connection.send("\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\(payload)")
            let reply = connection.receive(until: "\u{0}")
            let code = reply.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            let body = reply.range(of: "\r\n\r\n").map { String(reply[$0.upperBound...]) } ?? ""
            return (HTTPResponse.Status(code: code), body)
        }
    }

    static func put(port: Int, path: String, body: [UInt8]) async throws -> HTTPResponse.Status {
        let connection = try await RawHTTPConnection.startUpload(
            port: port, path: path, .headers("Content-Length: \(body.count)\r\nConnection: close\r\n"))
        return try await offPool {
            defer { connection.closeNormally() }
            // The server may answer (409) and close before it read the body.
            try? connection.send(body)
            let reply = connection.receive(until: "\r\n\r\n", timeout: 60)
            let code = reply.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            return HTTPResponse.Status(code: code)
        }
    }
}
