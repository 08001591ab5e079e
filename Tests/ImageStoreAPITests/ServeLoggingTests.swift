import Foundation
import ImageStoreLogging
import ImageStoreTestSupport
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real `imagestore serve` on a configuration file in a temporary directory, stopped by PID (also when
/// the test fails). For what only the process shows: where its log goes, how it answers signals.
final class ServedImageStore: Sendable {
    let work: TemporaryDirectory
    let process: ManagedProcess
    let port: Int
    let config: String
    let output: String

    /// Writes `[DEFAULT] bind_*`, a store with an (empty, Glance-style) marker and SQLite, then `extra`;
    /// starts the server and waits until it answers.
    static func start(extra: String, prefix: String = "imagestore-serve") async throws -> ServedImageStore {
        let work = try TemporaryDirectory(prefix: prefix)
        let images = try work.makeDirectory("images")
        FileManager.default.createFile(atPath: images + "/.glance", contents: Data())
        let port = try freeTCPPort()
        let config = work.appending("imagestore.conf")
        try Self.configText(work: work, port: port, extra: extra).write(toFile: config, atomically: true, encoding: .utf8)
        let output = work.appending("serve.out")
        let process = try ManagedProcess(
            try CheckCommandTests.executable(), arguments: ["serve", "--config-file", config], stdoutPath: output, stderrPath: output)
        let served = ServedImageStore(work: work, process: process, port: port, config: config, output: output)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(60)
        while true {
            if let response = try? await served.request("GET", "/versions"), response.status == 200 { return served }
            guard process.isRunning else { throw TestSupportError("serve exited:\n\(served.outputText.suffix(3000))") }
            guard clock.now < deadline else { throw TestSupportError("serve did not listen:\n\(served.outputText.suffix(3000))") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    static func configText(work: TemporaryDirectory, port: Int, extra: String) -> String {
        """
        [DEFAULT]
        bind_host = 127.0.0.1
        bind_port = \(port)
        \(extra)
        [glance_store]
        filesystem_store_datadir = \(work.appending("images"))
        [database]
        connection = sqlite:///\(work.appending("imagestore.db"))

        """
    }

    private init(work: TemporaryDirectory, process: ManagedProcess, port: Int, config: String, output: String) {
        self.work = work
        self.process = process
        self.port = port
        self.config = config
        self.output = output
    }

    deinit {
        process.killAndWait()
        work.remove()
    }

    var outputText: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }

    struct Response {
        var status: Int
        var body: [UInt8]
        var head: String

        /// A response header's value (case-insensitive name).
        func header(_ name: String) -> String? {
            head.split(separator: "\r\n").dropFirst().first { $0.lowercased().hasPrefix(name.lowercased() + ":") }
                .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) }
        }

        var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] }
    }

    /// One request on its own connection, with extra header lines.
    func request(
        _ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = [], contentType: String? = nil
    ) async throws -> Response {
        let port = self.port
        return try await offPool {
            let connection = try RawHTTPConnection(port: port)
            defer { connection.closeNormally() }
            var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
            if let contentType { head += "Content-Type: \(contentType)\r\n" }
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            try connection.send(head + "\r\n")
            if !body.isEmpty { try connection.send(body) }
            let (status, body, responseHead) = try ReplicaTests.parseResponse(connection.receiveUntilClosed(timeout: 30).bytes)
            return Response(status: status, body: body, head: responseHead)
        }
    }

    /// Polls `condition` every 50 ms for at most `timeout`; whether it came to hold.
    static func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }
}

