import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import ImageStoreTestSupport
import NIOCore
import Testing

/// glance-direct and web-download to several stores (`stores`, `all_stores`) through the real API, as
/// Glance's serial import flow: with `all_stores_must_succeed` any store failing fails the import (what
/// was written goes, `queued`); without it a failing store — the first one too — is named in
/// `os_glance_failed_import` and the next is tried. Each case checks the statuses, the `os_glance_*`
/// properties, the bytes in each store and that staging is empty. (`ImageImporterTests` in
/// ImageStoreCoreTests holds an import between two stores to see the image `importing`.)
@Suite struct MultiStoreImportAPITests {
    static func harness(port: Int? = nil) throws -> APITestHarness {
        var harness = try MultiStoreAPITests.harness()
        if let port {
            harness.configuration.importFilter.allowedHosts = ["127.0.0.1"]
            harness.configuration.importFilter.allowedPorts = [port]
        }
        return harness
    }

    static func web(_ uri: String, _ extra: String) -> String { #"{"method": {"name": "web-download", "uri": "\#(uri)"}, \#(extra)}"# }

    @Test func glanceDirect_firstStoreGone_notAllMustSucceed_activeInTheSecond_firstNamedFailed() async throws {
        let harness = try Self.harness()
        try await harness.run { client in
            try FileManager.default.removeItem(atPath: harness.storeDirectory("nfs") + "/.glance")
            let id = try await client.createImage()
            let data = randomBytes(50_000)
            #expect(try await client.stage(id, data).status == .noContent)
            let accepted = try await client.importImage(
                id, #"{"method": {"name": "glance-direct"}, "stores": ["nfs", "fast"], "all_stores_must_succeed": false}"#)
            #expect(accepted.status == .accepted, "\(accepted.text)")
            let image = try await client.waitForCopy(id)
            #expect(image["status"] == "active")
            #expect(image["stores"] == "fast")
            #expect(image["os_glance_failed_import"] == "nfs")
            #expect(image["os_glance_importing_to_stores"] == "")
            #expect(image["os_glance_import_task"] == nil)
            #expect(image["checksum"]?.stringValue == md5Hex(data))
            #expect(harness.bytes(id, in: "fast") == data)
            #expect(try harness.files(in: "nfs") == [])
            #expect(try harness.stagingFiles() == [])
            let tasks = try await client.json("/v2/images/\(id)/tasks", method: .get).1
            #expect(tasks?["tasks"]?[0]?["status"] == "success")
        }
    }

    @Test func glanceDirect_everyStoreGone_notAllMustSucceed_queued_allNamed_nothingLeft() async throws {
        let harness = try Self.harness()
        try await harness.run { client in
            let id = try await client.createImage()
            #expect(try await client.stage(id, randomBytes(20_000)).status == .noContent)
            for store in ["fast", "nfs"] { try FileManager.default.removeItem(atPath: harness.storeDirectory(store) + "/.glance") }
            #expect(
                try await client.importImage(
                    id, #"{"method": {"name": "glance-direct"}, "all_stores": true, "all_stores_must_succeed": false}"#
                ).status == .accepted)
            let image = try await client.waitForCopy(id)
            #expect(image["status"] == "queued")
            #expect(image["os_glance_failed_import"] == "fast,nfs")
            #expect(image["os_glance_importing_to_stores"] == "")
            #expect(image["stores"] == nil)
            #expect(image["checksum"] == .null)
            #expect(try harness.files(in: "fast").filter { !$0.hasPrefix("os_glance") } == [])
            #expect(try harness.files(in: "nfs") == [])
            #expect(try harness.stagingFiles() == [])
            let tasks = try await client.json("/v2/images/\(id)/tasks", method: .get).1
            #expect(tasks?["tasks"]?[0]?["status"] == "failure")
        }
    }

    @Test func webDownload_allStores_fetchedOnce_activeInBoth() async throws {
        let data = randomBytes(120_000)
        try await LoopbackHTTPServer.with(data) { port in
            let harness = try Self.harness(port: port)
            try await harness.run { client in
                let id = try await client.createImage()
                let accepted = try await client.importImage(id, Self.web("http://127.0.0.1:\(port)/image", #""all_stores": true"#))
                #expect(accepted.status == .accepted, "\(accepted.text)")
                let image = try await client.waitForCopy(id)
                #expect(image["status"] == "active")
                #expect(image["stores"] == "fast,nfs")
                #expect(image["os_glance_failed_import"] == "")
                #expect(image["os_glance_importing_to_stores"] == "")
                #expect(image["os_hash_value"]?.stringValue == sha512Hex(data))
                #expect(harness.bytes(id, in: "fast") == data)
                #expect(harness.bytes(id, in: "nfs") == data)
                #expect(try harness.stagingFiles() == [])
            }
        }
    }

    @Test func webDownload_secondStoreGone_allMustSucceed_queued_everyStoreNamed_nothingLeft() async throws {
        let data = randomBytes(90_000)
        try await LoopbackHTTPServer.with(data) { port in
            let harness = try Self.harness(port: port)
            try await harness.run { client in
                try FileManager.default.removeItem(atPath: harness.storeDirectory("nfs") + "/.glance")
                let id = try await client.createImage()
                let body = Self.web("http://127.0.0.1:\(port)/image", #""stores": ["fast", "nfs"]"#)
                #expect(try await client.importImage(id, body).status == .accepted)
                let image = try await client.waitForCopy(id)
                // Glance's web-download revert names every store of the import failed.
                #expect(image["status"] == "queued")
                #expect(image["os_glance_failed_import"] == "fast,nfs")
                #expect(image["os_glance_importing_to_stores"] == "")
                #expect(image["stores"] == nil)
                #expect(image["size"] == .null)
                #expect(harness.bytes(id, in: "fast") == nil)
                #expect(try harness.files(in: "nfs") == [])
                #expect(try harness.stagingFiles() == [])

                // all_stores_must_succeed false, the FIRST store gone: the download goes to the second.
                let lenient = try await client.createImage()
                let body2 = Self.web("http://127.0.0.1:\(port)/image", #""stores": ["nfs", "fast"], "all_stores_must_succeed": false"#)
                #expect(try await client.importImage(lenient, body2).status == .accepted)
                let kept = try await client.waitForCopy(lenient)
                #expect(kept["status"] == "active")
                #expect(kept["stores"] == "fast")
                #expect(kept["os_glance_failed_import"] == "nfs")
                #expect(kept["os_glance_importing_to_stores"] == "")
                #expect(harness.bytes(lenient, in: "fast") == data)
                #expect(try harness.files(in: "nfs") == [])
            }
        }
    }

    @Test func webDownload_dataRefused_failsEveryStoreAtOnce_notAllMustSucceed() async throws {
        try await LoopbackHTTPServer.with(randomBytes(1000)) { port in
            let harness = try Self.harness(port: port)
            try await harness.run { client in
                // A 404 from the web server: no store can have the image, whatever all_stores_must_succeed.
                let id = try await client.createImage()
                let body = Self.web("http://127.0.0.1:\(port)/missing", #""all_stores": true, "all_stores_must_succeed": false"#)
                #expect(try await client.importImage(id, body).status == .accepted)
                let image = try await client.waitForCopy(id)
                #expect(image["status"] == "queued")
                #expect(image["os_glance_failed_import"] == "fast,nfs")
                #expect(image["os_glance_importing_to_stores"] == "")
                #expect(try harness.files(in: "fast").filter { !$0.hasPrefix("os_glance") } == [".glance"])
                #expect(try harness.files(in: "nfs") == [".glance"])
            }
        }
    }
}
