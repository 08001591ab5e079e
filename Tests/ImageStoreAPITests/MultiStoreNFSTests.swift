import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreTestSupport
import NIOCore
import Testing

/// Two stores where one is a real NFS share (ganesha, probed with libnfs) and the other a local
/// directory: killing the NFS server disables that store only.
@Suite(.serialized, GaneshaServer.requiredTrait)
struct MultiStoreNFSTests {
    @Test func nfsServerKilled_writesToThatStore410_readsFallBack_otherStoreWorks() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        var configuration = share.configuration()
        configuration.enabledBackends = [StoreBackend(id: "fast", type: "file"), StoreBackend(id: "nfs", type: "file")]
        configuration.defaultBackend = "fast"
        let fastDir = try share.temp.makeDirectory("fast")
        try Data().write(to: URL(fileURLWithPath: fastDir + "/.glance"))
        var fast = FilesystemStoreOptions(datadir: fastDir, weight: 1)
        fast.guardInterval = .milliseconds(200)
        configuration.store = fast
        var nfs = share.storeOptions()
        nfs.weight = 10
        configuration.storeOptions["nfs"] = nfs
        try await share.run(configuration) { client in
            try await client.waitForStore("nfs", "enabled")
            let id = try await client.createImage()
            let data = randomBytes(200_000)
            #expect(try await client.upload(id, data, headers: [.imageMetaStore: "nfs"]).status == .noContent)
            #expect(share.shareBytes(id) == data, "written through the mount onto the share")
            #expect(try await client.importImage(id, #"{"method": {"name": "copy-image"}, "stores": ["fast"]}"#).status == .accepted)
            #expect(try await client.waitForCopy(id)["stores"] == "nfs,fast")
            // Tell the copies apart: the local one is rewritten with other bytes of the same length.
            let marked = Array(repeating: UInt8(9), count: data.count)
            try Data(marked).write(to: URL(fileURLWithPath: fastDir + "/" + id))
            let before = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
            #expect(Array(before.body.readableBytesView) == data, "nfs weighs more: its copy is read")

            await share.ganesha.kill()
            try await client.waitForStore("nfs", "disabled")
            let pending = try await client.createImage()
            let refused = try await client.upload(pending, randomBytes(10_000), headers: [.imageMetaStore: "nfs"])
            #expect(refused.status == .gone)
            #expect(refused.errorMessage?.hasPrefix("store disabled: NFS server") == true, "\(refused.text)")
            #expect(try await client.status(of: pending) == "queued")
            #expect(try share.shareFiles() == [".glance", id])
            // The local store is not affected, and the image is still served, from its local copy.
            #expect(try await client.upload(pending, randomBytes(10_000)).status == .noContent)
            #expect(try await client.image(pending)["stores"] == "fast")
            let after = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
            #expect(after.status == .ok)
            #expect(Array(after.body.readableBytesView) == marked, "nfs is down: the local copy is read")

            try await share.ganesha.start()
            try await client.waitForStore("nfs", "enabled")
            let third = try await client.createImage()
            let thirdData = randomBytes(5_000)
            #expect(try await client.upload(third, thirdData, headers: [.imageMetaStore: "nfs"]).status == .noContent)
            #expect(share.shareBytes(third) == thirdData)
        }
    }
}
