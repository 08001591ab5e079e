import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreConfig
import ImageStoreTestSupport
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The reason this module exists: storage that does not answer at all. `/healthcheck` must go on
/// answering (503) quickly, `/livez` stays 200, the API keeps serving, and all turns green on recovery.
@Suite(.serialized) struct HungStorageTests {
    /// Each request while storage hangs must answer within this.
    static let perRequestBound = Duration.seconds(1)

    @Test func healthcheck_whileMarkerStatHangsOnFUSE_answers503Quickly_andRecovers() async throws {
        let dir = try TemporaryDirectory(prefix: "imagestore-hangfs")
        defer { dir.remove() }
        let fs = try await HangFS.mount(in: dir)
        // Clean-up order matters: release the blocked stat calls, then unmount, then stop the daemon.
        defer { fs.tearDown() }

        let marker = fs.mountpoint + "/.glance"
        let harness = try HealthTestHarness { config, _ in
            config.healthcheck.backends = ["enable_by_files"]
            config.healthcheck.enableByFilePaths = [marker]
            config.healthcheck.checkInterval = .milliseconds(100)
            config.healthcheck.checkTimeout = .milliseconds(200)
        }
        try await harness.run { client in
            #expect(try await client.get("/healthcheck").text == "OK")
            _ = try await client.createImage()

            try fs.hang()
            #expect(try await waitForStatus(client, "/healthcheck", .serviceUnavailable, within: .seconds(5)) == .serviceUnavailable)
            let clock = ContinuousClock()
            for _ in 0..<20 {
                var response: TestResponse?
                let elapsed = try await clock.measure { response = try await client.get("/healthcheck") }
                #expect(elapsed < Self.perRequestBound, "a /healthcheck took \(elapsed) while the stat hangs")
                #expect(response?.status == .serviceUnavailable)
                #expect(response?.text == "TIMED OUT")
            }
            let detail = try await client.get("/readyz")
            #expect(detail.status == .serviceUnavailable)
            let live = try await clock.measure {
                let live = try await client.get("/livez")
                #expect(live.status == .ok && live.text == "OK")
            }
            #expect(live < Self.perRequestBound)
            // The API keeps serving reads that do not touch the hung mount.
            let list = try await client.get("/v2/images")
            #expect(list.status == .ok)
            #expect(list.text.contains("\"images\""))
            #expect(fs.isStillHanging, "the FUSE stat should still be stuck: the test measured nothing")

            fs.release()
            #expect(try await waitForStatus(client, "/healthcheck", .ok, within: .seconds(5)) == .ok)
            #expect(try await client.get("/healthcheck").text == "OK")
        }
    }

    @Test(GaneshaServer.requiredTrait)
    func nfsBackend_whileGaneshaIsStopped_is503WithinItsTimeout_andRecoversOnContinue() async throws {
        let server = try GaneshaServer()
        defer { server.shutdown() }
        defer { server.resume() }  // runs first: a stopped server cannot be killed cleanly otherwise
        try Data().write(to: URL(fileURLWithPath: server.exportDirectory + "/.glance"))
        try await server.start()

        let harness = try HealthTestHarness { config, dir in
            config.store.isNFSConfigured = true
            config.store.nfsHost = server.host
            config.store.nfsSharePath = server.pseudoPath
            config.store.nfsMountOptions = "vers=4,port=\(server.port),timeo=5"
            // The probe mounts the export afresh each time; on a busy machine that can take a while.
            config.store.guardTimeout = .milliseconds(1000)
            config.healthcheck.backends = ["nfs"]
            config.healthcheck.checkInterval = .milliseconds(100)
            config.healthcheck.checkTimeout = .milliseconds(2000)
        }
        try await harness.run { client in
            #expect(try await waitForStatus(client, "/healthcheck", .ok, within: .seconds(10)) == .ok)

            try await server.stop()
            let clock = ContinuousClock()
            let stoppedAt = clock.now
            let status = try await waitForStatus(client, "/healthcheck", .serviceUnavailable, within: .seconds(10))
            #expect(status == .serviceUnavailable)
            // One interval to start a round plus the probe's 1 s deadline, with room for a busy machine.
            #expect(clock.now - stoppedAt < .seconds(4))
            for _ in 0..<10 {
                let elapsed = try await clock.measure {
                    let response = try await client.get("/healthcheck")
                    #expect(response.status == .serviceUnavailable)
                }
                #expect(elapsed < Self.perRequestBound)
            }
            #expect(try await client.get("/healthcheck").text == "TIMED OUT")
            #expect(try await client.get("/livez").status == .ok)

            server.resume()
            #expect(try await waitForStatus(client, "/healthcheck", .ok, within: .seconds(10)) == .ok)
        }
    }
}

/// The FUSE filesystem in Fixtures/hangfs.c, compiled and mounted for one test: its `/.glance`
/// answers stat normally until `hang()`, then blocks every stat until `release()`.
final class HangFS: Sendable {
    let mountpoint: String
    let gate: String
    let process: ManagedProcess

    private init(mountpoint: String, gate: String, process: ManagedProcess) {
        self.mountpoint = mountpoint
        self.gate = gate
        self.process = process
    }

    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hangfs.c").path

    static func mount(in dir: TemporaryDirectory) async throws -> HangFS {
        let binary = dir.appending("hangfs")
        let cc = try ManagedProcess(
            "sh", arguments: ["-c", "gcc -O2 -o '\(binary)' '\(source)' $(pkg-config fuse3 --cflags --libs)"],
            stderrPath: dir.appending("gcc.log"))
        guard await cc.waitForExit(timeout: .seconds(60)) == 0 else {
            let log = (try? String(contentsOfFile: dir.appending("gcc.log"), encoding: .utf8)) ?? ""
            throw TestSupportError("compiling hangfs failed (needs gcc, pkg-config, libfuse3-dev): \(log)")
        }
        let mountpoint = try dir.makeDirectory("mnt")
        let gate = dir.appending("gate")
        let process = try ManagedProcess(
            binary, arguments: [gate, mountpoint, "-f"], stdoutPath: dir.appending("hangfs.log"),
            stderrPath: dir.appending("hangfs.log"))
        let fs = HangFS(mountpoint: mountpoint, gate: gate, process: process)
        let clock = ContinuousClock()
        let end = clock.now + .seconds(10)
        while !Mounts.isMountPoint(mountpoint) {
            guard process.isRunning, clock.now < end else {
                fs.tearDown()
                let log = (try? String(contentsOfFile: dir.appending("hangfs.log"), encoding: .utf8)) ?? ""
                throw TestSupportError("hangfs did not mount \(mountpoint): \(log)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return fs
    }

    /// From now on a stat of `/.glance` blocks.
    func hang() throws { try Data().write(to: URL(fileURLWithPath: gate)) }

    /// Blocked stats return (within 10 ms) and new ones answer at once.
    func release() { unlink(gate) }

    var isStillHanging: Bool { access(gate, F_OK) == 0 }

    /// Release, unmount (lazily if still busy), stop the daemon. Safe to call more than once.
    func tearDown() {
        release()
        if Mounts.isMountPoint(mountpoint) { Mounts.unmount(mountpoint) }
        process.killAndWait()
    }
}

extension TestClientProtocol {
    /// POST /v2/images with a minimal body; returns the new image's id.
    func createImage() async throws -> String {
        let response = try await execute(
            uri: "/v2/images", method: .post, headers: [.contentType: "application/json"],
            body: .init(string: #"{"name": "probe", "disk_format": "raw", "container_format": "bare"}"#))
        try #require(response.status == .created, "create answered \(response.status)")
        return response.text
    }
}
