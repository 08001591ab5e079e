import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreCore
import ImageStoreTestSupport
import NIOCore
import Testing

/// Hostile or broken requests: each gets Glance's status, a JSON message, never a 500, and changes nothing.
@Suite struct BadInputTests {
    @Test func idsThatAreNotUUIDs_are404_andNeverReachTheFilesystem() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            #expect(try await client.upload(id, [1]).status == .noContent)
            let port = client.port!
            for path in [
                "/v2/images/..", "/v2/images/..%2F..%2Fetc%2Fpasswd", "/v2/images/%2e%2e", "/v2/images/abc%00def",
                "/v2/images/\(id)%00", "/v2/images/\(id.uppercased())x", "/v2/images/%00/file", "/v2/images/..%2F\(id)/file",
            ] {
                // (DELETE on .../file is 405: that route has no DELETE, whatever the id.)
                for method in path.hasSuffix("/file") ? ["GET"] : ["GET", "DELETE"] {
                    let (status, body) = try await HTTPOneShot.request(port: port, method: method, path: path)
                    #expect(status == .notFound, "\(method) \(path) → \(status)")
                    #expect(body.contains("\"message\""), "\(method) \(path): \(body)")
                }
            }
            #expect(try harness.storeFiles() == [id])
            #expect(try await client.image(id)["status"] == "active")
        }
    }

    /// As Glance: no body is a 0-byte image (every framing of an empty body: EmptyUploadTests).
    @Test func putWithoutBody_isAnActive0ByteImage() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage()
            let response = try await client.execute(
                uri: "/v2/images/\(id)/file", method: .put, headers: [.contentType: "application/octet-stream"])
            #expect(response.status == .noContent)
            let image = try await client.image(id)
            #expect(image["status"] == "active")
            #expect(image["size"] == .int(0))
            #expect(image["checksum"] == "d41d8cd98f00b204e9800998ecf8427e")
            #expect(try harness.storeFiles() == [id])
        }
    }

    @Test func hugeHeader_isRejected_serverStaysHealthy() async throws {
        try await APITestHarness().run { client in
            let port = client.port!
            let reply = try await offPool {
                let connection = try RawHTTPConnection(port: port)
                defer { connection.closeNormally() }
                try? connection.send(
                    "GET /v2/images HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 200_000))\r\n\r\n")
                return connection.receive(until: "\r\n\r\n", timeout: 5)
            }
            #expect(!reply.contains(" 500 "))
            #expect(!reply.hasPrefix("HTTP/1.1 200"))
            let (status, _) = try await HTTPOneShot.request(port: port, method: "GET", path: "/v2/images")
            #expect(status == .ok)
        }
    }

    @Test(arguments: [
        (#"{"name": 5}"#, "name"), (#"{"tags": [1]}"#, "tags"), (#"{"min_disk": 1.5}"#, "min_disk"),
        (#"{"visibility": null}"#, "visibility"), (#"{"protected": 1}"#, "protected"), ("null", "JSON object"),
        ("\"text\"", "JSON object"), ("{", "Malformed"), ("{\"a\":\u{01}}", "Malformed"),
    ])
    func wrongJSONTypes_are400(body: String, mentions: String) async throws {
        try await APITestHarness().run { client in
            let (response, json) = try await client.json("/v2/images", method: .post, body: body)
            #expect(response.status == .badRequest, "\(body)")
            #expect(json?["error"]?["message"]?.stringValue?.contains(mentions) == true, "\(body) → \(String(describing: json))")
        }
    }

    @Test func patchBodies_malformedOrWrongShape_are400() async throws {
        try await APITestHarness().run { client in
            let id = try await client.createImage()
            for body in [
                "{", "{}", "[1]", #"[{"op": "replace"}]"#, #"[{"path": "/name", "value": "x"}]"#,
                #"[{"op": "add", "path": "/x"}]"#, #"[{"op": "add", "path": "name", "value": "x"}]"#,
            ] {
                let (response, _) = try await client.json(
                    "/v2/images/\(id)", method: .patch, body: body, contentType: "application/openstack-images-v2.1-json-patch")
                #expect(response.status == .badRequest, "\(body)")
            }
        }
    }
}