/// `[DEFAULT] debug`, `log_file`, `use_json`, `use_stderr` (oslo.log's names) on the real binary: the lines
/// are parsed back and their fields compared with what the server answered.
@Suite(.serialized) struct ServeLoggingTests {
    static func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    static func jsonLines(_ path: String) throws -> [[String: Any]] {
        try lines(path).map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
        }
    }

    @Test func useJSON_logFile_oneObjectPerLine_withTheRequestsIDsAndIdentity() async throws {
        let work = try TemporaryDirectory(prefix: "imagestore-log")
        defer { work.remove() }
        let logFile = work.appending("api.log")
        let server = try await ServedImageStore.start(extra: "use_json = true\nlog_file = \(logFile)\nverbose = true\n")
        let identity = ["X-User-Id": "u-1234", "X-Project-Id": "p-5678", "X-Roles": "admin,member"]

        let created = try await server.request(
            "POST", "/v2/images", headers: identity, body: Array(#"{"disk_format": "raw", "container_format": "bare"}"#.utf8),
            contentType: "application/json")
        try #require(created.status == 201, "\(String(decoding: created.body, as: UTF8.self))")
        let id = try #require(created.json?["id"] as? String)
        let shown = try await server.request("GET", "/v2/images/\(id)", headers: identity)
        #expect(shown.status == 200)
        let uploaded = try await server.request(
            "PUT", "/v2/images/\(id)/file", headers: identity, body: Array("data".utf8), contentType: "application/octet-stream")
        #expect(uploaded.status == 204, "\(String(decoding: uploaded.body, as: UTF8.self))")
        let requestID = try #require(shown.header("x-openstack-request-id"))
        let uploadID = try #require(uploaded.header("x-openstack-request-id"))

        // The writer thread writes shortly after the response.
        #expect(await ServedImageStore.eventually { Self.lines(logFile).contains { $0.contains(uploadID) } }, "\(Self.lines(logFile))")
        let objects = try Self.jsonLines(logFile)
        for object in objects {
            for field in ["timestamp", "level", "logger", "message"] { #expect(object[field] is String, "\(field) in \(object)") }
        }
        let get = try #require(objects.first { $0["request_id"] as? String == requestID }, "no line for \(requestID): \(objects)")
        #expect(get["level"] as? String == "INFO")
        #expect(get["logger"] as? String == "imagestore")
        #expect(get["message"] as? String == "GET /v2/images/\(id) 200")
        #expect(get["image_id"] as? String == id)
        #expect(get["user_id"] as? String == "u-1234")
        #expect(get["project_id"] as? String == "p-5678")
        #expect(get["store"] == nil, "metadata requests do not touch the store")
        #expect((get["timestamp"] as? String)?.hasSuffix("Z") == true)

        let put = try #require(objects.first { $0["request_id"] as? String == uploadID && ($0["message"] as? String)?.hasPrefix("PUT") == true })
        #expect(put["store"] as? String == "file")
        #expect(put["image_id"] as? String == id)

        // The configuration's warnings go to the same log, as JSON, at warning level.
        #expect(
            objects.contains { $0["level"] as? String == "WARNING" && ($0["message"] as? String)?.contains("[DEFAULT] verbose: unknown option") == true },
            "\(objects)")
        // Nothing but JSON in the file; standard output stays empty (log_file replaces it, as in oslo.log).
        #expect(!server.outputText.contains(requestID), "\(server.outputText)")
    }

    @Test func defaults_textOnStandardOutput_withOsloContext_andDebugLevel() async throws {
        let server = try await ServedImageStore.start(extra: "debug = false\n")
        let shown = try await server.request("GET", "/v2/images", headers: ["X-User-Id": "u-1", "X-Project-Id": "p-1"])
        #expect(shown.status == 200)
        let requestID = try #require(shown.header("x-openstack-request-id"))
        #expect(await ServedImageStore.eventually { server.outputText.contains(requestID) })
        let line = try #require(server.outputText.split(separator: "\n").first { $0.contains(requestID) })
        // oslo.log's context layout: [request_id user project].
        #expect(line.contains(" INFO imagestore [\(requestID) u-1 p-1] GET /v2/images 200"), "\(line)")
        #expect(!server.outputText.contains(" DEBUG "), "debug = false logs no debug lines")
    }
}

