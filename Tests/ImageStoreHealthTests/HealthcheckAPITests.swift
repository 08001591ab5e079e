import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreConfig
import ImageStoreTestSupport
import NIOCore
import Testing

/// `/healthcheck`, `/readyz` and `/livez` through the real application and a real HTTP connection.
@Suite struct HealthcheckAPITests {
    static let okJSON = "{\n    \"detailed\": false,\n    \"reasons\": [\n        \"OK\"\n    ]\n}"

    /// A harness whose `enable_by_files` marker is `marker` in its temp dir (created when `present`).
    private func enableByFiles(
        present: Bool, _ more: @escaping (inout HealthcheckOptions) -> Void = { _ in }
    ) throws
        -> (HealthTestHarness, String)
    {
        var marker = ""
        let harness = try HealthTestHarness { config, dir in
            marker = dir.appending(".glance")
            if present { try Data().write(to: URL(fileURLWithPath: marker)) }
            config.healthcheck.backends = ["enable_by_files"]
            config.healthcheck.enableByFilePaths = [marker]
            more(&config.healthcheck)
        }
        return (harness, marker)
    }

    @Test func healthcheck_withNoBackends_is200WithEmptyBody_andHEAD204() async throws {
        try await HealthTestHarness().run { client in
            let get = try await client.get("/healthcheck")
            #expect(get.status == .ok)
            #expect(get.text == "")
            #expect(get.headers[.contentType] == "text/plain; charset=UTF-8")
            let head = try await client.execute(uri: "/healthcheck", method: .head)
            #expect(head.status == .noContent)
            #expect(head.body.readableBytes == 0)
        }
    }

    @Test func healthcheck_markerPresent_answersOKInEveryFormat() async throws {
        let (harness, _) = try enableByFiles(present: true)
        try await harness.run { client in
            let plain = try await client.get("/healthcheck", accept: "*/*")
            #expect(plain.status == .ok && plain.text == "OK")
            let json = try await client.get("/healthcheck", accept: "application/json")
            #expect(json.status == .ok)
            #expect(json.text == Self.okJSON)
            #expect(json.headers[.contentType] == "application/json; charset=UTF-8")
            let html = try await client.get("/healthcheck", accept: "text/html")
            #expect(html.headers[.contentType] == "text/html; charset=UTF-8")
            #expect(html.text.contains("<H2>Result of 1 checks:</H2>") && html.text.contains("    <TD>OK</TD>\n"))
            #expect(try await client.execute(uri: "/healthcheck", method: .head).status == .noContent)
        }
    }

    @Test func healthcheck_markerMissing_is503FilePathMissing_andHEAD503Empty() async throws {
        let (harness, _) = try enableByFiles(present: false)
        try await harness.run { client in
            let plain = try await client.get("/healthcheck")
            #expect(plain.status == .serviceUnavailable)
            #expect(plain.text == "FILE PATH MISSING")
            let json = try await client.get("/healthcheck", accept: "application/json")
            #expect(json.text == "{\n    \"detailed\": false,\n    \"reasons\": [\n        \"FILE PATH MISSING\"\n    ]\n}")
            let head = try await client.execute(uri: "/healthcheck", method: .head)
            #expect(head.status == .serviceUnavailable && head.body.readableBytes == 0)
            let ready = try await client.get("/readyz")
            #expect(ready.status == .serviceUnavailable && ready.text == "FILE PATH MISSING")
            // Liveness never looks at storage.
            let live = try await client.get("/livez")
            #expect(live.status == .ok && live.text == "OK")
        }
    }

    @Test func healthcheck_markerAppears_turns200WithinAFewIntervals() async throws {
        let (harness, marker) = try enableByFiles(present: false) { $0.checkInterval = .milliseconds(50) }
        try await harness.run { client in
            #expect(try await client.get("/healthcheck").status == .serviceUnavailable)
            try Data().write(to: URL(fileURLWithPath: marker))
            let status = try await waitForStatus(client, "/healthcheck", .ok, within: .seconds(5))
            #expect(status == .ok)
        }
    }

    @Test func healthcheck_detailed_addsDetailsAndServerFacts() async throws {
        let (harness, marker) = try enableByFiles(present: false) { $0.detailed = true }
        try await harness.run { client in
            let json = try await client.get("/healthcheck", accept: "application/json")
            #expect(json.status == .serviceUnavailable)
            let body = try #require(try JSONSerialization.jsonObject(with: Data(json.text.utf8)) as? [String: Any])
            #expect(body["detailed"] as? Bool == true)
            #expect(body["version"] as? String != nil && body["uptime_seconds"] as? Int != nil && body["now"] as? String != nil)
            let reasons = try #require(body["reasons"] as? [[String: Any]])
            #expect(reasons.count == 1)
            #expect(reasons[0]["reason"] as? String == "FILE PATH MISSING")
            #expect(reasons[0]["details"] as? String == "File path \(marker) is missing")
            #expect(reasons[0]["class"] as? String == "HealthcheckResult")
            #expect(reasons[0]["backend"] as? String == "enable_by_files")
            // /readyz never reveals details.
            #expect(try await client.get("/readyz", accept: "application/json").text.contains("\"detailed\": false"))
        }
    }

