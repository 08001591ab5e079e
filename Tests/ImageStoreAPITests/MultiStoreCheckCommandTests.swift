import Foundation
import ImageStoreTestSupport
import Testing

/// `imagestore check --store` and `init-store --store` with several stores: each store is checked (and
/// initialised) with the options of its own section, through the built binary.
@Suite struct MultiStoreCheckCommandTests {
    static func run(_ arguments: [String], in dir: String) async throws -> (exitCode: Int32, output: String) {
        let out = dir + "/run-\(UUID().uuidString.prefix(8)).out"
        let process = try ManagedProcess(try CheckCommandTests.executable(), arguments: arguments, stdoutPath: out, stderrPath: out)
        defer { process.killAndWait() }
        let status = try #require(await process.waitForExit(timeout: .seconds(30)), "imagestore did not exit")
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(status & 0x7f == 0, "killed by signal \(status & 0x7f); output:\n\(output)")
        return ((status >> 8) & 0xff, output)
    }

    @Test func check_eachStoreByItsOwnSection_unknownStoreIsAConfigurationError() async throws {
        let dir = NSTemporaryDirectory() + "imagestore-multicheck-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for store in ["fast", "nfs"] { try FileManager.default.createDirectory(atPath: dir + "/" + store, withIntermediateDirectories: true) }
        let config = dir + "/imagestore.conf"
        try """
        [DEFAULT]
        enabled_backends = fast:file, nfs:file
        [glance_store]
        default_backend = fast
        [fast]
        filesystem_store_datadir = \(dir)/fast
        [nfs]
        filesystem_store_datadir = \(dir)/nfs
        filesystem_store_marker_file = .nfsmarker
        [database]
        connection = sqlite:///\(dir)/imagestore.db
        """.write(toFile: config, atomically: true, encoding: .utf8)

        // init-store --store writes the marker the store's own section names, in its own directory.
        let initFast = try await Self.run(["init-store", "--config-file", config], in: dir)
        #expect(initFast.exitCode == 0, "\(initFast.output)")
        #expect(FileManager.default.fileExists(atPath: dir + "/fast/.glance"))
        let fast = try await Self.run(["check", "--config-file", config], in: dir)
        #expect(fast.exitCode == 0, "\(fast.output)")

        // nfs has no marker yet: its own check fails, the default store's does not.
        let nfs = try await Self.run(["check", "--config-file", config, "--store", "nfs"], in: dir)
        #expect(nfs.exitCode == 1, "\(nfs.output)")
        #expect(nfs.output.contains("\(dir)/nfs/.nfsmarker"), "\(nfs.output)")
        let initNFS = try await Self.run(["init-store", "--config-file", config, "--store", "nfs"], in: dir)
        #expect(initNFS.exitCode == 0, "\(initNFS.output)")
        #expect(FileManager.default.fileExists(atPath: dir + "/nfs/.nfsmarker"))
        #expect(try await Self.run(["check", "--config-file", config, "--store", "nfs"], in: dir).exitCode == 0)

        let unknown = try await Self.run(["check", "--config-file", config, "--store", "slow", "--json"], in: dir)
        #expect(unknown.exitCode == 2, "\(unknown.output)")
        #expect(unknown.output.contains(#"store \"slow\" is not one of enabled_backends (fast, nfs)"#), "\(unknown.output)")
    }
}
