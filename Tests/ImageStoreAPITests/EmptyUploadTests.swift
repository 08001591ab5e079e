import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreTestSupport
import NIOCore
import Testing

/// Empty image data, as Glance 33 takes it: an upload with no bytes makes an `active` 0-byte image
/// (glance_store writes an empty file; size 0, the md5 and sha512 of no bytes), `/stage` takes it too,
/// and a 0-byte image downloads as 200 with no bytes. The bodies go over raw sockets, so the exact
/// framing (Content-Length 0, a chunked body of only its last chunk, no length at all) is what is tested.
@Suite struct EmptyUploadTests {
    static let emptyMD5 = "d41d8cd98f00b204e9800998ecf8427e"

    /// Request headers (after Content-Type) and the body bytes of one empty upload.
    static let emptyBodies: [(String, String)] = [
        ("Content-Length: 0\r\n", ""),
        ("Transfer-Encoding: chunked\r\n", "0\r\n\r\n"),
        // RFC 9112 §6.3: a request with neither header has no body.
        ("", ""),
        ("x-openstack-image-size: 0\r\nContent-Length: 0\r\n", ""),
    ]

    /// One PUT on a fresh connection, read until the server closes it: status code and body.
    static func put(port: Int, path: String, headers: String, body: String) async throws -> (Int, String) {
        try await offPool {
            let connection = try RawHTTPConnection(port: port)
            defer { connection.closeNormally() }
            try connection.send(
                "PUT \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\(headers)Connection: close\r\n\r\n\(body)")
            // Generous: on a loaded machine (the main test phase) a reply may take over the connection's
            // 10 s receive timeout.
            var patience = timeval(tv_sec: 60, tv_usec: 0)
            setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &patience, socklen_t(MemoryLayout<timeval>.size))
            let reply = connection.receive(until: "\u{0}", timeout: 60)
            let code = reply.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            return (code, reply.range(of: "\r\n\r\n").map { String(reply[$0.upperBound...]) } ?? "")
        }
    }

    static func fileSize(_ path: String) throws -> Int? {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
    }

    @Test(arguments: emptyBodies)
    func emptyUpload_isAnActive0ByteImage_andDownloadsAs200(headers: String, body: String) async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let (status, reply) = try await Self.put(port: client.port!, path: "/v2/images/\(id)/file", headers: headers, body: body)
            #expect(status == 204, "\(headers): \(reply)")
            let image = try await client.image(id)
            #expect(image["status"] == "active")
            #expect(image["size"] == .int(0))
            #expect(image["checksum"]?.stringValue == Self.emptyMD5)
            #expect(image["os_hash_algo"] == "sha512")
            #expect(image["os_hash_value"]?.stringValue == sha512Hex([UInt8]()))
            // Glance records a virtual size only when it is not 0.
            #expect(image["virtual_size"] == .null)
            // One empty file under the image id, no temporary left.
            #expect(try harness.storeFiles() == [id])
            #expect(try Self.fileSize(harness.datadir + "/" + id) == 0)

            let download = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
            #expect(download.status == .ok)
            #expect(download.body.readableBytes == 0)
            #expect(download.headers[.contentLength] == "0")
            #expect(download.headers[HTTPField.Name("Content-MD5")!] == Self.emptyMD5)
            // Active: a second upload is 409, as for any active image.
            let (again, _) = try await Self.put(port: client.port!, path: "/v2/images/\(id)/file", headers: headers, body: body)
            #expect(again == 409)
        }
    }

    /// Format inspection of no bytes finds nothing, i.e. `raw`, as oslo's inspector at EOF: a format that
    /// has a header (qcow2, iso…) in a `bare` container is refused (415), a non-inspectable one (ami) and
    /// any format in a container that is not inspected are accepted.
    @Test func emptyUpload_formatInspection() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let port = client.port!
            for diskFormat in ["qcow2", "iso", "vmdk"] {
                let id = try await client.createImage(#"{"disk_format": "\#(diskFormat)", "container_format": "bare"}"#)
                let (status, reply) = try await Self.put(port: port, path: "/v2/images/\(id)/file", headers: "Content-Length: 0\r\n", body: "")
                #expect(status == 415, "\(diskFormat): \(reply)")
                #expect(reply.contains("does not match stream data raw"), "\(reply)")
                #expect(try await client.image(id)["status"] == "queued")
                #expect(try harness.storeFiles().contains(id) == false)
            }
            for (diskFormat, containerFormat) in [("ami", "bare"), ("qcow2", "ovf"), ("ploop", "bare")] {
                let id = try await client.createImage(#"{"disk_format": "\#(diskFormat)", "container_format": "\#(containerFormat)"}"#)
                let (status, reply) = try await Self.put(port: port, path: "/v2/images/\(id)/file", headers: "Content-Length: 0\r\n", body: "")
                #expect(status == 204, "\(diskFormat)/\(containerFormat): \(reply)")
                let image = try await client.image(id)
                #expect(image["status"] == "active")
                #expect(image["size"] == .int(0))
                #expect(image["virtual_size"] == .null)
            }
        }
    }

    /// Glance's Range arithmetic on a 0-byte image (webob parsing, `get_range_from_request`, the
    /// download serializer): a range with a start is 416 (start ≥ size); a suffix range is 206 with no
    /// bytes and `Content-Range: bytes 0--1/0`.
    @Test func download_ranges_on0ByteImage() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let (status, _) = try await Self.put(port: client.port!, path: "/v2/images/\(id)/file", headers: "Content-Length: 0\r\n", body: "")
            try #require(status == 204)
            for header in ["bytes=0-", "bytes=0-0", "bytes=5-", "bytes=0-100", "bytes=-0", "bytes=abc"] {
                let response = try await client.execute(uri: "/v2/images/\(id)/file", method: .get, headers: [.range: header])
                #expect(response.status == .rangeNotSatisfiable, "\(header)")
            }
            for header in ["bytes=-1", "bytes=-5"] {
                let response = try await client.execute(uri: "/v2/images/\(id)/file", method: .get, headers: [.range: header])
                #expect(response.status == .partialContent, "\(header)")
                #expect(response.body.readableBytes == 0)
                #expect(response.headers[.contentLength] == "0")
                #expect(response.headers[.contentRange] == "bytes 0--1/0")
                #expect(response.headers[HTTPField.Name("Content-MD5")!] == Self.emptyMD5)
            }
            let multi = try await client.execute(uri: "/v2/images/\(id)/file", method: .get, headers: [.range: "bytes=-1,-2"])
            #expect(multi.status == .badRequest)
        }
    }

    /// `user_storage_quota` used up: Glance's check_quota refuses an upload of unknown size up front
    /// (Content-Length 0 is unknown to Glance), while `x-openstack-image-size: 0` is a size that fits.
    @Test func emptyUpload_whenTheQuotaIsUsedUp() async throws {
        let harness = try APITestHarness { $0.userStorageQuota = 1000 }
        try await harness.run { client in
            let port = client.port!
            let full = try await client.createImage()
            #expect(try await client.upload(full, randomBytes(1000)).status == .noContent)
            let id = try await client.createImage()
            for (headers, body) in [("Content-Length: 0\r\n", ""), ("Transfer-Encoding: chunked\r\n", "0\r\n\r\n")] {
                let (status, reply) = try await Self.put(port: port, path: "/v2/images/\(id)/file", headers: headers, body: body)
                #expect(status == 413, "\(headers): \(reply)")
                #expect(reply.contains("quota"))
                #expect(try await client.image(id)["status"] == "queued")
            }
            #expect(try harness.storeFiles() == [full])
            let (status, reply) = try await Self.put(
                port: port, path: "/v2/images/\(id)/file", headers: "x-openstack-image-size: 0\r\nContent-Length: 0\r\n", body: "")
            #expect(status == 204, "\(reply)")
            #expect(try await client.image(id)["size"] == .int(0))
        }
    }

    /// `x-openstack-image-size: 0` means "not given" to glance_store: it never refuses the body.
    @Test func declaredSizeZero_withData_isUnknownSize() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let data = randomBytes(4096)
            let response = try await client.upload(id, data, headers: [HTTPField.Name("x-openstack-image-size")!: "0"])
            #expect(response.status == .noContent, "\(response.text)")
            let image = try await client.image(id)
            #expect(image["size"] == .int(4096))
            #expect(image["checksum"]?.stringValue == md5Hex(data))
        }
    }

    /// A chunked body whose client goes away before the last chunk is not an empty image: the image
    /// goes back to `queued` and nothing stays in the store, whether the connection is reset or closed.
    @Test(arguments: [true, false])
    func chunkedBodyCutBeforeItsLastChunk_isNotAnEmptyImage(reset: Bool) async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let port = client.port!
            let connection = try await offPool { try RawHTTPConnection(port: port) }
            try await offPool {
                try connection.send(
                    "PUT /v2/images/\(id)/file HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            }
            try await waitFor { try await client.image(id)["status"] == "saving" }
            if reset { connection.reset() } else { connection.closeNormally() }
            try await waitFor { try await client.image(id)["status"] == "queued" }
            try await waitFor { try harness.storeFiles().isEmpty }
            #expect(try await client.image(id)["status"] == "queued")
            #expect(try harness.storeFiles() == [])
        }
    }

    /// `/stage` takes an empty body as Glance does (the staging store writes an empty file; the image is
    /// `uploading`), and importing it makes an active 0-byte image.
    @Test(arguments: [("Content-Length: 0\r\n", ""), ("Transfer-Encoding: chunked\r\n", "0\r\n\r\n")])
    func emptyStage_thenGlanceDirectImport_isAnActive0ByteImage(headers: String, body: String) async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let (status, reply) = try await Self.put(port: client.port!, path: "/v2/images/\(id)/stage", headers: headers, body: body)
            #expect(status == 204, "\(reply)")
            #expect(try await client.image(id)["status"] == "uploading")
            #expect(try harness.stagingFiles() == [id])
            #expect(try Self.fileSize(harness.stagingDir + "/" + id) == 0)

            let accepted = try await client.importImage(id, ImportAPITests.direct)
            #expect(accepted.status == .accepted, "\(accepted.text)")
            let image = try await client.waitForImport(id)
            #expect(image["status"] == "active")
            #expect(image["size"] == .int(0))
            #expect(image["checksum"]?.stringValue == Self.emptyMD5)
            #expect(image["os_hash_value"]?.stringValue == sha512Hex([UInt8]()))
            #expect(try Self.fileSize(harness.datadir + "/" + id) == 0)
            #expect(try harness.stagingFiles().isEmpty)
        }
    }
}