/// SIGHUP on the real binary: what logrotate and an operator editing the file rely on.
@Suite(.serialized) struct ServeReloadTests {
    @Test func sighup_reloadsLoggingAndHealthcheck_reopensTheLogFile_reportsWhatNeedsARestart() async throws {
        let work = try TemporaryDirectory(prefix: "imagestore-hup")
        defer { work.remove() }
        let logFile = work.appending("api.log")
        let disabledBefore = work.appending("disabled-before")  // never created
        let disabledAfter = work.appending("disabled-after")
        FileManager.default.createFile(atPath: disabledAfter, contents: Data())
        func extra(debug: Bool, disableFile: String, sizeCap: Int) -> String {
            """
            log_file = \(logFile)
            debug = \(debug)
            image_size_cap = \(sizeCap)
            [healthcheck]
            backends = disable_by_file
            disable_by_file_path = \(disableFile)
            interval = 0.2
            """
        }
        let server = try await ServedImageStore.start(extra: extra(debug: false, disableFile: disabledBefore, sizeCap: 1000))
        #expect(try await server.request("GET", "/healthcheck").status == 200)
        #expect(await ServedImageStore.eventually { ServeLoggingTests.lines(logFile).contains { $0.contains("GET /healthcheck 200") } })
        #expect(!ServeLoggingTests.lines(logFile).contains { $0.contains(" DEBUG ") })

        // logrotate: move the file away, then SIGHUP. The operator also changed the health check's file,
        // debug and image_size_cap (which needs a restart).
        let rotated = work.appending("api.log.1")
        try FileManager.default.moveItem(atPath: logFile, toPath: rotated)
        try ServedImageStore.configText(work: server.work, port: server.port, extra: extra(debug: true, disableFile: disabledAfter, sizeCap: 2000))
            .write(toFile: server.config, atomically: true, encoding: .utf8)
        #expect(server.process.signal(SIGHUP))

        #expect(await ServedImageStore.eventually { (try? await server.request("GET", "/healthcheck"))?.status == 503 }, "\(ServeLoggingTests.lines(logFile))")
        #expect(server.process.isRunning)
        #expect(await ServedImageStore.eventually { ServeLoggingTests.lines(logFile).contains { $0.contains(" DEBUG ") } }, "debug = true took effect")
        // The reload logs what it did once it is done (after the new health check ran once).
        #expect(await ServedImageStore.eventually { ServeLoggingTests.lines(logFile).contains { $0.contains("needs restart") } })
        let reopened = ServeLoggingTests.lines(logFile)
        #expect(reopened.contains { $0.contains("configuration reloaded: [healthcheck] disable_by_file_path") }, "\(reopened)")
        #expect(reopened.contains { $0.contains("configuration reloaded: [DEFAULT] debug") }, "\(reopened)")
        #expect(
            reopened.contains { $0.contains(" WARNING ") && $0.contains("[DEFAULT] image_size_cap changed; needs restart") }, "\(reopened)")
        // Lines written before the reopen went to the renamed file, the rest to the new one.
        let old = ServeLoggingTests.lines(rotated)
        #expect(old.contains { $0.contains("SIGHUP: reloading the configuration") }, "\(old)")
        #expect(!old.contains { $0.contains("configuration reloaded:") }, "\(old)")
        // Not reloaded: uploads are still capped at the old 1000 bytes.
        let created = try await server.request(
            "POST", "/v2/images", body: Array(#"{"disk_format": "raw", "container_format": "bare"}"#.utf8), contentType: "application/json")
        let id = try #require(created.json?["id"] as? String)
        let upload = try await server.request(
            "PUT", "/v2/images/\(id)/file", body: [UInt8](repeating: 1, count: 1500), contentType: "application/octet-stream")
        #expect(upload.status == 413)

        // A file that no longer loads changes nothing, and the server stays up.
        try "[DEFAULT]\nbind_port = abc\n".write(toFile: server.config, atomically: true, encoding: .utf8)
        #expect(server.process.signal(SIGHUP))
        #expect(await ServedImageStore.eventually { ServeLoggingTests.lines(logFile).contains { $0.contains("configuration not reloaded") } })
        #expect(server.process.isRunning)
        #expect(try await server.request("GET", "/healthcheck").status == 503)
    }
}

/// The line formats on their own: whatever a message or metadata holds, a JSON line stays one valid object.
@Suite struct LogLineFormatTests {
    @Test func jsonLine_escapesQuotesNewlinesAndControlCharacters_andNestsMetadata() throws {
        let message = "say \"hi\"\nback\\slash\ttab \u{01} ünïcode"
        let line = LogLineFormat.line(
            timestamp: "2026-12-03T00:00:00.000Z", level: .warning, logger: "imagestore", message: message,
            metadata: [
                "request_id": "req-1", "image_id": .stringConvertible(42), "path": "/a\"b",
                "list": .array(["x", .dictionary(["k": "v"])]),
            ], json: true)
        #expect(line.hasSuffix("}\n"))
        #expect(!line.dropLast().contains("\n"), "one line")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["message"] as? String == message)
        #expect(object["level"] as? String == "WARNING")
        #expect(object["request_id"] as? String == "req-1")
        #expect(object["image_id"] as? String == "42")
        let extra = try #require(object["extra"] as? [String: Any])
        #expect(extra["path"] as? String == "/a\"b")
        #expect((extra["list"] as? [Any])?.count == 2)
    }

    @Test func textLine_osloContext_thenTheRestAsKeyValue() {
        let line = LogLineFormat.line(
            timestamp: "T", level: .info, logger: "imagestore", message: "GET / 200",
            metadata: ["request_id": "req-1", "user_id": "u", "ms": "1.00"], json: false)
        #expect(line.hasSuffix(" INFO imagestore [req-1 u -] GET / 200 ms=1.00\n"), "\(line)")
        let bare = LogLineFormat.line(timestamp: "T", level: .notice, logger: "x", message: "m", metadata: [:], json: false)
        #expect(bare.hasSuffix(" NOTICE x [-] m\n"), "\(bare)")
    }
}
