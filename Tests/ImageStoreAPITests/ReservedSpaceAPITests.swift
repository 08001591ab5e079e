import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import NIOCore
import ImageStoreConfig
import ImageStoreCore
import ImageStoreTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue #8, "space before bytes": `filesystem_store_reserved_space` on a small tmpfs (and on a real NFS
/// share), through the HTTP API. A declared size that does not fit is refused with 413 before a byte is
/// sent; a streamed upload stops with 413 at the reserve; nothing is left behind and the image is queued.
@Suite(.serialized)
struct ReservedSpaceAPITests {
    static let mib = 1 << 20

    /// Free bytes of the filesystem holding `path`.
    static func freeBytes(_ path: String) -> Int64 {
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else { return -1 }
        return Int64(fs.f_bavail) * Int64(fs.f_frsize)
    }

    /// Sends only the request head of an upload declaring `size` bytes (no body at all) and returns the answer.
    static func declareOnly(
        port: Int, id: String, size: Int64, header: String = "Content-Length", action: String = "file"
    ) async throws -> String {
        let connection = try await RawHTTPConnection.startUpload(
            port: port, path: "/v2/images/\(id)/\(action)", .headers("\(header): \(size)\r\n"))
        return try await offPool {
            defer { connection.closeNormally() }
            return connection.receive(until: "}}")
        }
    }

    /// A chunked upload without any declared size; returns the answer (the server may stop reading early).
    static func streamChunked(port: Int, id: String, _ data: [UInt8]) async throws -> String {
        let connection = try await RawHTTPConnection.startUpload(port: port, path: "/v2/images/\(id)/file", .chunked)
        return try await offPool {
            defer { connection.closeNormally() }
            var sending = true
            for start in stride(from: 0, to: data.count, by: 64 << 10) where sending {
                let part = Array(data[start..<min(start + (64 << 10), data.count)])
                // The server answers 413 and stops reading at the reserve: later sends may fail.
                do {
                    try connection.send(String(part.count, radix: 16) + "\r\n")
                    try connection.send(part + Array("\r\n".utf8))
                } catch {
                    sending = false
                }
            }
            if sending { try? connection.send("0\r\n\r\n") }
            return connection.receive(until: "}}")
        }
    }

    @Test func tmpfs_declaredSizeOverTheReserve_is413BeforeAnyByte_streamStopsAtTheReserve() async throws {
        let harness = try APITestHarness { $0.store.reservedSpace = .bytes(4 * Int64(Self.mib)) }
        let datadir = harness.datadir
        try FileManager.default.createDirectory(atPath: datadir, withIntermediateDirectories: true)
        try Mounts.tmpfs(at: datadir, sizeBytes: 8 * Int64(Self.mib))
        defer { Mounts.unmount(datadir) }
        try await harness.run { client in
            let port = try #require(client.port)
            // 5 MiB declared, 4 MiB free above the 4 MiB reserve: refused with no body sent at all.
            let id = try await client.createImage()
            for header in ["Content-Length", "x-openstack-image-size"] {
                let reply = try await Self.declareOnly(port: port, id: id, size: 5 * Int64(Self.mib), header: header)
                #expect(reply.hasPrefix("HTTP/1.1 413"), "\(header): \(reply)")
                #expect(reply.contains("Image storage media is full: the image needs 5242880 bytes"), "\(reply)")
                #expect(reply.contains("above the reserve of 4194304 bytes (filesystem_store_reserved_space"), "\(reply)")
            }
            #expect(try await client.status(of: id) == "queued")
            #expect(try harness.storeFiles() == [])

            // 3 MiB fits.
            let data = randomBytes(3 * Self.mib)
            #expect(try await client.upload(id, data).status == .noContent)
            #expect(try await client.status(of: id) == "active")

            // About 1 MiB is left above the reserve: a streamed 3 MiB stops with 413 there.
            let streamed = try await client.createImage()
            let reply = try await Self.streamChunked(port: port, id: streamed, randomBytes(3 * Self.mib))
            #expect(reply.hasPrefix("HTTP/1.1 413"), "\(reply)")
            #expect(reply.contains("the upload reached the reserve"), "\(reply)")
            try await waitFor { try await client.status(of: streamed) == "queued" }
            try await waitFor { try harness.storeFiles() == [id] }
            // What it had written is gone again: the reserve is intact.
            #expect(Self.freeBytes(datadir) >= 4 * Int64(Self.mib))
            // A small one still fits.
            #expect(try await client.upload(streamed, randomBytes(256 << 10)).status == .noContent)
        }
    }

