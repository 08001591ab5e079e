import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreTestSupport
import Logging
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreCore
import NIOCore
import Testing

/// Several stores (`enabled_backends = fast:file, nfs:file`), each a real directory with its own mount
/// guard (marker file), through the real HTTP API: where uploads go, per-store 410, reads from the best
/// copy with fallback, the stores detail, copy-image and removing one copy — with the bytes on disk,
/// the image's status and `stores` checked each time.
@Suite struct MultiStoreAPITests {
    /// `fast` is the default store; `nfs` weighs more, so downloads prefer it.
    static func harness() throws -> APITestHarness {
        let harness = try APITestHarness { config in
            // A configuration file means guarded stores (the marker is checked before every write).
            config.sourcePath = "/dev/null"
            config.enabledBackends = [StoreBackend(id: "fast", type: "file"), StoreBackend(id: "nfs", type: "file")]
            config.defaultBackend = "fast"
            let base = (config.store.datadir as NSString).deletingLastPathComponent
            var fast = FilesystemStoreOptions(datadir: base + "/fast", chunkSize: 8192, description: "local disks", weight: 10)
            fast.guardInterval = .milliseconds(100)
            config.store = fast
            var nfs = FilesystemStoreOptions(datadir: base + "/nfs", chunkSize: 4096, weight: 50)
            nfs.guardInterval = .milliseconds(100)
            config.storeOptions["nfs"] = nfs
        }
        for store in ["fast", "nfs"] {
            let dir = harness.storeDirectory(store)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data().write(to: URL(fileURLWithPath: dir + "/.glance"))
        }
        return harness
    }

