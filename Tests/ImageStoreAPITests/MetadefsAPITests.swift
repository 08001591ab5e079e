import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import ImageStoreAPI
import ImageStoreCore
import ImageStoreTestSupport
import NIOCore
import Testing

/// `/v2/metadefs/*` through the real application (SQLite): Glance's status codes, bodies, visibility and
/// policy (admin-only writes), and `protected`.
@Suite struct MetadefsAPITests {
    static let ns = "/v2/metadefs/namespaces"

    @Test func namespaceLifecycle_asTempestDrivesIt() async throws {
        try await APITestHarness().run { client in
            let types = try await client.call(.admin, .get, "/v2/metadefs/resource_types")
            #expect(types.status == .ok)
            let typeName = try #require(types.jsonBody?["resource_types"]?.arrayValue?.first?["name"]?.stringValue)

            let create = try await client.call(
                .admin, .post, Self.ns,
                #"{"namespace": "tempest-ns", "visibility": "public", "description": "Tempest", "display_name": "tempest-ns", "resource_type_associations": [{"name": "\#(typeName)"}], "protected": true}"#
            )
            #expect(create.status == .created, "\(create.text)")
            #expect(create.jsonBody?["owner"]?.stringValue == "proj-a")
            #expect(create.jsonBody?["self"]?.stringValue == "/v2/metadefs/namespaces/tempest-ns")
            #expect(create.jsonBody?["resource_type_associations"]?[0]?["name"]?.stringValue == typeName)

            let duplicate = try await client.call(.admin, .post, Self.ns, #"{"namespace": "tempest-ns"}"#)
            #expect(duplicate.status == .conflict)

            let list = try await client.call(.admin, .get, Self.ns)
            #expect(list.status == .ok)
            #expect(list.jsonBody?["namespaces"]?.arrayValue?.compactMap { $0["namespace"]?.stringValue } == ["tempest-ns"])
            #expect(list.jsonBody?["schema"]?.stringValue == "/v2/schemas/metadefs/namespaces")

            let show = try await client.call(.admin, .get, "\(Self.ns)/tempest-ns")
            #expect(show.status == .ok)
            #expect(show.jsonBody?["visibility"]?.stringValue == "public")

            let protectedDelete = try await client.call(.admin, .delete, "\(Self.ns)/tempest-ns")
            #expect(protectedDelete.status == .forbidden)
            #expect(protectedDelete.errorMessage?.contains("protected") == true)

            let update = try await client.call(
                .admin, .put, "\(Self.ns)/tempest-ns",
                #"{"namespace": "tempest-ns", "description": "Tempest", "visibility": "private", "display_name": "tempest-ns", "protected": false}"#
            )
            #expect(update.status == .ok, "\(update.text)")
            #expect(update.jsonBody?["visibility"]?.stringValue == "private")
            #expect(update.jsonBody?["protected"] == .bool(false))

            #expect(try await client.call(.admin, .delete, "\(Self.ns)/tempest-ns").status == .noContent)
            #expect(try await client.call(.admin, .get, "\(Self.ns)/tempest-ns").status == .notFound)
            #expect(try await client.call(.admin, .delete, "\(Self.ns)/tempest-ns").status == .notFound)
        }
    }

    @Test func writesAreAdminOnly_privateNamespacesHiddenFromOtherProjects() async throws {
        try await APITestHarness().run { client in
            let member = try await client.call(.member, .post, Self.ns, #"{"namespace": "by-member"}"#)
            #expect(member.status == .forbidden)
            #expect(try await client.call(.admin, .post, Self.ns, #"{"namespace": "pub", "visibility": "public"}"#).status == .created)
            #expect(try await client.call(.admin, .post, Self.ns, #"{"namespace": "priv-a"}"#).status == .created)
            #expect(
                try await client.call(.admin, .post, Self.ns, #"{"namespace": "priv-b", "owner": "proj-b"}"#).status == .created)

            // The reader of proj-a sees the public one and its project's private one.
            let listed = try await client.call(.reader, .get, "\(Self.ns)?sort_key=namespace&sort_dir=asc")
            #expect(listed.jsonBody?["namespaces"]?.arrayValue?.compactMap { $0["namespace"]?.stringValue } == ["priv-a", "pub"])
            #expect(try await client.call(.reader, .get, "\(Self.ns)/priv-b").status == .notFound)
            #expect(try await client.call(.reader, .get, "\(Self.ns)/priv-a").status == .ok)
            // Seen but not writable: 403; not seen: 404.
            #expect(try await client.call(.member, .delete, "\(Self.ns)/pub").status == .forbidden)
            #expect(try await client.call(.otherMember, .delete, "\(Self.ns)/priv-a").status == .notFound)
            #expect(
                try await client.call(.member, .post, "\(Self.ns)/pub/tags/t").status == .forbidden)
            #expect(try await client.call(.admin, .get, "\(Self.ns)?visibility=private").jsonBody?["namespaces"]?.arrayValue?.count == 2)
        }
    }

    @Test func badBodies_are400_withTheFieldNamed() async throws {
        try await APITestHarness().run { client in
            let cases: [(String, String)] = [
                (#"{"display_name": "x"}"#, "namespace"),
                (#"{"namespace": 5}"#, "namespace"),
                (#"{"namespace": "n", "visibility": "shared"}"#, "visibility"),
                (#"{"namespace": "n", "protected": "yes"}"#, "protected"),
                (#"{"namespace": "n", "bogus": 1}"#, "bogus"),
                (#"{"namespace": "n", "properties": {"p": {"title": "P"}}}"#, "type"),
                ("[1]", "namespace"),
            ]
            for (body, field) in cases {
                let response = try await client.call(.admin, .post, Self.ns, body)
                #expect(response.status == .badRequest, "\(body): \(response.status)")
                #expect(response.errorMessage?.contains(field) == true, "\(body): \(response.errorMessage ?? "")")
            }
            #expect(try await client.call(.admin, .get, Self.ns).jsonBody?["namespaces"]?.arrayValue?.isEmpty == true)
            let limit = try await client.call(.admin, .get, "\(Self.ns)?limit=-1")
            #expect(limit.status == .badRequest)
        }
    }

    @Test func objectsPropertiesTags_crud() async throws {
        try await APITestHarness().run { client in
            #expect(try await client.call(.admin, .post, Self.ns, #"{"namespace": "n", "visibility": "public"}"#).status == .created)
            // Objects
            let object = try await client.call(
                .admin, .post, "\(Self.ns)/n/objects",
                #"{"name": "o1", "description": "d", "required": ["p"], "properties": {"p": {"title": "P", "type": "integer", "minimum": 1}}}"#
            )
            #expect(object.status == .created, "\(object.text)")
            #expect(object.jsonBody?["self"]?.stringValue == "/v2/metadefs/namespaces/n/objects/o1")
            #expect(object.jsonBody?["properties"]?["p"]?["minimum"] == .int(1))
            #expect(try await client.call(.admin, .post, "\(Self.ns)/n/objects", #"{"name": "o1"}"#).status == .conflict)
            let renamed = try await client.call(.admin, .put, "\(Self.ns)/n/objects/o1", #"{"name": "o2"}"#)
            #expect(renamed.jsonBody?["name"]?.stringValue == "o2")
            #expect(try await client.call(.reader, .get, "\(Self.ns)/n/objects/o1").status == .notFound)
            #expect(try await client.call(.reader, .get, "\(Self.ns)/n/objects/o2").status == .ok)
            #expect(try await client.call(.admin, .delete, "\(Self.ns)/n/objects/o2").status == .noContent)
            #expect(try await client.call(.admin, .get, "\(Self.ns)/n/objects").jsonBody?["objects"]?.arrayValue?.isEmpty == true)

            // Properties: the list is a map by name.
            let property = try await client.call(
                .admin, .post, "\(Self.ns)/n/properties",
                #"{"name": "hypervisor", "title": "Hypervisor", "type": "string", "enum": ["kvm", "qemu"]}"#)
            #expect(property.status == .created, "\(property.text)")
            #expect(property.jsonBody?["title"]?.stringValue == "Hypervisor")
            let properties = try await client.call(.reader, .get, "\(Self.ns)/n/properties")
            #expect(properties.jsonBody?["properties"]?["hypervisor"]?["type"]?.stringValue == "string")
            let updated = try await client.call(
                .admin, .put, "\(Self.ns)/n/properties/hypervisor", #"{"name": "hypervisor", "title": "HV", "type": "string"}"#)
            #expect(updated.jsonBody?["title"]?.stringValue == "HV")
            #expect(try await client.call(.admin, .post, "\(Self.ns)/n/properties", #"{"name": "x", "type": "string"}"#).status == .badRequest)

            // Tags: bulk create replaces, unless appending; one tag by URL.
            let bulk = try await client.call(.admin, .post, "\(Self.ns)/n/tags", #"{"tags": [{"name": "a"}, {"name": "b"}]}"#)
            #expect(bulk.status == .created)
            #expect(try await client.call(.admin, .post, "\(Self.ns)/n/tags", #"{"tags": [{"name": "c"}]}"#).status == .created)
            #expect(try await Self.tagNames(client) == ["c"])
            let append = try await client.execute(
                uri: "\(Self.ns)/n/tags", method: .post,
                headers: [.contentType: "application/json", HTTPField.Name("X-Openstack-Append")!: "True"],
                body: ByteBuffer(string: #"{"tags": [{"name": "d"}]}"#))
            #expect(append.status == .created)
            #expect(try await Self.tagNames(client) == ["c", "d"])
            #expect(try await client.call(.admin, .post, "\(Self.ns)/n/tags", #"{"tags": [{"name": "e"}, {"name": "e"}]}"#).status == .conflict)
            #expect(try await Self.tagNames(client) == ["c", "d"])
            #expect(try await client.call(.admin, .post, "\(Self.ns)/n/tags/single").status == .created)
            #expect(try await client.call(.admin, .post, "\(Self.ns)/n/tags/single").status == .conflict)
            let tagRename = try await client.call(.admin, .put, "\(Self.ns)/n/tags/single", #"{"name": "double"}"#)
            #expect(tagRename.jsonBody?["name"]?.stringValue == "double")
            #expect(try await client.call(.admin, .delete, "\(Self.ns)/n/tags/double").status == .noContent)
            #expect(try await client.call(.admin, .delete, "\(Self.ns)/n/tags").status == .noContent)
            #expect(try await Self.tagNames(client) == [])

            // The namespace document gathers everything.
            let show = try await client.call(.reader, .get, "\(Self.ns)/n")
            #expect(show.jsonBody?["properties"]?["hypervisor"]?["title"]?.stringValue == "HV")
        }
    }

    @Test func resourceTypeAssociations_prefixAndProtection() async throws {
        try await APITestHarness().run { client in
            #expect(
                try await client.call(
                    .admin, .post, Self.ns,
                    #"{"namespace": "n", "visibility": "public", "properties": {"cpu": {"title": "CPU", "type": "integer"}}}"#
                ).status == .created)
            let association = try await client.call(
                .admin, .post, "\(Self.ns)/n/resource_types", #"{"name": "OS::Glance::Image", "prefix": "hw_"}"#)
            #expect(association.status == .created, "\(association.text)")
            #expect(association.jsonBody?["prefix"]?.stringValue == "hw_")
            #expect(
                try await client.call(.admin, .post, "\(Self.ns)/n/resource_types", #"{"name": "OS::Glance::Image"}"#).status
                    == .conflict)
            let listed = try await client.call(.reader, .get, "\(Self.ns)/n/resource_types")
            #expect(listed.jsonBody?["resource_type_associations"]?[0]?["name"]?.stringValue == "OS::Glance::Image")
            let prefixed = try await client.call(.reader, .get, "\(Self.ns)/n?resource_type=OS::Glance::Image")
            #expect(prefixed.jsonBody?["properties"]?["hw_cpu"] != nil)
            let byType = try await client.call(.reader, .get, "\(Self.ns)?resource_types=OS::Glance::Image")
            #expect(byType.jsonBody?["namespaces"]?.arrayValue?.count == 1)
            let otherType = try await client.call(.reader, .get, "\(Self.ns)?resource_types=OS::Nova::Flavor")
            #expect(otherType.jsonBody?["namespaces"]?.arrayValue?.count == 0)

            // Protected: nothing inside can be deleted either.
            #expect(
                try await client.call(.admin, .put, "\(Self.ns)/n", #"{"namespace": "n", "visibility": "public", "protected": true}"#)
                    .status == .ok)
            #expect(try await client.call(.admin, .delete, "\(Self.ns)/n/resource_types/OS::Glance::Image").status == .forbidden)
            #expect(try await client.call(.admin, .delete, "\(Self.ns)/n/properties/cpu").status == .forbidden)
            #expect(try await client.call(.admin, .delete, "\(Self.ns)/n/properties").status == .forbidden)
            #expect(try await client.call(.admin, .put, "\(Self.ns)/n", #"{"namespace": "n", "visibility": "public"}"#).status == .ok)
            #expect(try await client.call(.admin, .delete, "\(Self.ns)/n/resource_types/OS::Glance::Image").status == .noContent)
            #expect(try await client.call(.admin, .delete, "\(Self.ns)/n/resource_types/OS::Glance::Image").status == .notFound)
        }
    }

    @Test func schemas_haveGlanceNames() async throws {
        try await APITestHarness().run { client in
            let names = [
                "namespace": "namespace", "namespaces": "namespaces", "resource_type": "resource_type_association",
                "resource_types": "resource_type_associations", "object": "object", "objects": "objects",
                "property": "property", "properties": "properties", "tag": "tag", "tags": "tags",
            ]
            for (path, name) in names {
                let response = try await client.call(.reader, .get, "/v2/schemas/metadefs/\(path)")
                #expect(response.status == .ok)
                #expect(response.jsonBody?["name"]?.stringValue == name, "\(path)")
            }
        }
    }

    static let ourDefinitions = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("etc/metadefs").path

    @Test func loadMetadefs_loadsOurDefinitions_skipsOrReplacesExisting_thenServesThem() async throws {
        let harness = try APITestHarness()
        let repository = try ApplicationDependencies.makeRepository(harness.configuration, logger: Logger(label: "test"))
        let metadefs = ApplicationDependencies.metadefs(beside: repository)
        let first = try await MetadefLoader.load(directory: Self.ourDefinitions, into: metadefs, overwrite: false)
        #expect(first.loaded.sorted() == ["ImageStore::Disk", "ImageStore::GuestOS"])
        let second = try await MetadefLoader.load(directory: Self.ourDefinitions, into: metadefs, overwrite: false)
        #expect(second.loaded.isEmpty && second.skipped.count == 2)
        let third = try await MetadefLoader.load(directory: Self.ourDefinitions, into: metadefs, overwrite: true)
        #expect(third.loaded.count == 2)

        // A file that is not a namespace document: an error naming it, nothing loaded from it.
        let bad = harness.base.url.appendingPathComponent("bad-metadefs")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        try Data(#"{"namespace": "x", "properties": {"p": {"title": "no type"}}}"#.utf8).write(to: bad.appendingPathComponent("x.json"))
        let error = await expectError(.badRequest) { try await MetadefLoader.load(directory: bad.path, into: metadefs, overwrite: false) }
        #expect(error?.message.contains("x.json") == true)
        #expect(try await metadefs.namespace("x") == nil)

        try await harness.run { client in
            let disk = try await client.call(.reader, .get, "\(Self.ns)/ImageStore::Disk")
            #expect(disk.status == .ok)
            #expect(disk.jsonBody?["protected"] == .bool(true))
            #expect(disk.jsonBody?["properties"]?["disk_bus"]?["enum"]?.arrayValue?.count == 5)
            #expect(disk.jsonBody?["objects"]?.arrayValue?.count == 1)
            #expect(disk.jsonBody?["tags"]?[0]?["name"]?.stringValue == "virtio")
            let forImages = try await client.call(.reader, .get, "\(Self.ns)/ImageStore::Disk?resource_type=OS::Glance::Image")
            #expect(forImages.jsonBody?["properties"]?["hw_disk_bus"] != nil)
            let imageNamespaces = try await client.call(.reader, .get, "\(Self.ns)?resource_types=OS::Glance::Image")
            #expect(imageNamespaces.jsonBody?["namespaces"]?.arrayValue?.count == 2)
        }
    }

    static func tagNames(_ client: some TestClientProtocol) async throws -> [String] {
        let response = try await client.call(.reader, .get, "\(ns)/n/tags")
        return response.jsonBody?["tags"]?.arrayValue?.compactMap { $0["name"]?.stringValue }.sorted() ?? []
    }
}