    /// Staging (interoperable import) is held to the same reserve: a declared size that does not fit is
    /// 413 before a byte is staged, the image stays `queued`; a stage that fits is staged and imported.
    @Test func stage_declaredSizeOverTheReserve_is413BeforeAnyByte() async throws {
        let harness = try APITestHarness { $0.store.reservedSpace = .bytes(4 * Int64(Self.mib)) }
        let datadir = harness.datadir
        try FileManager.default.createDirectory(atPath: datadir, withIntermediateDirectories: true)
        try Mounts.tmpfs(at: datadir, sizeBytes: 8 * Int64(Self.mib))
        defer { Mounts.unmount(datadir) }
        try await harness.run { client in
            let port = try #require(client.port)
            let id = try await client.createImage()
            let reply = try await Self.declareOnly(port: port, id: id, size: 5 * Int64(Self.mib), action: "stage")
            #expect(reply.hasPrefix("HTTP/1.1 413"), "\(reply)")
            #expect(reply.contains("above the reserve of 4194304 bytes"), "\(reply)")
            #expect(try await client.status(of: id) == "queued")
            let staged = (try? FileManager.default.contentsOfDirectory(atPath: datadir + "/os_glance_staging_store")) ?? []
            #expect(staged.isEmpty, "\(staged)")

            let data = randomBytes(1 * Self.mib)
            let stage = try await client.execute(
                uri: "/v2/images/\(id)/stage", method: .put, headers: [.contentType: "application/octet-stream"],
                body: ByteBuffer(bytes: data))
            #expect(stage.status == .noContent, "\(stage.text)")
            #expect(try await client.status(of: id) == "uploading")
        }
    }

    @Test func guardedStore_percentReserve_fromTheGuardsStatvfs() async throws {
        let harness = try APITestHarness { configuration in
            configuration.store.reservedSpace = .percent(50)
            // A configuration file means a guarded store: free space then comes from the mount guard.
            configuration.sourcePath = "/dev/null"
        }
        let datadir = harness.datadir
        try FileManager.default.createDirectory(atPath: datadir, withIntermediateDirectories: true)
        try Mounts.tmpfs(at: datadir, sizeBytes: 8 * Int64(Self.mib))
        defer { Mounts.unmount(datadir) }
        try Data().write(to: URL(fileURLWithPath: datadir + "/.glance"))
        try await harness.run { client in
            let port = try #require(client.port)
            let id = try await client.createImage()
            let reply = try await Self.declareOnly(port: port, id: id, size: 5 * Int64(Self.mib))
            #expect(reply.hasPrefix("HTTP/1.1 413"), "\(reply)")
            #expect(reply.contains("above the reserve of 4194304 bytes"), "\(reply)")
            #expect(try await client.status(of: id) == "queued")
            #expect(try await client.upload(id, randomBytes(3 * Self.mib)).status == .noContent)
        }
    }

    @Test func concurrentDeclaredUploads_cannotBothTakeTheSameFreeBytes() async throws {
        let harness = try APITestHarness { $0.store.reservedSpace = .bytes(4 * Int64(Self.mib)) }
        let datadir = harness.datadir
        try FileManager.default.createDirectory(atPath: datadir, withIntermediateDirectories: true)
        try Mounts.tmpfs(at: datadir, sizeBytes: 8 * Int64(Self.mib))
        defer { Mounts.unmount(datadir) }
        try await harness.run { client in
            let port = try #require(client.port)
            let first = try await client.createImage()
            let second = try await client.createImage()
            let data = randomBytes(3 * Self.mib)
            // The first declares 3 MiB and sends a part, then waits: the rest of its 3 MiB is promised.
            let connection = try await RawHTTPConnection.startUpload(
                port: port, path: "/v2/images/\(first)/file", .contentLength(data.count), sending: Array(data[0..<Self.mib]))
            defer { connection.closeNormally() }
            try await waitFor { try await client.status(of: first) == "saving" }
            let reply = try await Self.declareOnly(port: port, id: second, size: 2 * Int64(Self.mib))
            #expect(reply.hasPrefix("HTTP/1.1 413"), "\(reply)")
            // The first one finishes.
            let answer = try await offPool {
                try connection.send(Array(data[Self.mib...]))
                return connection.receive(until: "\r\n\r\n")
            }
            #expect(answer.hasPrefix("HTTP/1.1 204"), "\(answer)")
            #expect(try await client.status(of: first) == "active")
            #expect(try await client.status(of: second) == "queued")
        }
    }
}

/// The reserve on a real NFS share: free space comes from the NFS server (libnfs statvfs).
@Suite(.serialized, GaneshaServer.requiredTrait)
struct ReservedSpaceNFSTests {
    @Test func nfsShare_declaredSizeOverTheServersFreeSpaceAboveTheReserve_is413() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        var configuration = share.configuration()
        // Leave 2 GiB above the reserve (other work on this machine may use some of it meanwhile).
        let free = ReservedSpaceAPITests.freeBytes(share.exportDirectory)
        try #require(free > 4 << 30, "needs more than 4 GiB free on the share's filesystem")
        configuration.store.reservedSpace = .bytes(free - (2 << 30))
        try await share.run(configuration) { client in
            try await client.waitForGuard("enabled")
            let port = try #require(client.port)
            let id = try await client.createImage()
            let reply = try await ReservedSpaceAPITests.declareOnly(port: port, id: id, size: 20 << 30)
            #expect(reply.hasPrefix("HTTP/1.1 413"), "\(reply)")
            #expect(reply.contains("the image needs 21474836480 bytes"), "\(reply)")
            #expect(try await client.status(of: id) == "queued")
            #expect(try share.shareFiles() == [".glance"])
            let data = randomBytes(1 << 20)
            #expect(try await client.upload(id, data).status == .noContent)
            #expect(share.shareBytes(id) == data)
        }
    }
}
