import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreTestSupport
import NIOCore
import Testing

/// Uploads are checked to be what their `disk_format` claims, through the real application: Glance 33's
/// 415 for a mismatch or a hostile image, the image back to `queued` and nothing left in the store.
@Suite struct FormatInspectionAPITests {
    func create(_ client: some TestClientProtocol, disk: String, container: String = "bare") async throws -> String {
        try await client.createImage(#"{"name": "f", "disk_format": "\#(disk)", "container_format": "\#(container)"}"#)
    }

    @Test func qcow2FromQemuImg_becomesActive_withItsVirtualSize() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let qcow2 = try QemuImg.create("qcow2", size: "64M", in: directory)
        let harness = try APITestHarness()
        try await harness.run { client in
            let id = try await create(client, disk: "qcow2")
            #expect(try await client.upload(id, qcow2).status == .noContent)
            let image = try await client.image(id)
            #expect(image["status"]?.stringValue == "active")
            #expect(image["virtual_size"] == .int(64 << 20))
            #expect(image["size"] == .int(Int64(qcow2.count)))
        }
    }

    @Test func hostileOrMismatchedData_is415_andNothingIsKept_butOtherContainersAreNotInspected() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        _ = try QemuImg.create("raw", size: "1M", name: "base.raw", in: directory)
        let backed = try QemuImg.create("qcow2", extra: ["-b", "base.raw", "-F", "raw"], name: "backed.qcow2", in: directory)
        let harness = try APITestHarness()
        try await harness.run { client in
            let cases: [(disk: String, data: [UInt8], says: String)] = [
                ("qcow2", backed, "backing_file"),
                ("raw", backed, "backing_file"),
                ("qcow2", randomBytes(100_000), "does not match"),
                ("vmdk", randomBytes(4_096), "does not match"),
            ]
            for (disk, data, says) in cases {
                let id = try await create(client, disk: disk)
                let response = try await client.upload(id, data)
                #expect(response.status == .unsupportedMediaType, "\(disk): \(response.status)")
                #expect(response.errorMessage?.contains(says) == true, "\(response.errorMessage ?? "")")
                let image = try await client.image(id)
                #expect(image["status"]?.stringValue == "queued")
                #expect(image["size"] == .null)
                #expect(image["checksum"] == .null)
            }
            let left = try harness.storeFiles()
            #expect(left.isEmpty, "\(left)")
            // Glance inspects bare containers only.
            let ova = try await create(client, disk: "qcow2", container: "ova")
            #expect(try await client.upload(ova, randomBytes(10_000)).status == .noContent)
        }
    }

    @Test func matchingNotRequired_letsMismatchesThrough_butNotBackingFiles() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        _ = try QemuImg.create("raw", size: "1M", name: "base.raw", in: directory)
        let backed = try QemuImg.create("qcow2", extra: ["-b", "base.raw", "-F", "raw"], name: "backed.qcow2", in: directory)
        let harness = try APITestHarness { $0.requireImageFormatMatch = false }
        try await harness.run { client in
            // Mismatch allowed by configuration: accepted, no virtual size.
            let mismatch = try await create(client, disk: "qcow2")
            #expect(try await client.upload(mismatch, randomBytes(10_000)).status == .noContent)
            #expect(try await client.image(mismatch)["virtual_size"] == .null)
            // A backing file is refused whatever the configuration.
            let hostile = try await create(client, disk: "qcow2")
            #expect(try await client.upload(hostile, backed).status == .unsupportedMediaType)
        }
    }

    /// Uploads `data` to a new image claiming `disk`; on refusal checks Glance's 415 with `says`, the image
    /// back to `queued` and nothing in the store.
    func expect(
        _ client: some TestClientProtocol, _ harness: APITestHarness, disk: String, _ data: [UInt8], refusedWith says: String? = nil,
        virtualSize: JSONValue? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let id = try await create(client, disk: disk)
        let response = try await client.upload(id, data)
        let image = try await client.image(id)
        if let says {
            #expect(response.status == .unsupportedMediaType, "\(disk): \(response.status)", sourceLocation: sourceLocation)
            #expect(response.errorMessage?.contains(says) == true, "\(response.errorMessage ?? "")", sourceLocation: sourceLocation)
            #expect(image["status"]?.stringValue == "queued", sourceLocation: sourceLocation)
            #expect(image["size"] == .null, sourceLocation: sourceLocation)
            let left = try harness.storeFiles()
            #expect(left.allSatisfy { !$0.contains(id) }, "\(left)", sourceLocation: sourceLocation)
        } else {
            #expect(response.status == .noContent, "\(disk): \(response.status) \(response.text)", sourceLocation: sourceLocation)
            #expect(image["status"]?.stringValue == "active", sourceLocation: sourceLocation)
            #expect(image["size"] == .int(Int64(data.count)), sourceLocation: sourceLocation)
            if let virtualSize { #expect(image["virtual_size"] == virtualSize, sourceLocation: sourceLocation) }
        }
    }

    @Test func partitionedDisks_areRaw_afterTheMbrCheck() async throws {
        let gpt = PartitionedDisk.gpt()
        var withExtra = gpt  // a second partition next to the protective one
        PartitionedDisk.partition(&withExtra, 1, type: 0x0C, chs: [0, 0, 0], start: 4096, sectors: 100)
        let hybrid = withExtra
        let harness = try APITestHarness()
        try await harness.run { client in
            try await expect(client, harness, disk: "raw", gpt, virtualSize: .int(Int64(gpt.count)))
            try await expect(client, harness, disk: "raw", PartitionedDisk.mbr(), virtualSize: .int(8_192 * 512))
            try await expect(client, harness, disk: "raw", hybrid, refusedWith: "Image failed safety checks: mbr")
            try await expect(client, harness, disk: "qcow2", gpt, refusedWith: "does not match stream data gpt")
            try await expect(client, harness, disk: "ami", gpt, refusedWith: "does not match stream data gpt")
        }
        // [image_format] gpt_safety_checks_nonfatal = mbr: the hybrid MBR is let through.
        let relaxed = try APITestHarness { $0.gptSafetyChecksNonfatal = ["mbr"] }
        try await relaxed.run { client in
            try await expect(client, relaxed, disk: "raw", hybrid, virtualSize: .int(Int64(hybrid.count)))
        }
    }

    @Test func luksImages_areAcceptedAsRaw_version1Only() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let luks = try QemuImg.create(
            "luks", size: "1M", options: "key-secret=sec0,iter-time=10", extra: ["--object", "secret,id=sec0,data=hunter2"],
            in: directory)
        var version2 = luks
        version2[7] = 2
        let luks2 = version2
        let harness = try APITestHarness()
        try await harness.run { client in
            // Glance's disk_formats has no luks: an encrypted disk is uploaded as raw and sized as its bytes.
            let (refused, _) = try await client.json(
                "/v2/images", method: .post, body: #"{"name": "f", "disk_format": "luks", "container_format": "bare"}"#)
            #expect(refused.status == .badRequest)
            try await expect(client, harness, disk: "raw", luks, virtualSize: .int(Int64(luks.count)))
            try await expect(client, harness, disk: "raw", luks2, refusedWith: "version")
            try await expect(client, harness, disk: "qcow2", luks, refusedWith: "does not match stream data luks")
        }
    }

    @Test func amiAriAki_takeAnyUnrecognisedData_withoutAVirtualSize() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let qcow2 = try QemuImg.create("qcow2", size: "1M", in: directory)
        let harness = try APITestHarness()
        try await harness.run { client in
            for disk in ["ami", "ari", "aki"] {
                try await expect(client, harness, disk: disk, randomBytes(50_000), virtualSize: .null)
                try await expect(client, harness, disk: disk, qcow2, refusedWith: "does not match stream data qcow2")
            }
        }
    }
}