    @Test func infoStores_listEveryStore_defaultWeightChunkSizeAndGuard() async throws {
        let harness = try Self.harness()
        try await harness.run { client in
            let (list, listBody) = try await client.json("/v2/info/stores", method: .get)
            #expect(list.status == .ok)
            #expect(listBody == ["stores": [["id": "fast", "description": "local disks", "default": "true"], ["id": "nfs"]]])

            try await client.waitForStore("nfs", "enabled")
            let (_, detail) = try await client.json("/v2/info/stores/detail", method: .get)
            let stores = try #require(detail?["stores"]?.arrayValue)
            #expect(stores.map { $0["id"] } == ["fast", "nfs"])
            #expect(stores.map { $0["weight"] } == [10, 50])
            #expect(stores.map { $0["properties"]?["chunk_size"] } == [8192, 4096])
            #expect(stores.map { $0["properties"]?["data_dir"]?.stringValue } == [harness.storeDirectory("fast"), harness.storeDirectory("nfs")])
            #expect(stores.map { $0["guard"]?["state"] } == ["enabled", "enabled"])

            let (created, _) = try await client.json(
                "/v2/images", method: .post, body: #"{"name": "n", "disk_format": "raw", "container_format": "bare"}"#)
            #expect(created.headers[HTTPField.Name("OpenStack-image-store-ids")!] == "fast,nfs")
        }
    }

    @Test func upload_goesToTheStoreTheHeaderNames_defaultOtherwise_unknownIs400() async throws {
        let harness = try Self.harness()
        try await harness.run { client in
            let toNFS = try await client.createImage()
            let nfsData = randomBytes(100_000)
            #expect(try await client.upload(toNFS, nfsData, headers: [.imageMetaStore: "nfs"]).status == .noContent)
            let image = try await client.image(toNFS)
            #expect(image["status"] == "active")
            #expect(image["stores"] == "nfs")
            // The location is ours to keep: never shown as a custom property.
            #expect(image["os_glance_stores"] == nil)
            #expect(harness.bytes(toNFS, in: "nfs") == nfsData)
            #expect(harness.bytes(toNFS, in: "fast") == nil)

            let toDefault = try await client.createImage()
            #expect(try await client.upload(toDefault, randomBytes(1000)).status == .noContent)
            #expect(try await client.image(toDefault)["stores"] == "fast")
            #expect(harness.bytes(toDefault, in: "fast")?.count == 1000)

            let unknown = try await client.createImage()
            let refused = try await client.upload(unknown, randomBytes(1000), headers: [.imageMetaStore: "slow"])
            #expect(refused.status == .badRequest)
            #expect(refused.errorMessage == "Store for identifier slow not found")
            #expect(try await client.status(of: unknown) == "queued")
            #expect(try harness.files(in: "fast") == [".glance", toDefault])
            #expect(try harness.files(in: "nfs") == [".glance", toNFS])

            // The stored bytes come back, from the store that holds them.
            let download = try await client.execute(uri: "/v2/images/\(toNFS)/file", method: .get)
            #expect(download.status == .ok)
            #expect(Array(download.body.readableBytesView) == nfsData)
            #expect(download.headers[HTTPField.Name("Content-MD5")!] == md5Hex(nfsData))
        }
    }

    @Test func oneStoreGone_writesToIt410_theOtherStoreKeepsWorking() async throws {
        let harness = try Self.harness()
        try await harness.run { client in
            let inFast = try await client.createImage()
            let fastData = randomBytes(50_000)
            #expect(try await client.upload(inFast, fastData).status == .noContent)
            let inNFS = try await client.createImage()
            #expect(try await client.upload(inNFS, randomBytes(10_000), headers: [.imageMetaStore: "nfs"]).status == .noContent)

            try FileManager.default.removeItem(atPath: harness.storeDirectory("nfs") + "/.glance")
            let pending = try await client.createImage()
            let refused = try await client.upload(pending, randomBytes(20_000), headers: [.imageMetaStore: "nfs"])
            #expect(refused.status == .gone)
            #expect(refused.errorMessage?.hasPrefix("store disabled: marker missing") == true, "\(refused.text)")
            #expect(try await client.status(of: pending) == "queued")
            #expect(try harness.files(in: "nfs") == [inNFS])
            // Deleting an image with a copy there is a write there: refused, nothing changes.
            #expect(try await client.delete(inNFS).status == .gone)
            #expect(try await client.status(of: inNFS) == "active")
            // Reads of an image only there: 503 (its one copy is unavailable).
            try await client.waitForStore("nfs", "disabled")
            #expect(try await client.execute(uri: "/v2/images/\(inNFS)/file", method: .get).status == .serviceUnavailable)

            // The default store is untouched by it.
            let other = try await client.createImage()
            #expect(try await client.upload(other, randomBytes(30_000)).status == .noContent)
            #expect(try await client.image(other)["stores"] == "fast")
            let read = try await client.execute(uri: "/v2/images/\(inFast)/file", method: .get)
            #expect(Array(read.body.readableBytesView) == fastData)
            let (_, detail) = try await client.json("/v2/info/stores/detail", method: .get)
            #expect(detail?["stores"]?.arrayValue?.map { $0["guard"]?["state"] } == ["enabled", "disabled"])

            // The marker is back: the very next write to that store works.
            try Data().write(to: URL(fileURLWithPath: harness.storeDirectory("nfs") + "/.glance"))
            #expect(try await client.upload(pending, randomBytes(20_000), headers: [.imageMetaStore: "nfs"]).status == .noContent)
            #expect(try await client.image(pending)["stores"] == "nfs")
        }
    }

    @Test func copyImage_thenReadsPreferTheHeavierCopy_fallBack_andOneCopyIsRemoved() async throws {
        let harness = try Self.harness()
        try await harness.run { client in
            let id = try await client.createImage()
            let data = randomBytes(300_000)
            #expect(try await client.upload(id, data).status == .noContent)
            #expect(try await client.importImage(id, #"{"method": {"name": "copy-image"}, "stores": ["nfs"]}"#).status == .accepted)
            let copied = try await client.waitForCopy(id)
            #expect(copied["status"] == "active")
            #expect(copied["stores"] == "fast,nfs")
            #expect(copied["os_glance_failed_import"] == "")
            #expect(copied["os_glance_import_task"] == nil)
            #expect(harness.bytes(id, in: "nfs") == data)
            #expect(try harness.files(in: "nfs") == [".glance", id])
            let tasks = try await client.json("/v2/images/\(id)/tasks", method: .get).1
            #expect(tasks?["tasks"]?[0]?["status"] == "success")
            // Copying again to a store that has it is Glance's 400.
            #expect(try await client.importImage(id, #"{"method": {"name": "copy-image"}, "stores": ["nfs"]}"#).status == .badRequest)

            // Which copy a download reads: make the fast one tell itself apart (same length).
            let marked = Array(repeating: UInt8(7), count: data.count)
            try Data(marked).write(to: URL(fileURLWithPath: harness.storeDirectory("fast") + "/" + id))
            func download() async throws -> [UInt8] {
                let response = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
                #expect(response.status == .ok)
                return Array(response.body.readableBytesView)
            }
            #expect(try await download() == data, "nfs weighs more: its copy is read")
            try FileManager.default.removeItem(atPath: harness.storeDirectory("nfs") + "/.glance")
            try await client.waitForStore("nfs", "disabled")
            #expect(try await download() == marked, "nfs is disabled: the fast copy is read")

            // Removing the nfs copy is a write to nfs: 410 while it is gone, nothing changes.
            #expect(try await client.execute(uri: "/v2/stores/nfs/\(id)", method: .delete).status == .gone)
            #expect(try await client.image(id)["stores"] == "fast,nfs")
            try Data().write(to: URL(fileURLWithPath: harness.storeDirectory("nfs") + "/.glance"))
            #expect(try await client.execute(uri: "/v2/stores/nfs/\(id)", method: .delete).status == .noContent)
            #expect(try await client.image(id)["stores"] == "fast")
            #expect(try harness.files(in: "nfs") == [".glance"])
            // The last copy stays (403: delete the image instead).
            #expect(try await client.execute(uri: "/v2/stores/fast/\(id)", method: .delete).status == .forbidden)
            // As Glance, one copy left is 403 whichever store is named.
            #expect(try await client.execute(uri: "/v2/stores/nfs/\(id)", method: .delete).status == .forbidden)
            #expect(try await client.image(id)["stores"] == "fast")
        }
    }

    @Test func copyImage_toAGoneStore_failsCleanly_namedInFailedImport() async throws {
        let harness = try Self.harness()
        try await harness.run { client in
            let id = try await client.createImage()
            let data = randomBytes(64_000)
            #expect(try await client.upload(id, data).status == .noContent)
            try FileManager.default.removeItem(atPath: harness.storeDirectory("nfs") + "/.glance")
            #expect(try await client.importImage(id, #"{"method": {"name": "copy-image"}, "all_stores": true}"#).status == .accepted)
            let image = try await client.waitForCopy(id)
            #expect(image["status"] == "active")
            #expect(image["stores"] == "fast")
            #expect(image["os_glance_failed_import"] == "nfs")
            #expect(image["os_glance_importing_to_stores"] == "")
            #expect(image["os_glance_import_task"] == nil)
            // Nothing written there, no temporary file left; the image is intact where it was.
            #expect(try harness.files(in: "nfs") == [])
            #expect(harness.bytes(id, in: "fast") == data)
            let tasks = try await client.json("/v2/images/\(id)/tasks", method: .get).1
            #expect(tasks?["tasks"]?[0]?["status"] == "failure")
            // The image is not locked: once the store is back the copy can be asked again.
            try Data().write(to: URL(fileURLWithPath: harness.storeDirectory("nfs") + "/.glance"))
            #expect(try await client.importImage(id, #"{"method": {"name": "copy-image"}, "stores": ["nfs"]}"#).status == .accepted)
            let again = try await client.waitForCopy(id)
            #expect(again["stores"] == "fast,nfs")
            #expect(again["os_glance_failed_import"] == "")
            #expect(harness.bytes(id, in: "nfs") == data)

            // Deleting the image removes every copy.
            #expect(try await client.delete(id).status == .noContent)
            #expect(try harness.files(in: "fast") == [".glance"])
            #expect(try harness.files(in: "nfs") == [".glance"])
        }
    }

    @Test func glanceDirect_importsToTheNamedStores_aGoneOneIsNamedInFailedImport() async throws {
        let harness = try Self.harness()
        try await harness.run { client in
            let id = try await client.createImage()
            let data = randomBytes(40_000)
            #expect(try await client.stage(id, data).status == .noContent)
            #expect(try await client.importImage(id, #"{"method": {"name": "glance-direct"}, "stores": ["nfs", "fast"]}"#).status == .accepted)
            let image = try await client.waitForCopy(id)
            #expect(image["status"] == "active")
            #expect(image["stores"] == "nfs,fast")
            #expect(harness.bytes(id, in: "nfs") == data)
            #expect(harness.bytes(id, in: "fast") == data)

            // The store the import writes first is gone: the import fails, the image is queued again,
            // nothing is left in either store, and the store is named.
            try FileManager.default.removeItem(atPath: harness.storeDirectory("nfs") + "/.glance")
            let second = try await client.createImage()
            #expect(try await client.stage(second, data).status == .noContent)
            #expect(
                try await client.execute(
                    uri: "/v2/images/\(second)/import", method: .post,
                    headers: [.contentType: "application/json", .imageMetaStore: "nfs"],
                    body: ByteBuffer(string: #"{"method": {"name": "glance-direct"}}"#)
                ).status == .accepted)
            let failed = try await client.waitForImport(second)
            #expect(failed["status"] == "queued")
            #expect(failed["os_glance_failed_import"] == "nfs")
            #expect(harness.bytes(second, in: "nfs") == nil)
            #expect(harness.bytes(second, in: "fast") == nil)
        }
    }

    @Test func healthcheck_oneStoreBackendPerStore_aGoneStoreIsNamed() async throws {
        var harness = try Self.harness()
        harness.configuration.healthcheck.backends = ["store"]
        harness.configuration.healthcheck.detailed = true
        harness.configuration.healthcheck.checkInterval = .milliseconds(100)
        let nfsMarker = harness.storeDirectory("nfs") + "/.glance"
        try await harness.run { client in
            func health() async throws -> (HTTPResponse.Status, [JSONValue]) {
                let response = try await client.execute(uri: "/healthcheck", method: .get, headers: [.accept: "application/json"])
                return (response.status, response.jsonBody?["reasons"]?.arrayValue ?? [])
            }
            // Polled: on a loaded machine a round can be late, and the monitor then reports itself stuck.
            try await waitFor {
                let (status, reasons) = try await health()
                return status == .ok
                    && reasons.map { $0["details"]?.stringValue } == ["store fast: store enabled", "store nfs: store enabled"]
            }

            try FileManager.default.removeItem(atPath: nfsMarker)
            var gone: [JSONValue] = []
            try await waitFor {
                let (status, reasons) = try await health()
                gone = reasons
                return status == .serviceUnavailable && reasons.map { $0["reason"]?.stringValue } == ["OK", "STORE DISABLED"]
            }
            #expect(gone.last?["details"]?.stringValue?.hasPrefix("store nfs: marker missing") == true, "\(gone)")
        }
    }

    @Test func locations_showDirectURLAndMultipleLocations_fileURLsWithTheStore_readOnly() async throws {
        var harness = try Self.harness()
        harness.configuration.showImageDirectURL = true
        harness.configuration.showMultipleLocations = true
        let fastDir = harness.storeDirectory("fast")
        let nfsDir = harness.storeDirectory("nfs")
        try await harness.run { client in
            let (created, createdBody) = try await client.json(
                "/v2/images", method: .post, body: #"{"name": "n", "disk_format": "raw", "container_format": "bare"}"#)
            #expect(created.status == .created)
            #expect(createdBody?["locations"] == [])
            #expect(createdBody?["direct_url"] == nil)
            let id = try #require(createdBody?["id"]?.stringValue)
            #expect(try await client.upload(id, randomBytes(5000)).status == .noContent)
            let one = try await client.image(id)
            #expect(one["locations"] == [["url": .string("file://\(fastDir)/\(id)"), "metadata": ["store": "fast"]]])
            #expect(one["direct_url"] == .string("file://\(fastDir)/\(id)"))

            #expect(try await client.importImage(id, #"{"method": {"name": "copy-image"}, "stores": ["nfs"]}"#).status == .accepted)
            let both = try await client.waitForCopy(id)
            #expect(
                both["locations"] == [
                    ["url": .string("file://\(fastDir)/\(id)"), "metadata": ["store": "fast"]],
                    ["url": .string("file://\(nfsDir)/\(id)"), "metadata": ["store": "nfs"]],
                ])
            // The best copy: nfs weighs more.
            #expect(both["direct_url"] == .string("file://\(nfsDir)/\(id)"))
            // Every URL names a file that holds the image.
            for location in both["locations"]?.arrayValue ?? [] {
                let path = String(try #require(location["url"]?.stringValue).dropFirst("file://".count))
                #expect(FileManager.default.contents(atPath: path)?.count == 5000)
            }
            // Read-only: clients cannot change locations.
            let patch = try await client.execute(
                uri: "/v2/images/\(id)", method: .patch,
                headers: [.contentType: "application/openstack-images-v2.1-json-patch"],
                body: ByteBuffer(string: #"[{"op": "replace", "path": "/locations", "value": [{"url": "file:///etc/passwd", "metadata": {}}]}]"#))
            #expect(patch.status == .forbidden)
            #expect(try await client.image(id)["locations"]?.arrayValue?.count == 2)
        }
    }

    @Test func locations_legacySingleStore_fileURLWithEmptyMetadata_noStores() async throws {
        let harness = try APITestHarness {
            $0.showImageDirectURL = true
            $0.showMultipleLocations = true
        }
        let datadir = harness.datadir
        try await harness.run { client in
            let id = try await client.createImage()
            #expect(try await client.upload(id, randomBytes(100)).status == .noContent)
            let image = try await client.image(id)
            #expect(image["locations"] == [["url": .string("file://\(datadir)/\(id)"), "metadata": [:]]])
            #expect(image["direct_url"] == .string("file://\(datadir)/\(id)"))
            // Legacy mode records nothing on the image and shows no `stores`.
            #expect(image["stores"] == nil)
            #expect(image["os_glance_stores"] == nil)
        }
    }

    @Test func glanceDirect_toTwoStores_theSecondGone_allMustSucceed_revertsToQueued() async throws {
        let harness = try Self.harness()
        try await harness.run { client in
            try FileManager.default.removeItem(atPath: harness.storeDirectory("nfs") + "/.glance")
            let id = try await client.createImage()
            #expect(try await client.stage(id, randomBytes(40_000)).status == .noContent)
            #expect(try await client.importImage(id, #"{"method": {"name": "glance-direct"}, "stores": ["fast", "nfs"]}"#).status == .accepted)
            let image = try await client.waitForCopy(id)
            // As Glance: all stores must succeed, so the store that worked is undone and the image queued.
            #expect(image["status"] == "queued")
            #expect(image["os_glance_failed_import"] == "nfs")
            #expect(image["os_glance_importing_to_stores"] == "")
            #expect(image["stores"] == nil)
            #expect(image["checksum"] == .null)
            #expect(harness.bytes(id, in: "fast") == nil)
            #expect(try harness.files(in: "nfs") == [])
            let tasks = try await client.json("/v2/images/\(id)/tasks", method: .get).1
            #expect(tasks?["tasks"]?[0]?["status"] == "failure")

            // all_stores_must_succeed false: the image stays active where it got to, the gone store named.
            let lenient = try await client.createImage()
            let data = randomBytes(30_000)
            #expect(try await client.stage(lenient, data).status == .noContent)
            #expect(
                try await client.importImage(
                    lenient, #"{"method": {"name": "glance-direct"}, "stores": ["fast", "nfs"], "all_stores_must_succeed": false}"#
                ).status == .accepted)
            let kept = try await client.waitForCopy(lenient)
            #expect(kept["status"] == "active")
            #expect(kept["stores"] == "fast")
            #expect(kept["os_glance_failed_import"] == "nfs")
            #expect(harness.bytes(lenient, in: "fast") == data)
        }
    }

    @Test func metrics_everyStoresGuard_byStoreLabel() async throws {
        var harness = try Self.harness()
        harness.configuration.metrics.enabled = true
        let nfsMarker = harness.storeDirectory("nfs") + "/.glance"
        try await harness.run { client in
            try FileManager.default.removeItem(atPath: nfsMarker)
            try await client.waitForStore("nfs", "disabled")
            let text = try await client.execute(uri: "/metrics", method: .get).text
            #expect(MetricsAPITests.sample(text, #"imagestore_store_enabled{store="fast"}"#) == 1, "\(text)")
            #expect(MetricsAPITests.sample(text, #"imagestore_store_enabled{store="nfs"}"#) == 0, "\(text)")
            #expect(MetricsAPITests.sample(text, #"imagestore_store_check_passing{store="nfs",check="marker"}"#) == 0, "\(text)")
        }
    }

    @Test func copyImage_toTwoStores_theSecondGone_allMustSucceed_removesTheCopyItMade() async throws {
        var harness = try Self.harness()
        harness.configuration.enabledBackends.append(StoreBackend(id: "slow", type: "file"))
        var slow = FilesystemStoreOptions(datadir: harness.storeDirectory("slow"))
        slow.guardInterval = .milliseconds(100)
        harness.configuration.storeOptions["slow"] = slow
        // slow has no marker: it is gone from the start.
        try FileManager.default.createDirectory(atPath: harness.storeDirectory("slow"), withIntermediateDirectories: true)
        let fixed = harness
        try await fixed.run { client in
            let harness = fixed
            let id = try await client.createImage()
            let data = randomBytes(20_000)
            #expect(try await client.upload(id, data).status == .noContent)
            #expect(try await client.importImage(id, #"{"method": {"name": "copy-image"}, "stores": ["nfs", "slow"]}"#).status == .accepted)
            let image = try await client.waitForCopy(id)
            // As Glance reverts: the nfs copy this import made goes again; the image keeps its first copy.
            #expect(image["status"] == "active")
            #expect(image["stores"] == "fast")
            #expect(image["os_glance_failed_import"] == "slow")
            #expect(try harness.files(in: "nfs") == [".glance"])
            #expect(try harness.files(in: "slow") == [])
            #expect(harness.bytes(id, in: "fast") == data)

            // With all_stores_must_succeed false the nfs copy stays.
            #expect(
                try await client.importImage(
                    id, #"{"method": {"name": "copy-image"}, "stores": ["nfs", "slow"], "all_stores_must_succeed": false}"#
                ).status == .accepted)
            let kept = try await client.waitForCopy(id)
            #expect(kept["stores"] == "fast,nfs")
            #expect(kept["os_glance_failed_import"] == "slow")
            #expect(harness.bytes(id, in: "nfs") == data)
            // A store that does not hold it (two copies elsewhere): 404, as Glance.
            let notThere = try await client.execute(uri: "/v2/stores/slow/\(id)", method: .delete)
            #expect(notThere.status == .notFound)
            #expect(notThere.errorMessage == "Image \(id) is not stored in store slow.")
        }
    }

    @Test func restart_reconcilesEachStoreOnItsOwn_whileAnotherIsGone() async throws {
        let harness = try Self.harness()
        defer { harness.base.remove() }
        let onlyNFS = randomBytes(20_000)
        let both = randomBytes(30_000)
        let (a, b) = try await harness.runKeepingFiles { client in
            let a = try await client.createImage()
            #expect(try await client.upload(a, onlyNFS, headers: [.imageMetaStore: "nfs"]).status == .noContent)
            let b = try await client.createImage()
            #expect(try await client.upload(b, both).status == .noContent)
            #expect(try await client.importImage(b, #"{"method": {"name": "copy-image"}, "stores": ["nfs"]}"#).status == .accepted)
            #expect(try await client.waitForCopy(b)["stores"] == "fast,nfs")
            return (a, b)
        }
        // While stopped: nfs loses b's copy, gains data no image points to, and the fast share goes away.
        try FileManager.default.removeItem(atPath: harness.storeDirectory("nfs") + "/" + b)
        let orphan = UUID().uuidString.lowercased()
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: harness.storeDirectory("nfs") + "/" + orphan))
        try FileManager.default.removeItem(atPath: harness.storeDirectory("fast") + "/.glance")
        try await harness.runKeepingFiles { client in
            // nfs was reconciled although fast is gone: the orphan went, b no longer claims nfs.
            try await waitFor { (try? harness.files(in: "nfs")) == [".glance", a] }
            let imageB = try await client.image(b)
            #expect(imageB["status"] == "active")
            #expect(imageB["stores"] == "fast")
            // a lives in nfs only: untouched by fast's absence, and still served.
            let imageA = try await client.image(a)
            #expect(imageA["status"] == "active")
            #expect(imageA["stores"] == "nfs")
            let read = try await client.execute(uri: "/v2/images/\(a)/file", method: .get)
            #expect(Array(read.body.readableBytesView) == onlyNFS)
            // fast's copy of b was not judged while fast was gone.
            #expect(harness.bytes(b, in: "fast") == both)
        }
    }
}

