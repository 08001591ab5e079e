import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreTestSupport
import Testing

/// `[image_format] disk_formats` and `container_formats`, as Glance uses them: the enums of the image
/// schema, and a create or PATCH with any other value is 400 with jsonschema's message.
@Suite struct ImageFormatOptionsTests {
    static let patchType = "application/openstack-images-v2.1-json-patch"

    static func patch(
        _ client: some TestClientProtocol, _ id: String, _ path: String, _ value: String
    ) async throws -> (
        TestResponse, JSONValue?
    ) {
        try await client.json(
            "/v2/images/\(id)", method: .patch, body: #"[{"op": "replace", "path": "/\#(path)", "value": "\#(value)"}]"#,
            contentType: patchType)
    }

    @Test func defaults_areGlances_inTheSchemaAndOnCreate() async throws {
        try await APITestHarness().run { client in
            let (_, schema) = try await client.json("/v2/schemas/image", method: .get)
            #expect(
                schema?["properties"]?["disk_format"]?["enum"]
                    == [.null, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"])
            #expect(
                schema?["properties"]?["container_format"]?["enum"]
                    == [.null, "ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"])

            let (response, body) = try await client.json("/v2/images", method: .post, body: #"{"disk_format": "floppy"}"#)
            #expect(response.status == .badRequest)
            #expect(
                body?["error"]?["message"]?.stringValue
                    == """
                    Provided object does not match schema 'image': 'floppy' is not one of [None, 'ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop']

                    Failed validating 'enum' in schema['properties']['disk_format']

                    On instance['disk_format']:
                        'floppy'
                    """)
            let (container, containerBody) = try await client.json(
                "/v2/images", method: .post, body: #"{"container_format": "it's"}"#)
            #expect(container.status == .badRequest)
            #expect(
                containerBody?["error"]?["message"]?.stringValue?.hasPrefix(
                    #"Provided object does not match schema 'image': "it's" is not one of [None, 'ami', "#) == true)
            #expect(
                containerBody?["error"]?["message"]?.stringValue?.contains("schema['properties']['container_format']") == true)
            // null is in the enum.
            let (nulls, _) = try await client.json("/v2/images", method: .post, body: #"{"disk_format": null, "container_format": null}"#)
            #expect(nulls.status == .created)
            // Nothing was created by the refused requests.
            let (_, list) = try await client.json("/v2/images", method: .get)
            #expect(list?["images"]?.arrayValue?.count == 1)
        }
    }

    @Test func configuredLists_areTheSchemaEnums_andAllThatCreateAndPatchAccept() async throws {
        let harness = try APITestHarness {
            $0.imageFormats = ImageFormats(disk: ["qcow2", "raw"], container: ["bare"])
        }
        try await harness.run { client in
            for path in ["/v2/schemas/image", "/v2/schemas/images"] {
                let (response, schema) = try await client.json(path, method: .get)
                #expect(response.status == .ok)
                let properties = path.hasSuffix("images") ? schema?["properties"]?["images"]?["items"]?["properties"] : schema?["properties"]
                #expect(properties?["disk_format"]?["enum"] == [.null, "qcow2", "raw"], "\(path)")
                #expect(properties?["container_format"]?["enum"] == [.null, "bare"], "\(path)")
            }

            // A Glance default that is not configured here is refused on create.
            let (vhd, vhdBody) = try await client.json(
                "/v2/images", method: .post, body: #"{"disk_format": "vhd", "container_format": "bare"}"#)
            #expect(vhd.status == .badRequest)
            #expect(
                vhdBody?["error"]?["message"]?.stringValue?.hasPrefix(
                    "Provided object does not match schema 'image': 'vhd' is not one of [None, 'qcow2', 'raw']") == true)
            let (ovf, _) = try await client.json("/v2/images", method: .post, body: #"{"disk_format": "raw", "container_format": "ovf"}"#)
            #expect(ovf.status == .badRequest)

            // PATCH: the same rule; the image is unchanged by a refused one.
            let id = try await client.createImage(#"{"disk_format": "raw", "container_format": "bare"}"#)
            let (refused, refusedBody) = try await Self.patch(client, id, "disk_format", "iso")
            #expect(refused.status == .badRequest)
            #expect(refusedBody?["error"]?["message"]?.stringValue?.contains("'iso' is not one of [None, 'qcow2', 'raw']") == true)
            let (refusedContainer, _) = try await Self.patch(client, id, "container_format", "docker")
            #expect(refusedContainer.status == .badRequest)
            #expect(try await client.image(id)["disk_format"] == "raw")
            #expect(try await client.image(id)["container_format"] == "bare")
            let (accepted, acceptedBody) = try await Self.patch(client, id, "disk_format", "qcow2")
            #expect(accepted.status == .ok)
            #expect(acceptedBody?["disk_format"] == "qcow2")

            // Once the image has data: a value outside the list is still 400 (Glance validates the value
            // before the image), a listed one is 403 (formats change only while queued).
            let active = try await client.createImage(#"{"disk_format": "raw", "container_format": "bare"}"#)
            #expect(try await client.upload(active, [1, 2, 3]).status == .noContent)
            #expect(try await Self.patch(client, active, "disk_format", "vmdk").0.status == .badRequest)
            #expect(try await Self.patch(client, active, "disk_format", "qcow2").0.status == .forbidden)
            #expect(try await client.image(active)["disk_format"] == "raw")
        }
    }
}
