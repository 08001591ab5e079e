import Foundation
import ImageStoreTestSupport
import Testing

/// The built `imagestore` binary's start-up refusals and `init-store`, with exit codes and messages.
@Suite struct CommandLineTests {
    struct Run {
        var exitCode: Int32
        var output: String
    }

    static func run(_ arguments: [String], in temp: TemporaryDirectory, environment: [String: String] = [:]) async throws -> Run {
        let out = temp.appending("run-\(UUID().uuidString.prefix(8)).out")
        let process = try ManagedProcess(
            try CheckCommandTests.executable(), arguments: arguments, environment: environment, stdoutPath: out, stderrPath: out)
        defer { process.killAndWait() }
        let status = try #require(await process.waitForExit(timeout: .seconds(30)), "imagestore \(arguments) did not exit")
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(status & 0x7f == 0, "killed by signal \(status & 0x7f); output:\n\(output)")
        return Run(exitCode: (status >> 8) & 0xff, output: output)
    }

    static func markerText(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "<missing>" }

    static func storeID(_ path: String) -> String? {
        markerText(path).split(separator: "\n").first { $0.hasPrefix("store_id = ") }.map { String($0.dropFirst("store_id = ".count)) }
    }

    // MARK: oslo.middleware's conflicting backends

    @Test func serve_enableByFilesWithDisableByFile_exitsNonZero_namingBothOptions() async throws {
        let temp = try TemporaryDirectory(prefix: "imagestore-cli")
        defer { temp.remove() }
        let config = temp.appending("imagestore.conf")
        let images = try temp.makeDirectory("images")
        try """
        [glance_store]
        filesystem_store_datadir = \(images)

        [database]
        connection = sqlite:///\(temp.appending("imagestore.db"))

        [healthcheck]
        backends = enable_by_files, disable_by_file
        enable_by_file_paths = \(images)/.glance
        disable_by_file_path = /tmp/disable
        """.write(toFile: config, atomically: true, encoding: .utf8)
        for command in [["serve", "--bind", "127.0.0.1:0"], ["check"]] {
            let run = try await Self.run(command + ["--config-file", config], in: temp)
            #expect(run.exitCode != 0, "\(command): \(run.output)")
            #expect(
                run.output.contains(
                    "\(config):8: [healthcheck] backends: `enable_by_files` plugin and `disable_by_file` plugin should not be enabled at the same time."),
                "\(command): \(run.output)")
            // Refused before anything was opened or created.
            #expect(!FileManager.default.fileExists(atPath: temp.appending("imagestore.db")), "\(command)")
        }
    }

    // MARK: init-store

    @Test func initStore_writesANewStoreID_andRefusesASecondTime() async throws {
        let temp = try TemporaryDirectory(prefix: "imagestore-cli")
        defer { temp.remove() }
        let images = try temp.makeDirectory("images")
        let run = try await Self.run(["init-store", images], in: temp)
        #expect(run.exitCode == 0, "\(run.output)")
        let id = try #require(Self.storeID(images + "/.glance"), "\(Self.markerText(images + "/.glance"))")
        #expect(UUID(uuidString: id) != nil)
        #expect(Self.markerText(images + "/.glance").contains("created_at = "))
        #expect(run.output.contains("created \(images)/.glance with store id \(id)"), "\(run.output)")

        let again = try await Self.run(["init-store", images], in: temp)
        #expect(again.exitCode != 0, "\(again.output)")
        #expect(again.output.contains("already holds store id \(id); nothing changed"), "\(again.output)")
        #expect(Self.storeID(images + "/.glance") == id)
        #expect(try FileManager.default.contentsOfDirectory(atPath: images) == [".glance"])
    }

    @Test func initStore_adopt_writesAnIDIntoGlancesEmptyMarker_onlyWithTheFlag() async throws {
        let temp = try TemporaryDirectory(prefix: "imagestore-cli")
        defer { temp.remove() }
        let images = try temp.makeDirectory("images")
        let marker = images + "/.glance"
        try Data().write(to: URL(fileURLWithPath: marker))

        let without = try await Self.run(["init-store", images], in: temp)
        #expect(without.exitCode != 0, "\(without.output)")
        #expect(without.output.contains("run with --adopt"), "\(without.output)")
        #expect(Self.markerText(marker).isEmpty)

        let adopted = try await Self.run(["init-store", "--adopt", images], in: temp)
        #expect(adopted.exitCode == 0, "\(adopted.output)")
        let id = try #require(Self.storeID(marker))
        #expect(adopted.output.contains("wrote \(marker) with store id \(id)"), "\(adopted.output)")

        // Adopting again changes nothing; a given --store-id replaces it (a replacement share).
        let again = try await Self.run(["init-store", "--adopt", images], in: temp)
        #expect(again.exitCode == 0, "\(again.output)")
        #expect(Self.storeID(marker) == id)
        let given = "33333333-3333-4333-8333-333333333333"
        let replaced = try await Self.run(["init-store", "--adopt", "--store-id", given, images], in: temp)
        #expect(replaced.exitCode == 0, "\(replaced.output)")
        #expect(Self.storeID(marker) == given)
    }

    @Test func initStore_adoptWithoutMarker_andNotADirectory_fail() async throws {
        let temp = try TemporaryDirectory(prefix: "imagestore-cli")
        defer { temp.remove() }
        let images = try temp.makeDirectory("images")
        let adopt = try await Self.run(["init-store", "--adopt", images], in: temp)
        #expect(adopt.exitCode != 0)
        #expect(adopt.output.contains("no marker at \(images)/.glance to adopt"), "\(adopt.output)")
        #expect(!FileManager.default.fileExists(atPath: images + "/.glance"))
        let missing = try await Self.run(["init-store", temp.appending("nope")], in: temp)
        #expect(missing.exitCode != 0)
        #expect(missing.output.contains("is not a directory"), "\(missing.output)")
    }
}

