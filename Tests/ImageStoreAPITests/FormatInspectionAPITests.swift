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
}