extension APITestHarness {
    /// Runs the application once and leaves the directories for the next run (a restart).
    func runKeepingFiles<T: Sendable>(_ body: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let app = try buildApplication(configuration: configuration, logger: logger)
        return try await app.test(.live, body)
    }

    func storeDirectory(_ store: String) -> String {
        (configuration.store.datadir as NSString).deletingLastPathComponent + "/" + store
    }

    func files(in store: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: storeDirectory(store)).sorted()
    }

    func bytes(_ id: String, in store: String) -> [UInt8]? {
        FileManager.default.contents(atPath: storeDirectory(store) + "/" + id).map { Array($0) }
    }
}

extension HTTPField.Name {
    static let imageMetaStore = Self("X-Image-Meta-Store")!
}

extension TestClientProtocol {
    /// Waits until store `id`'s guard (stores detail) reports `state`.
    func waitForStore(_ id: String, _ state: String) async throws {
        try await waitFor {
            let (_, detail) = try await json("/v2/info/stores/detail", method: .get)
            let store = detail?["stores"]?.arrayValue?.first { $0["id"]?.stringValue == id }
            // A check must have run: the state before the first one (enabled, no last_check) says nothing.
            return store?["guard"]?["state"]?.stringValue == state && store?["guard"]?["last_check"]?.stringValue != nil
        }
    }

    /// Polls the image until no store is left to import or copy to, and its import lock is gone.
    func waitForCopy(_ id: String) async throws -> JSONValue {
        var last: JSONValue = .null
        try await waitFor {
            last = try await image(id)
            return last["os_glance_importing_to_stores"] == "" && last["os_glance_import_task"] == nil
                && (last["status"] == "active" || last["status"] == "queued")
        }
        return last
    }
}