extension CommandLineTests {
    @Test func initStore_withConfigFile_usesTheConfiguredDirectoryAndMarker() async throws {
        let temp = try TemporaryDirectory(prefix: "imagestore-cli")
        defer { temp.remove() }
        let images = try temp.makeDirectory("images")
        let config = temp.appending("imagestore.conf")
        try "[glance_store]\nfilesystem_store_datadir = \(images)\nfilesystem_store_marker_file = .imagestore-marker\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let run = try await Self.run(["init-store", "--config-file", config], in: temp)
        #expect(run.exitCode == 0, "\(run.output)")
        #expect(Self.storeID(images + "/.imagestore-marker") != nil, "\(run.output)")
        #expect(!FileManager.default.fileExists(atPath: images + "/.glance"))
    }
}

extension CommandLineTests {
    /// The environment and secrets layers reach the command: a bad value from either stops start-up,
    /// naming where it came from (and nothing is opened).
    @Test func serve_environmentAndSecretsDir_overrideTheFile_errorsNameTheirOrigin() async throws {
        let temp = try TemporaryDirectory(prefix: "imagestore-cli")
        defer { temp.remove() }
        let config = temp.appending("imagestore.conf")
        try "[DEFAULT]\nbind_port = 9292\n[database]\nconnection = sqlite:///\(temp.appending("imagestore.db"))\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let fromEnvironment = try await Self.run(
            ["serve", "--config-file", config], in: temp, environment: ["IMAGESTORE__DEFAULT__BIND_PORT": "abc"])
        #expect(fromEnvironment.exitCode != 0)
        #expect(
            fromEnvironment.output.contains("environment variable IMAGESTORE__DEFAULT__BIND_PORT: [DEFAULT] bind_port: \"abc\""),
            "\(fromEnvironment.output)")

        let secrets = try temp.makeDirectory("secrets")
        try "70000\n".write(toFile: secrets + "/DEFAULT.bind_port", atomically: true, encoding: .utf8)
        for (arguments, environment) in [
            (["--secrets-dir", secrets], [:]), ([], ["IMAGESTORE_SECRETS_DIR": secrets]),
        ] {
            let fromSecret = try await Self.run(
                ["serve", "--config-file", config] + arguments, in: temp,
                environment: environment.merging(["IMAGESTORE__DEFAULT__BIND_PORT": "9393"]) { a, _ in a })
            #expect(fromSecret.exitCode != 0)
            #expect(
                fromSecret.output.contains("secrets file \(secrets)/DEFAULT.bind_port: [DEFAULT] bind_port: \"70000\""), "\(fromSecret.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: temp.appending("imagestore.db")))
    }
}
