import Foundation
import ImageStoreAPI
import ImageStoreMetadata
import ImageStoreTestSupport
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `imagestore check` as deployers run it: the built binary, a configuration file, the table and the exit code.
@Suite(.serialized, GaneshaServer.requiredTrait)
struct CheckCommandTests {
    struct Run {
        var exitCode: Int32
        var output: String

        /// The RESULT column of the row for `check`.
        func result(_ check: String) -> String? {
            output.split(separator: "\n").first { $0.hasPrefix(check + " ") }?
                .split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init)
        }
    }

    /// The `imagestore` executable built beside this test bundle (`swift build --build-tests` builds both).
    static func executable() throws -> String {
        let bundleDir = (CommandLine.arguments[0] as NSString).deletingLastPathComponent
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let candidates = [bundleDir + "/imagestore", packageRoot + "/.build/debug/imagestore"]
        return try #require(
            candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
            "imagestore binary not found in \(candidates); run swift build --build-tests")
    }

    static func check(configFile: String, in share: GuardedShare, json: Bool = false) async throws -> Run {
        let out = share.temp.appending("check-\(UUID().uuidString.prefix(8)).out")
        let process = try ManagedProcess(
            try executable(), arguments: ["check", "--config-file", configFile] + (json ? ["--json"] : []), stdoutPath: out,
            stderrPath: out)
        defer { process.killAndWait() }
        let status = try #require(await process.waitForExit(timeout: .seconds(30)), "imagestore check did not exit")
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        // waitpid status: exited normally, code in bits 8-15.
        #expect(status & 0x7f == 0, "killed by signal \(status & 0x7f); output:\n\(output)")
        return Run(exitCode: (status >> 8) & 0xff, output: output)
    }

    @Test func allGood_exit0_everyCheckPasses() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        let run = try await Self.check(configFile: try share.writeConfigFile(), in: share)
        #expect(run.exitCode == 0, "\(run.output)")
        #expect(run.output.hasPrefix("CHECK"), "\(run.output)")
        for check in ["configuration", "marker", "mountpoint", "nfs"] {
            #expect(run.result(check) == "PASS", "\(check):\n\(run.output)")
        }
        #expect(run.output.contains("store: enabled"))
        #expect(run.output.contains("free space: "))
    }

    @Test func markerMissing_exit1_markerFails() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        try FileManager.default.removeItem(atPath: share.markerPath)
        let run = try await Self.check(configFile: try share.writeConfigFile(), in: share)
        #expect(run.exitCode == 1, "\(run.output)")
        #expect(run.result("marker") == "FAIL", "\(run.output)")
        #expect(run.result("mountpoint") == "PASS", "\(run.output)")
        #expect(run.output.contains("store: disabled (marker missing: \(share.markerPath) not found)"), "\(run.output)")
    }

    @Test func ganeshaDown_exit1_nfsFails() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        await share.ganesha.kill()
        let run = try await Self.check(configFile: try share.writeConfigFile(), in: share)
        #expect(run.exitCode == 1, "\(run.output)")
        #expect(run.result("nfs") == "FAIL", "\(run.output)")
        #expect(run.result("marker") == "PASS", "\(run.output)")
        #expect(run.output.contains("NFS server unreachable"), "\(run.output)")
    }

    @Test func nfsWithoutHost_exit1_configurationFails() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        let run = try await Self.check(configFile: try share.writeConfigFile(host: nil), in: share)
        #expect(run.exitCode == 1, "\(run.output)")
        #expect(run.result("configuration") == "FAIL", "\(run.output)")
        #expect(run.output.contains("filesystem_nfs_host is required"), "\(run.output)")
    }

    @Test func unknownMountOption_isPrintedAsAWarning_andDoesNotFail() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        let path = try share.writeConfigFile()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try #require(text.contains(",timeo=5\n"))
        try text.replacingOccurrences(of: ",timeo=5\n", with: ",timeo=5,frobnicate=1\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let run = try await Self.check(configFile: path, in: share)
        #expect(run.exitCode == 0, "\(run.output)")
        #expect(run.output.contains("warning: unknown NFS mount option 'frobnicate=1' ignored"), "\(run.output)")
    }

    /// The share at the store path carries another store's id than the one the server recorded: check
    /// fails the marker naming both ids, and records nothing itself.
    @Test func wrongShare_exit1_markerFailsNamingBothIDs() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        let path = try share.writeConfigFile()
        let recorded = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
        let other = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
        let repository = try SQLiteImageRepository(path: share.temp.appending("imagestore.db"), logger: Logger(label: "test"))
        #expect(try await repository.claimStoreIdentity(recorded, of: "default_backend") == recorded)
        try "store_id = \(other)\ncreated_at = 2026-01-01T00:00:00Z\n".write(toFile: share.markerPath, atomically: true, encoding: .utf8)
        let run = try await Self.check(configFile: path, in: share)
        #expect(run.exitCode == 1, "\(run.output)")
        #expect(run.result("marker") == "FAIL", "\(run.output)")
        #expect(run.output.contains("wrong share: marker id \(other), expected \(recorded)"), "\(run.output)")

        // The right share passes; a database without a record is not written by check.
        try "store_id = \(recorded)\n".write(toFile: share.markerPath, atomically: true, encoding: .utf8)
        #expect(try await Self.check(configFile: path, in: share).exitCode == 0)
        let fresh = try await GuardedShare.make()
        defer { fresh.tearDown() }
        let freshPath = try fresh.writeConfigFile()
        let freshRepository = try SQLiteImageRepository(path: fresh.temp.appending("imagestore.db"), logger: Logger(label: "test"))
        try "store_id = \(other)\n".write(toFile: fresh.markerPath, atomically: true, encoding: .utf8)
        let freshRun = try await Self.check(configFile: freshPath, in: fresh)
        #expect(freshRun.exitCode == 0, "\(freshRun.output)")
        #expect(try await freshRepository.storeIdentity(of: "default_backend") == nil)
    }

    /// `check --json`: one JSON object with the same facts and the same exit status, for automation.
    @Test func json_allGoodThenMarkerMissing_sameFactsAsTheTable() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        let path = try share.writeConfigFile()
        let good = try await Self.check(configFile: path, in: share, json: true)
        #expect(good.exitCode == 0, "\(good.output)")
        let report = try JSONValue.parse(Array(good.output.utf8))
        #expect(report["store"] == "enabled")
        #expect(report["exit_code"]?.intValue == 0)
        #expect(report["checks"]?.arrayValue?.compactMap { $0["check"]?.stringValue } == ["configuration", "marker", "mountpoint", "nfs"])
        #expect(report["checks"]?.arrayValue?.allSatisfy { $0["result"] == "pass" } == true, "\(good.output)")
        #expect((report["total_bytes"]?.intValue ?? 0) > 0)

        try FileManager.default.removeItem(atPath: share.markerPath)
        let bad = try await Self.check(configFile: path, in: share, json: true)
        #expect(bad.exitCode == 1, "\(bad.output)")
        let failed = try JSONValue.parse(Array(bad.output.utf8))
        #expect(failed["store"] == "disabled")
        #expect(failed["reason"]?.stringValue?.hasPrefix("marker missing") == true, "\(bad.output)")
        #expect(failed["checks"]?.arrayValue?.first { $0["check"] == "marker" }?["result"] == "fail")

        let unusable = try await Self.check(configFile: share.temp.appending("missing.conf"), in: share, json: true)
        #expect(unusable.exitCode == 2)
        #expect(try JSONValue.parse(Array(unusable.output.utf8))["store"] == "unusable", "\(unusable.output)")
    }

    @Test func unreadableConfiguration_exit2() async throws {
        let share = try await GuardedShare.make(startGanesha: false)
        defer { share.tearDown() }
        let run = try await Self.check(configFile: share.temp.appending("missing.conf"), in: share)
        #expect(run.exitCode == 2, "\(run.output)")
        #expect(run.output.hasPrefix("configuration:"), "\(run.output)")
    }
}

/// `imagestore check` with no configuration file checks what `imagestore serve` runs on the same
/// defaults: the embedded, unguarded ./data directory — so it must not report a failing marker.
@Suite struct CheckCommandEmbeddedDefaultTests {
    @Test func noConfigFile_exit0_saysUnguarded() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let out = directory.appending("check.out")
        let process = try ManagedProcess(
            "/bin/sh", arguments: ["-c", "cd \"$1\" && exec \"$2\" check", "sh", directory.path, try CheckCommandTests.executable()],
            stdoutPath: out, stderrPath: out)
        defer { process.killAndWait() }
        let status = try #require(await process.waitForExit(timeout: .seconds(30)), "imagestore check did not exit")
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(status == 0, "\(output)")
        #expect(output.contains("store: enabled (embedded default: \(directory.path)/data/images is a plain local directory"), "\(output)")
        #expect(!output.contains("FAIL"), "\(output)")
    }
}