    @Test func healthcheck_sourceInAllowedRange_isAnswered() async throws {
        let (harness, _) = try enableByFiles(present: true) { $0.allowedSourceRanges = ["10.0.0.0/8", "127.0.0.1/32"].map { IPNetwork($0)! } }
        try await harness.run { client in
            let response = try await client.get("/healthcheck")
            #expect(response.status == .ok && response.text == "OK")
        }
    }

    @Test func healthcheck_sourceOutsideAllowedRanges_is403_butProbesStillAnswer() async throws {
        let (harness, _) = try enableByFiles(present: true) { $0.allowedSourceRanges = [IPNetwork("10.0.0.0/8")!] }
        try await harness.run { client in
            let response = try await client.get("/healthcheck")
            #expect(response.status == .forbidden)
            #expect(response.text == "Forbidden")
            #expect(try await client.execute(uri: "/healthcheck", method: .head).status == .forbidden)
            #expect(try await client.get("/readyz").status == .ok)
            #expect(try await client.get("/livez").status == .ok)
        }
    }

    @Test(arguments: ["X-Forwarded", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-For", "X-Forwarded-Prefix"])
    func healthcheck_ignoreProxiedRequests_refusesForwardedRequests(header: String) async throws {
        let (harness, _) = try enableByFiles(present: true) { $0.ignoreProxiedRequests = true }
        try await harness.run { client in
            let proxied = try await client.get("/healthcheck", headers: [HTTPField.Name(header)!: "x"])
            #expect(proxied.status == .forbidden)
            #expect(try await client.get("/healthcheck").status == .ok)
        }
    }

    @Test func healthcheck_proxiedRequest_isAnsweredWhenNotIgnored() async throws {
        let (harness, _) = try enableByFiles(present: true)
        try await harness.run { client in
            let response = try await client.get("/healthcheck", headers: [HTTPField.Name("X-Forwarded-For")!: "1.2.3.4"])
            #expect(response.status == .ok)
        }
    }

    @Test func healthcheck_disableByFilesPorts_usesTheServersPort() async throws {
        let port = try freeTCPPort()
        var disableFile = ""
        let harness = try HealthTestHarness { config, dir in
            disableFile = dir.appending("disable-\(port)")
            try Data().write(to: URL(fileURLWithPath: disableFile))
            config.bindPort = port
            config.healthcheck.backends = ["disable_by_files_ports"]
            // Another port's file exists too; it must not matter for this server.
            let other = dir.appending("other")
            try Data().write(to: URL(fileURLWithPath: other))
            config.healthcheck.disableByFilePaths = ["\(port)": disableFile, "\(port == 65535 ? 1 : port + 1)": other]
        }
        // The live test framework always listens on port 0, so run the app on the chosen port here.
        try await harness.runOnConfiguredPort { client in
            let response = try await client.get("/healthcheck")
            #expect(response.status == .serviceUnavailable)
            #expect(response.body.map { String(buffer: $0) } == "DISABLED BY FILE")
        }
    }

    @Test func healthcheck_otherMethods_are405WithAllow() async throws {
        try await HealthTestHarness().run { client in
            let response = try await client.execute(uri: "/healthcheck", method: .post)
            #expect(response.status == .methodNotAllowed)
            #expect(response.headers[.allow] == "GET, HEAD")
        }
    }

    @Test func pasteSection_configuresTheHealthcheckApp() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let missing = dir.appending("images/.glance")
        let paste = dir.appending("glance-api-paste.ini")
        try """
        [app:healthcheck]
        paste.app_factory = oslo_middleware:Healthcheck.app_factory
        backends = enable_by_files
        enable_by_file_paths = \(missing)
        """.write(toFile: paste, atomically: true, encoding: .utf8)
        let conf = dir.appending("imagestore.conf")
        try """
        [DEFAULT]
        bind_host = 127.0.0.1
        [glance_store]
        filesystem_store_datadir = \(dir.appending("images"))
        [database]
        connection = sqlite:///\(dir.appending("imagestore.db"))
        [paste_deploy]
        config_file = \(paste)
        [healthcheck]
        backends = disable_by_file
        """.write(toFile: conf, atomically: true, encoding: .utf8)
        var configuration = try ServiceConfiguration.load(path: conf)
        configuration.bindPort = 0
        var harness = try HealthTestHarness()
        harness.configuration = configuration
        try await harness.run { client in
            let response = try await client.get("/healthcheck")
            #expect(response.status == .serviceUnavailable)
            #expect(response.text == "FILE PATH MISSING")
        }
    }

    @Test func configuration_enableAndDisableByFileTogether_isOslosConfigError() throws {
        let error = #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration.parse(
                text: "[healthcheck]\nbackends = enable_by_files, disable_by_file\n", path: "imagestore.conf")
        }
        #expect(
            "\(error.map { "\($0)" } ?? "")".contains(
                "`enable_by_files` plugin and `disable_by_file` plugin should not be enabled at the same time."))
    }
}

/// Polls `uri` until it answers `status` or `within` passes; returns the last status seen.
func waitForStatus(
    _ client: any TestClientProtocol, _ uri: String, _ status: HTTPResponse.Status, within: Duration
) async throws -> HTTPResponse.Status {
    let clock = ContinuousClock()
    let end = clock.now + within
    var last = try await client.get(uri).status
    while last != status && clock.now < end {
        try await Task.sleep(for: .milliseconds(20))
        last = try await client.get(uri).status
    }
    return last
}
