import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreTestSupport
import NIOCore
import Testing

@Suite struct ImagesAPITests {
    @Test func versions_rootIs300_versionsIs200() async throws {
        try await APITestHarness().run { client in
            let (root, rootBody) = try await client.json("/", method: .get)
            #expect(root.status == .multipleChoices)
            let first = rootBody?["versions"]?.arrayValue?.first
            #expect(first?["id"]?.stringValue == "v2.17")
            #expect(first?["status"]?.stringValue == "CURRENT")
            let (versions, body) = try await client.json("/versions", method: .get)
            #expect(versions.status == .ok)
            #expect(body == rootBody)
            #expect(versions.headers[HTTPField.Name("x-openstack-request-id")!]?.hasPrefix("req-") == true)
        }
    }

    @Test func create_appliesGlanceDefaults_andLocation() async throws {
        try await APITestHarness().run { client in
            let (response, body) = try await client.json(
                "/v2/images", method: .post, body: #"{"name": "cirros", "hw_disk_bus": "scsi"}"#)
            #expect(response.status == .created)
            let image = try #require(body)
            let id = try #require(image["id"]?.stringValue)
            #expect(response.headers[.location]?.hasSuffix("/v2/images/\(id)") == true)
            #expect(image["status"] == "queued")
            #expect(image["visibility"] == "shared")
            #expect(image["protected"] == false)
            #expect(image["os_hidden"] == false)
            #expect(image["min_disk"] == 0)
            #expect(image["min_ram"] == 0)
            #expect(image["size"] == .null)
            #expect(image["checksum"] == .null)
            #expect(image["disk_format"] == .null)
            #expect(image["tags"] == [])
            #expect(image["hw_disk_bus"] == "scsi")
            #expect(image["self"]?.stringValue == "/v2/images/\(id)")
            #expect(image["file"]?.stringValue == "/v2/images/\(id)/file")
            #expect(image["schema"] == "/v2/schemas/image")
        }
    }

    @Test func create_ownerComesFromProjectHeader() async throws {
        try await APITestHarness().run { client in
            let response = try await client.execute(
                uri: "/v2/images", method: .post,
                headers: [.contentType: "application/json", HTTPField.Name("X-Project-Id")!: "proj-a"],
                body: .init(string: "{}"))
            #expect(response.status == .created)
            #expect(response.jsonBody?["owner"] == "proj-a")
        }
    }

    @Test(arguments: [
        (#"{"status": "active"}"#, HTTPResponse.Status.forbidden, "read-only"),
        (#"{"checksum": "x"}"#, .forbidden, "read-only"),
        (#"{"size": 3}"#, .forbidden, "read-only"),
        (#"{"location": "file:///etc/passwd"}"#, .forbidden, "reserved"),
        (#"{"os_glance_import": "x"}"#, .forbidden, "reserved"),
        (#"{"deleted": true}"#, .forbidden, "reserved"),
        (#"{"visibility": "everyone"}"#, .badRequest, "visibility"),
        (#"{"disk_format": "floppy"}"#, .badRequest, "disk_format"),
        (#"{"min_ram": -1}"#, .badRequest, "min_ram"),
        (#"{"min_disk": "1"}"#, .badRequest, "min_disk"),
        (#"{"protected": "yes"}"#, .badRequest, "protected"),
        (#"{"custom": 5}"#, .badRequest, "string"),
        (#"{"tags": "a"}"#, .badRequest, "tags"),
        (#"{"id": "not-a-uuid"}"#, .badRequest, "UUID"),
        ("{\"name\": \"" + String(repeating: "x", count: 256) + "\"}", .badRequest, "255"),
        (#"{"name": "x""#, .badRequest, "Malformed JSON"),
        ("[1, 2]", .badRequest, "JSON object"),
    ])
    func create_rejectsBadInput(body: String, status: HTTPResponse.Status, message: String) async throws {
        try await APITestHarness().run { client in
            let (response, json) = try await client.json("/v2/images", method: .post, body: body)
            #expect(response.status == status)
            #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
            let text = json?["error"]?["message"]?.stringValue ?? ""
            #expect(text.contains(message), "message was: \(text)")
        }
    }

    /// Glance's default `show_multiple_locations = false`: adding, replacing or removing a location is 403
    /// with its message, whatever the image's status, and nothing changes (ImageStore never writes them).
    @Test func patchLocations_default_403AsGlance_nothingChanges() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let queued = try await client.createImage()
            let active = try await client.createImage()
            let data = randomBytes(3000)
            #expect(try await client.upload(active, data).status == .noContent)
            let location = #"{"url": "file:///etc/passwd", "metadata": {}}"#
            for id in [queued, active] {
                for (op, verb) in [
                    (#"{"op": "add", "path": "/locations/-", "value": \#(location)}"#, "add"),
                    (#"{"op": "add", "path": "/locations/0", "value": \#(location)}"#, "add"),
                    (#"{"op": "replace", "path": "/locations", "value": [\#(location)]}"#, "update"),
                    (#"{"op": "remove", "path": "/locations/0"}"#, "remove"),
                ] {
                    let response = try await client.execute(
                        uri: "/v2/images/\(id)", method: .patch,
                        headers: [.contentType: "application/openstack-images-v2.1-json-patch"], body: ByteBuffer(string: "[\(op)]"))
                    #expect(response.status == .forbidden, "\(op)")
                    #expect(response.text.contains("It's not allowed to \(verb) locations if locations are invisible."), "\(response.text)")
                }
                // Glance's depth limit: a replace names the whole list only.
                let deep = try await client.execute(
                    uri: "/v2/images/\(id)", method: .patch, headers: [.contentType: "application/openstack-images-v2.1-json-patch"],
                    body: ByteBuffer(string: #"[{"op": "replace", "path": "/locations/0", "value": \#(location)}]"#))
                #expect(deep.status == .badRequest)
            }
            #expect(try await client.image(queued)["status"] == "queued")
            let image = try await client.image(active)
            #expect(image["status"] == "active")
            #expect(image["locations"] == nil)
            #expect(try Data(contentsOf: URL(fileURLWithPath: harness.datadir + "/" + active)) == Data(data))
        }
    }

    @Test func create_withExplicitID_thenDuplicateIs409() async throws {
        try await APITestHarness().run { client in
            let id = "8a5b5dbd-5c55-4b05-8e5a-0f86bb8b0dd0"
            let (first, body) = try await client.json("/v2/images", method: .post, body: #"{"id": "\#(id)"}"#)
            #expect(first.status == .created)
            #expect(body?["id"]?.stringValue == id)
            let (second, _) = try await client.json("/v2/images", method: .post, body: #"{"id": "\#(id)"}"#)
            #expect(second.status == .conflict)
        }
    }

    @Test func show_unknownOrNonUUID_is404() async throws {
        try await APITestHarness().run { client in
            for path in ["/v2/images/8a5b5dbd-5c55-4b05-8e5a-0f86bb8b0dd0", "/v2/images/abc", "/v2/images/..%2F..%2Fetc"] {
                let (response, body) = try await client.json(path, method: .get)
                #expect(response.status == .notFound, "\(path)")
                #expect(body?["error"]?["message"]?.stringValue != nil)
            }
            let (unknown, _) = try await client.json("/v2/nothing-here", method: .get)
            #expect(unknown.status == .notFound)
        }
    }

    @Test func wrongMethod_is405WithAllow() async throws {
        try await APITestHarness().run { client in
            let (response, _) = try await client.json("/v2/images", method: .delete)
            #expect(response.status == .methodNotAllowed)
            let allow = response.headers[.allow] ?? ""
            #expect(allow.contains("GET") && allow.contains("POST"))
        }
    }

    @Test func patch_replaceAddRemove_andErrors() async throws {
        try await APITestHarness().run { client in
            let id = try await client.createImage(#"{"name": "a", "foo": "1"}"#)
            let patchType = "application/openstack-images-v2.1-json-patch"
            func patch(_ ops: String) async throws -> (TestResponse, JSONValue?) {
                try await client.json("/v2/images/\(id)", method: .patch, body: ops, contentType: patchType)
            }
            var (response, body) = try await patch(
                #"[{"op": "replace", "path": "/name", "value": "b"}, {"op": "add", "path": "/bar", "value": "2"}, {"op": "remove", "path": "/foo"}, {"op": "replace", "path": "/min_ram", "value": 512}, {"op": "add", "path": "/a~1b", "value": "slash"}]"#
            )
            #expect(response.status == .ok)
            #expect(body?["name"] == "b")
            #expect(body?["bar"] == "2")
            #expect(body?["foo"] == nil)
            #expect(body?["min_ram"] == 512)
            #expect(body?["a/b"] == "slash")
            // add of an existing custom property replaces it (RFC 6902).
            (response, body) = try await patch(#"[{"op": "add", "path": "/bar", "value": "3"}]"#)
            #expect(body?["bar"] == "3")

            (response, _) = try await patch(#"[{"op": "replace", "path": "/missing", "value": "x"}]"#)
            #expect(response.status == .conflict)
            (response, _) = try await patch(#"[{"op": "remove", "path": "/missing"}]"#)
            #expect(response.status == .conflict)
            (response, _) = try await patch(#"[{"op": "remove", "path": "/name"}]"#)
            #expect(response.status == .forbidden)
            (response, _) = try await patch(#"[{"op": "replace", "path": "/status", "value": "active"}]"#)
            #expect(response.status == .forbidden)
            (response, _) = try await patch(#"[{"op": "replace", "path": "/id", "value": "x"}]"#)
            #expect(response.status == .forbidden)
            (response, _) = try await patch(#"[{"op": "move", "path": "/name", "value": "x"}]"#)
            #expect(response.status == .badRequest)
            (response, _) = try await patch(#"[{"op": "replace", "path": "/a/b", "value": "x"}]"#)
            #expect(response.status == .badRequest)
            (response, _) = try await patch(#"{"op": "replace"}"#)
            #expect(response.status == .badRequest)
            // A failed patch changed nothing (all-or-nothing).
            (response, _) = try await patch(#"[{"op": "replace", "path": "/name", "value": "c"}, {"op": "remove", "path": "/missing"}]"#)
            #expect(response.status == .conflict)
            #expect(try await client.image(id)["name"] == "b")

            let wrongType = try await client.execute(
                uri: "/v2/images/\(id)", method: .patch, headers: [.contentType: "application/json"],
                body: .init(string: "[]"))
            #expect(wrongType.status == .unsupportedMediaType)
            #expect(wrongType.headers[HTTPField.Name("Accept-Patch")!]?.contains("v2.1-json-patch") == true)
        }
    }

    @Test func patch_formatsOnlyWhileQueued() async throws {
        try await APITestHarness().run { client in
            let id = try await client.createImage()
            #expect(try await client.upload(id, [1, 2, 3]).status == .noContent)
            let (response, _) = try await client.json(
                "/v2/images/\(id)", method: .patch, body: #"[{"op": "replace", "path": "/disk_format", "value": "qcow2"}]"#,
                contentType: "application/openstack-images-v2.1-json-patch")
            #expect(response.status == .forbidden)
        }
    }

    @Test func tags_addRemove() async throws {
        try await APITestHarness().run { client in
            let id = try await client.createImage()
            #expect(try await client.execute(uri: "/v2/images/\(id)/tags/beta", method: .put).status == .noContent)
            #expect(try await client.execute(uri: "/v2/images/\(id)/tags/alpha", method: .put).status == .noContent)
            #expect(try await client.execute(uri: "/v2/images/\(id)/tags/alpha", method: .put).status == .noContent)
            #expect(try await client.image(id)["tags"] == ["alpha", "beta"])
            #expect(try await client.execute(uri: "/v2/images/\(id)/tags/alpha", method: .delete).status == .noContent)
            #expect(try await client.execute(uri: "/v2/images/\(id)/tags/alpha", method: .delete).status == .notFound)
            #expect(try await client.image(id)["tags"] == ["beta"])
            let long = String(repeating: "t", count: 256)
            #expect(try await client.execute(uri: "/v2/images/\(id)/tags/\(long)", method: .put).status == .badRequest)
        }
    }

    @Test func deactivateReactivate() async throws {
        try await APITestHarness().run { client in
            let id = try await client.createImage()
            #expect(try await client.execute(uri: "/v2/images/\(id)/actions/deactivate", method: .post).status == .forbidden)
            #expect(try await client.upload(id, [9]).status == .noContent)
            #expect(try await client.execute(uri: "/v2/images/\(id)/actions/deactivate", method: .post).status == .noContent)
            #expect(try await client.image(id)["status"] == "deactivated")
            #expect(try await client.execute(uri: "/v2/images/\(id)/actions/deactivate", method: .post).status == .noContent)
            #expect(try await client.execute(uri: "/v2/images/\(id)/actions/reactivate", method: .post).status == .noContent)
            #expect(try await client.image(id)["status"] == "active")
        }
    }

    @Test func delete_removesDataFile_protectedIs403() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await client.createImage(#"{"disk_format": "raw", "container_format": "bare", "protected": true}"#)
            #expect(try await client.upload(id, [1, 2, 3, 4]).status == .noContent)
            #expect(try harness.storeFiles() == [id])
            #expect(try await client.execute(uri: "/v2/images/\(id)", method: .delete).status == .forbidden)
            #expect(try harness.storeFiles() == [id])
            let (unprotect, _) = try await client.json(
                "/v2/images/\(id)", method: .patch, body: #"[{"op": "replace", "path": "/protected", "value": false}]"#,
                contentType: "application/openstack-images-v2.1-json-patch")
            #expect(unprotect.status == .ok)
            #expect(try await client.execute(uri: "/v2/images/\(id)", method: .delete).status == .noContent)
            #expect(try harness.storeFiles() == [])
            #expect(try await client.execute(uri: "/v2/images/\(id)", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/v2/images/\(id)", method: .delete).status == .notFound)
        }
    }

    @Test func list_filtersSortsAndPages() async throws {
        try await APITestHarness().run { client in
            var ids: [String] = []
            for i in 0..<7 {
                let visibility = i % 2 == 0 ? "public" : "private"
                ids.append(
                    try await client.createImage(
                        #"{"name": "img\#(i)", "visibility": "\#(visibility)", "disk_format": "raw", "container_format": "bare", "tags": ["t\#(i % 3)"]}"#))
            }
            // Default: created_at desc.
            let (all, allBody) = try await client.json("/v2/images", method: .get)
            #expect(all.status == .ok)
            #expect(allBody?["images"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == ids.reversed())
            #expect(allBody?["schema"] == "/v2/schemas/images")
            #expect(allBody?["first"] == "/v2/images")
            #expect(allBody?["next"] == nil)

            // Paging by name asc, 3 at a time, following `next`.
            var seen: [String] = []
            var uri = "/v2/images?sort_key=name&sort_dir=asc&limit=3"
            for _ in 0..<5 {
                let (page, body) = try await client.json(uri, method: .get)
                #expect(page.status == .ok)
                seen += body?["images"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
                guard let next = body?["next"]?.stringValue else { break }
                uri = next
            }
            #expect(seen == (0..<7).map { "img\($0)" })

            let (pub, pubBody) = try await client.json("/v2/images?visibility=public&sort=name:asc", method: .get)
            #expect(pub.status == .ok)
            #expect(pubBody?["images"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["img0", "img2", "img4", "img6"])
            let (_, tagBody) = try await client.json("/v2/images?tag=t1&sort_key=name&sort_dir=asc", method: .get)
            #expect(tagBody?["images"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["img1", "img4"])
            let (_, inBody) = try await client.json("/v2/images?name=in:img1,img3&sort_key=name&sort_dir=asc", method: .get)
            #expect(inBody?["images"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["img1", "img3"])
        }
    }

    @Test(arguments: [
        "limit=-1", "limit=abc", "marker=8a5b5dbd-5c55-4b05-8e5a-0f86bb8b0dd0", "marker=nope", "sort_key=color",
        "sort_dir=sideways", "sort=name:asc&sort_key=name", "size_min=x", "os_hidden=maybe", "visibility=everyone",
        "changes-since=2020-01-01", "created_at=gt:yesterday",
    ])
    func list_badParameters_are400(query: String) async throws {
        try await APITestHarness().run { client in
            _ = try await client.createImage()
            let (response, body) = try await client.json("/v2/images?\(query)", method: .get)
            #expect(response.status == .badRequest, "\(query)")
            #expect(body?["error"]?["message"]?.stringValue?.isEmpty == false)
        }
    }

    @Test func schemas_areServed() async throws {
        try await APITestHarness().run { client in
            let (image, body) = try await client.json("/v2/schemas/image", method: .get)
            #expect(image.status == .ok)
            #expect(body?["name"] == "image")
            #expect(body?["additionalProperties"] == ["type": "string"])
            #expect(body?["properties"]?["status"]?["enum"]?.arrayValue?.contains("active") == true)
            let (images, imagesBody) = try await client.json("/v2/schemas/images", method: .get)
            #expect(images.status == .ok)
            #expect(imagesBody?["name"] == "images")
        }
    }

    @Test func jsonBodyOverLimit_is413() async throws {
        try await APITestHarness().run { client in
            let big = "{\"name\": \"" + String(repeating: "x", count: 10 << 20) + "\"}"
            let (response, body) = try await client.json("/v2/images", method: .post, body: big)
            #expect(response.status == .contentTooLarge)
            #expect(body?["error"]?["message"]?.stringValue?.contains("too large") == true)
        }
    }

    @Test func infoStores_404WithoutMultiStore_listedWithIt() async throws {
        try await APITestHarness().run { client in
            let response = try await client.execute(uri: "/v2/info/stores", method: .get)
            #expect(response.status == .notFound)
        }
        let multiStore = try APITestHarness {
            $0.enabledBackends = [.init(id: "fast", type: "file")]
            $0.defaultBackend = "fast"
        }
        try await multiStore.run { client in
            let (response, body) = try await client.json("/v2/info/stores", method: .get)
            #expect(response.status == .ok)
            #expect(body?["stores"]?.arrayValue?.first?["id"] == "fast")
            #expect(body?["stores"]?.arrayValue?.first?["default"] == "true")
        }
    }
}
