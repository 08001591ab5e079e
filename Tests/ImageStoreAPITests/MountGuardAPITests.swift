import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreTestSupport
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The mount guard through the real HTTP API, against a real ganesha whose export is bind-mounted
/// onto the store directory (issue #3's scenarios). Each test asserts status codes, the error's
/// reason, the image's status and the bytes on the share.
@Suite(.serialized, GaneshaServer.requiredTrait)
struct MountGuardAPITests {
    static let markerMissing = "store disabled: marker missing"
    static let nfsDown = "store disabled: NFS server"

    @Test func allGood_uploadDownloadDelete_andDetailShowsTheGuard() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try await share.run { client in
            // A healthy share is enabled — by the first check, or (on a starved machine, where the first
            // check's 500 ms deadline can pass) by a later one, 0.2 s apart.
            try await client.waitForGuard("enabled")
            let detail = try #require(try await client.guardState())
            #expect(detail["state"] == "enabled")
            #expect(detail["reason"] == .null)
            #expect(detail["last_check"]?.stringValue != nil)
            #expect((detail["total_bytes"]?.intValue ?? 0) > 0)
            let checks = detail["checks"]?.arrayValue ?? []
            #expect(checks.map { $0["check"]?.stringValue } == ["configuration", "marker", "mountpoint", "nfs"])
            #expect(checks.allSatisfy { $0["result"] == "pass" }, "\(checks)")
            // The NFS check saw the marker on the server itself.
            #expect(checks.last?["detail"]?.stringValue?.contains("marker .glance present") == true)

            let id = try await client.createImage()
            let data = randomBytes(1 << 20)
            #expect(try await client.upload(id, data).status == .noContent)
            #expect(try await client.status(of: id) == "active")
            // Written through the mount onto the share.
            #expect(share.shareBytes(id) == data)
            #expect(try share.shareFiles() == [".glance", id])

            let download = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
            #expect(download.status == .ok)
            #expect(Array(download.body.readableBytesView) == data)

            #expect(try await client.delete(id).status == .noContent)
            #expect(try await client.execute(uri: "/v2/images/\(id)", method: .get).status == .notFound)
            #expect(try share.shareFiles() == [".glance"])
        }
    }

    @Test func markerRemoved_refusesUploadAndDelete_thenMarkerBack_worksWithoutRestart() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try await share.run { client in
            let kept = try await client.createImage()
            let keptData = randomBytes(100_000)
            #expect(try await client.upload(kept, keptData).status == .noContent)
            let pending = try await client.createImage()

            // Through the mounted path, as an admin or a bad unmount would.
            try FileManager.default.removeItem(atPath: share.markerPath)
            let upload = try await client.upload(pending, randomBytes(50_000))
            #expect(upload.status == .gone)
            #expect(upload.errorMessage?.hasPrefix(Self.markerMissing) == true, "\(upload.text)")
            #expect(try await client.status(of: pending) == "queued")

            let delete = try await client.delete(kept)
            #expect(delete.status == .gone)
            #expect(delete.errorMessage?.hasPrefix(Self.markerMissing) == true, "\(delete.text)")
            // A refused delete changes nothing: metadata and data stay.
            #expect(try await client.status(of: kept) == "active")
            #expect(share.shareBytes(kept) == keptData)
            #expect(try share.shareFiles() == [kept])

            // The marker comes back: the very next write works.
            try Data().write(to: URL(fileURLWithPath: share.markerPath))
            try await client.waitForGuard("enabled")
            let data = randomBytes(50_000)
            #expect(try await client.upload(pending, data).status == .noContent)
            #expect(try await client.status(of: pending) == "active")
            #expect(share.shareBytes(pending) == data)
            #expect(try await client.delete(kept).status == .noContent)
            #expect(share.shareBytes(kept) == nil)
        }
    }

    /// `store_unavailable_status = 503`: the same refusals as 410, as 503 with Retry-After (for Nova and
    /// Cinder, which retry 503); nothing else changes: the image stays queued, the data stays.
    @Test func storeUnavailableStatus503_refusesWith503AndRetryAfter() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        var configuration = share.configuration()
        configuration.storeUnavailableStatus = .serviceUnavailable
        try await share.run(configuration) { client in
            let kept = try await client.createImage()
            let keptData = randomBytes(100_000)
            #expect(try await client.upload(kept, keptData).status == .noContent)
            let pending = try await client.createImage()

            try FileManager.default.removeItem(atPath: share.markerPath)
            let upload = try await client.upload(pending, randomBytes(50_000))
            #expect(upload.status == .serviceUnavailable)
            #expect(upload.headers[.retryAfter] == "5")
            #expect(upload.errorMessage?.hasPrefix(Self.markerMissing) == true, "\(upload.text)")
            #expect(try await client.status(of: pending) == "queued")
            let delete = try await client.delete(kept)
            #expect(delete.status == .serviceUnavailable)
            #expect(delete.headers[.retryAfter] == "5")
            #expect(try await client.status(of: kept) == "active")
            #expect(share.shareBytes(kept) == keptData)

            try Data().write(to: URL(fileURLWithPath: share.markerPath))
            try await client.waitForGuard("enabled")
            #expect(try await client.upload(pending, randomBytes(50_000)).status == .noContent)
        }
    }

    @Test func ganeshaKilled_refusesWrites_restarted_worksAgain() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try await share.run { client in
            let kept = try await client.createImage()
            let keptData = randomBytes(64_000)
            #expect(try await client.upload(kept, keptData).status == .noContent)
            let pending = try await client.createImage()

            await share.ganesha.kill()
            // Wait for one check after the kill (a result up to max_age old may still answer a write).
            try await client.waitForGuard("disabled")
            let upload = try await client.upload(pending, randomBytes(10_000))
            #expect(upload.status == .gone)
            #expect(upload.errorMessage?.hasPrefix(Self.nfsDown) == true, "\(upload.text)")
            #expect(try await client.status(of: pending) == "queued")
            let delete = try await client.delete(kept)
            #expect(delete.status == .gone)
            #expect(try await client.status(of: kept) == "active")
            #expect(share.shareBytes(kept) == keptData)
            #expect(try share.shareFiles() == [".glance", kept])

            try await share.ganesha.start()
            try await client.waitForGuard("enabled")
            let data = randomBytes(10_000)
            #expect(try await client.upload(pending, data).status == .noContent)
            #expect(share.shareBytes(pending) == data)
            #expect(try await client.delete(kept).status == .noContent)
        }
    }

    @Test func ganeshaStopped_writeRefusedWithinTheDeadline_readsKeepAnswering_thenRecovers() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try await share.run { client in
            let kept = try await client.createImage()
            let keptData = randomBytes(32_000)
            #expect(try await client.upload(kept, keptData).status == .noContent)
            let pending = try await client.createImage()

            try await share.ganesha.stop()
            defer { share.ganesha.resume() }
            let clock = ContinuousClock()
            // max_age (100 ms) later no cached result can answer: the write must probe the hung server.
            try await Task.sleep(for: .milliseconds(150))
            let start = clock.now
            let upload = try await client.upload(pending, randomBytes(10_000))
            let elapsed = clock.now - start
            #expect(upload.status == .gone)
            #expect(upload.errorMessage?.hasPrefix("store disabled: timed out") == true, "\(upload.text)")
            // mount_guard_timeout is 500 ms; the slack is for a loaded 2-core machine, not a hang.
            #expect(elapsed < .milliseconds(500) + .seconds(1), "refused after \(elapsed)")
            #expect(try await client.status(of: pending) == "queued")

            // Metadata reads do not touch the share and keep answering.
            let listStart = clock.now
            let list = try await client.execute(uri: "/v2/images", method: .get)
            #expect(list.status == .ok)
            #expect(clock.now - listStart < .seconds(1))
            // Data reads fail fast with 503 + Retry-After while the store is disabled.
            let download = try await client.execute(uri: "/v2/images/\(kept)/file", method: .get)
            #expect(download.status == .serviceUnavailable)
            #expect(download.headers[.retryAfter] != nil)

            share.ganesha.resume()
            try await client.waitForGuard("enabled")
            let data = randomBytes(10_000)
            #expect(try await client.upload(pending, data).status == .noContent)
            #expect(share.shareBytes(pending) == data)
            let downloadAgain = try await client.execute(uri: "/v2/images/\(kept)/file", method: .get)
            #expect(Array(downloadAgain.body.readableBytesView) == keptData)
        }
    }

    @Test func shareKilledMidUpload_410_noTempFile_imageQueued() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try await share.run { client in
            let id = try await client.createImage()
            let total = 16 << 20
            // Content does not matter here, and random bytes are slow to make in a debug build.
            let first = [UInt8](repeating: 0xa5, count: 4 << 20)
            let connection = try RawHTTPConnection(port: client.port!)
            defer { connection.closeNormally() }
            try connection.send(
                "PUT /v2/images/\(id)/file HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: \(total)\r\n\r\n"
            )
            try connection.send(first)
            try await waitFor { try await client.status(of: id) == "saving" }
            // The temporary file is being written on the share.
            #expect(try share.shareFiles().contains { $0.hasPrefix(".\(id).") && $0.hasSuffix(".tmp") })

            await share.ganesha.kill()
            try await client.waitForGuard("disabled")
            try connection.send([UInt8](repeating: 0x5a, count: total - first.count))
            let reply = connection.receive(until: "}", timeout: 20)
            #expect(reply.hasPrefix("HTTP/1.1 410"), "\(reply.prefix(300))")
            #expect(reply.contains(Self.nfsDown), "\(reply.prefix(300))")

            try await waitFor { try await client.status(of: id) == "queued" }
            #expect(try await client.status(of: id) == "queued")
            #expect(try share.shareFiles() == [".glance"], "temp file or data left behind")
        }
    }

    @Test func storeUnmountedUnderneath_410_andNothingLandsInTheLocalDirectory() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try await share.run { client in
            let kept = try await client.createImage()
            let keptData = randomBytes(20_000)
            #expect(try await client.upload(kept, keptData).status == .noContent)
            let pending = try await client.createImage()

            // `umount -l`: the directory is now the empty local one underneath.
            #expect(umount2(share.datadir, Int32(MNT_DETACH)) == 0, "umount -l: \(String(cString: strerror(errno)))")
            #expect(!Mounts.isMountPoint(share.datadir))
            let upload = try await client.upload(pending, randomBytes(1 << 20))
            #expect(upload.status == .gone)
            #expect(upload.errorMessage?.hasPrefix(Self.markerMissing) == true, "\(upload.text)")
            let delete = try await client.delete(kept)
            #expect(delete.status == .gone)
            try await client.waitForGuard("disabled")
            let reasons = (try await client.guardState())?["checks"]?.arrayValue?.compactMap { $0["detail"]?.stringValue }
            #expect(reasons?.contains("not a mount point: \(share.datadir)") == true, "\(reasons ?? [])")

            // Not one byte in the local directory; the share still has the kept image, unchanged.
            #expect(try share.storeFiles() == [])
            #expect(try await client.status(of: pending) == "queued")
            #expect(try await client.status(of: kept) == "active")
            #expect(share.shareBytes(kept) == keptData)
        }
    }

    @Test func startedWithGaneshaDown_startsDisabled_thenEnablesWithoutRestart() async throws {
        let share = try await GuardedShare.make(startGanesha: false)
        defer { share.tearDown() }
        try await share.run { client in
            let detail = try #require(try await client.guardState())
            #expect(detail["state"] == "disabled")
            #expect(detail["reason"]?.stringValue?.hasPrefix("NFS server unreachable") == true, "\(detail.serialized())")

            let id = try await client.createImage()
            let refused = try await client.upload(id, randomBytes(10_000))
            #expect(refused.status == .gone)
            #expect(refused.errorMessage?.hasPrefix(Self.nfsDown) == true, "\(refused.text)")
            #expect(try await client.status(of: id) == "queued")
            #expect(try share.shareFiles() == [".glance"])

            try await share.ganesha.start()
            try await client.waitForGuard("enabled")
            let data = randomBytes(10_000)
            #expect(try await client.upload(id, data).status == .noContent)
            #expect(try await client.status(of: id) == "active")
            #expect(share.shareBytes(id) == data)
        }
    }

    @Test func nfsConfiguredWithoutHost_storeDisabledWithThatReason() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try await share.run(share.configuration(host: nil)) { client in
            let reason = "filesystem_nfs_host is required when filesystem_is_nfs_configured is true"
            let detail = try #require(try await client.guardState())
            #expect(detail["state"] == "disabled")
            #expect(detail["reason"]?.stringValue == reason)

            let id = try await client.createImage()
            let upload = try await client.upload(id, randomBytes(1000))
            #expect(upload.status == .gone)
            #expect(upload.errorMessage == "store disabled: \(reason)")
            #expect(try await client.status(of: id) == "queued")
            #expect(try share.shareFiles() == [".glance"])
        }
    }
}
