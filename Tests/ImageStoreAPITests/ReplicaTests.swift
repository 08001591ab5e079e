import Crypto
import Foundation
import ImageStoreTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Several real `imagestore serve` processes on one real PostgreSQL and one store directory, as a
/// Kubernetes Deployment runs them: concurrent uploads to one image through different replicas, a
/// replica killed (-9) or stopped (SIGSTOP) mid-upload, a replica restarted beside a live one.
/// The lease is 3 s here; every wait polls with a generous deadline. Uses timers (leases): scripts/test
/// runs it in a phase of its own (`replicas`).
@Suite(.serialized) struct ReplicaTests {
    static let lease = 3.0

    /// One `imagestore serve`, stopped by PID (also when the test fails: `stop` in a defer, and the
    /// ManagedProcess is killed on deinit).
    final class Replica: Sendable {
        let process: ManagedProcess
        let port: Int
        let log: String

        init(process: ManagedProcess, port: Int, log: String) {
            self.process = process
            self.port = port
            self.log = log
        }

        deinit { process.killAndWait() }

        func stop() async { await process.terminate() }
        var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    }

    /// A store directory and a database shared by the replicas started from it.
    struct Cluster {
        let work: TemporaryDirectory
        let datadir: String
        let databaseURL: String

        init(databaseURL: String) throws {
            work = try TemporaryDirectory(prefix: "imagestore-replicas")
            datadir = try work.makeDirectory("images")
            FileManager.default.createFile(atPath: datadir + "/.glance", contents: Data())
            self.databaseURL = databaseURL
        }

        /// - Parameters:
        ///   - defaults: more `[DEFAULT]` lines, given the replica's port.
        ///   - sections: more sections, after the others.
        func start(_ name: String, defaults: (Int) -> String = { _ in "" }, sections: String = "") async throws -> Replica {
            let port = try freeTCPPort()
            let config = work.appending("\(name).conf")
            try """
            [DEFAULT]
            bind_host = 127.0.0.1
            bind_port = \(port)
            replica_lease_time = \(ReplicaTests.lease)
            \(defaults(port))
            [glance_store]
            filesystem_store_datadir = \(datadir)
            [database]
            connection = \(databaseURL)
            \(sections)
            """.write(toFile: config, atomically: true, encoding: .utf8)
            let log = work.appending("\(name).log")
            let process = try ManagedProcess(
                try CheckCommandTests.executable(), arguments: ["serve", "--config-file", config], stdoutPath: log, stderrPath: log)
            let replica = Replica(process: process, port: port, log: log)
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(60)
            while true {
                if let (status, _) = try? await http(port, "GET", "/versions"), status == 200 { return replica }
                guard process.isRunning else { throw TestSupportError("\(name) exited:\n\(replica.logText.suffix(3000))") }
                guard clock.now < deadline else { throw TestSupportError("\(name) did not listen:\n\(replica.logText.suffix(3000))") }
                try await Task.sleep(for: .milliseconds(100))
            }
        }

        /// Store entries other than the marker.
        func files() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: datadir)) ?? []).filter { $0 != ".glance" }.sorted()
        }

        func temporaryFiles(of id: String) -> [String] {
            files().filter { $0.hasPrefix(".\(id).") && $0.hasSuffix(".tmp") }
        }
    }

    /// Runs `body` on a fresh database of the shared PostgreSQL with a fresh store directory.
    static func withCluster(_ body: (Cluster) async throws -> Void) async throws {
        try await SharedPostgresServer.withDatabase { _, url in
            let cluster = try Cluster(databaseURL: url)
            defer { cluster.work.remove() }
            try await body(cluster)
        }
    }

    // MARK: HTTP (raw sockets, off the cooperative pool)

    /// One request on its own connection (`Connection: close`); the status and the body.
    static func http(
        _ port: Int, _ method: String, _ path: String, body: [UInt8] = [], contentType: String? = nil, timeout: TimeInterval = 60
    ) async throws -> (Int, [UInt8]) {
        let (status, body, _) = try await request(port, method, path, body: body, contentType: contentType, timeout: timeout)
        return (status, body)
    }

    /// One request on its own connection (`Connection: close`); the status, the body and the head.
    static func request(
        _ port: Int, _ method: String, _ path: String, body: [UInt8] = [], contentType: String? = nil, timeout: TimeInterval = 60
    ) async throws -> (Int, [UInt8], String) {
        try await offPool {
            let connection = try RawHTTPConnection(port: port)
            defer { connection.closeNormally() }
            var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
            if let contentType { head += "Content-Type: \(contentType)\r\n" }
            try connection.send(head + "\r\n")
            if !body.isEmpty { try connection.send(body) }
            return try parseResponse(connection.receiveUntilClosed(timeout: timeout).bytes)
        }
    }

    static func parseResponse(_ bytes: [UInt8]) throws -> (Int, [UInt8], String) {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let split = bytes.firstRange(of: separator) else {
            throw TestSupportError("no complete response: \(String(decoding: bytes, as: UTF8.self))")
        }
        let head = String(decoding: bytes[..<split.lowerBound], as: UTF8.self)
        let fields = head.split(separator: " ", maxSplits: 2)
        guard fields.count >= 2, let status = Int(fields[1]) else { throw TestSupportError("bad status line: \(head)") }
        var body = Array(bytes[split.upperBound...])
        if head.lowercased().contains("transfer-encoding: chunked") {
            var decoded: [UInt8] = []
            var rest = body[...]
            while let line = rest.firstRange(of: Array("\r\n".utf8)),
                let size = Int(String(decoding: rest[..<line.lowerBound], as: UTF8.self), radix: 16), size > 0
            {
                let start = line.upperBound
                decoded += rest[start..<min(start + size, rest.endIndex)]
                rest = rest[min(start + size + 2, rest.endIndex)...]
            }
            body = decoded
        }
        return (status, body, head)
    }

    static func createImage(_ port: Int) async throws -> String {
        let (status, body) = try await http(
            port, "POST", "/v2/images", body: Array(#"{"disk_format": "raw", "container_format": "bare"}"#.utf8),
            contentType: "application/json")
        try #require(status == 201, "\(String(decoding: body, as: UTF8.self))")
        let json = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
        return try #require(json?["id"] as? String)
    }

    static func image(_ port: Int, _ id: String) async throws -> [String: Any] {
        let (status, body) = try await http(port, "GET", "/v2/images/\(id)")
        try #require(status == 200, "\(String(decoding: body, as: UTF8.self))")
        return try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
    }

    static func status(_ port: Int, _ id: String) async throws -> String {
        try await image(port, id)["status"] as? String ?? ""
    }

    static func upload(_ port: Int, _ id: String, _ data: [UInt8]) async throws -> Int {
        try await http(port, "PUT", "/v2/images/\(id)/file", body: data, contentType: "application/octet-stream").0
    }

    /// Polls `condition` every 100 ms until it holds or `timeout` passes; returns whether it held.
    static func eventually(timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await condition()
    }

    static func md5(_ data: [UInt8]) -> String {
        Insecure.MD5.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    static func random(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return notAnMBR((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// Starts an upload declaring `declared` bytes, sends `sent` of them, and returns once the image is
    /// `saving` and its temporary file is on the store: the connection stays open, mid-body.
    static func startPartialUpload(
        _ cluster: Cluster, _ port: Int, _ id: String, declared: Int, sent: [UInt8]
    ) async throws -> RawHTTPConnection {
        let connection = try await RawHTTPConnection.startUpload(
            port: port, path: "/v2/images/\(id)/file", .contentLength(declared), sending: sent)
        let saving = try await eventually { try await status(port, id) == "saving" && !cluster.temporaryFiles(of: id).isEmpty }
        try #require(saving, "the upload did not start: \(cluster.files())")
        return connection
    }

    // MARK: Tests

    /// Three replicas, one image, three uploads at once through different replicas: exactly one 204 and
    /// two 409, and the store holds exactly the winner's bytes under the checksum the image reports.
    @Test func concurrentUploadsThroughThreeReplicas_exactlyOneWins() async throws {
        try await Self.withCluster { cluster in
            var replicas: [Replica] = []
            defer { for replica in replicas { replica.process.killAndWait() } }
            for name in ["a", "b", "c"] { replicas.append(try await cluster.start(name)) }
            let ports = replicas.map(\.port)
            for round in 0..<4 {
                let id = try await Self.createImage(ports[round % 3])
                let bodies = (0..<3).map { _ in Self.random(2 << 20) }
                let statuses = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                    for i in 0..<3 { group.addTask { (i, try await Self.upload(ports[i], id, bodies[i])) } }
                    return try await group.reduce(into: [Int: Int]()) { $0[$1.0] = $1.1 }
                }
                #expect(statuses.values.sorted() == [204, 409, 409], "\(statuses)")
                let winner = try #require(statuses.first { $0.value == 204 }.map { bodies[$0.key] })
                let image = try await Self.image(ports[(round + 1) % 3], id)
                #expect(image["status"] as? String == "active")
                #expect(image["checksum"] as? String == Self.md5(winner))
                #expect(FileManager.default.contents(atPath: cluster.datadir + "/" + id).map(Array.init) == winner)
                #expect(cluster.temporaryFiles(of: id).isEmpty, "\(cluster.files())")
            }
        }
    }

    /// kill -9 of a replica mid-upload: after its lease another replica resets the image to `queued` and
    /// removes its temporary file; an upload through the survivor then succeeds.
    @Test func replicaKilledMidUpload_survivorResetsItAfterTheLease_reuploadSucceeds() async throws {
        try await Self.withCluster { cluster in
            let a = try await cluster.start("a")
            defer { a.process.killAndWait() }
            let b = try await cluster.start("b")
            defer { b.process.killAndWait() }
            let id = try await Self.createImage(a.port)
            let connection = try await Self.startPartialUpload(cluster, a.port, id, declared: 64 << 20, sent: Self.random(4 << 20))
            defer { connection.reset() }
            await a.process.kill()
            #expect(!cluster.temporaryFiles(of: id).isEmpty, "what the crash left")

            let reset = try await Self.eventually {
                try await Self.status(b.port, id) == "queued" && cluster.temporaryFiles(of: id).isEmpty
            }
            let seen = try await Self.status(b.port, id)
            #expect(reset, "status \(seen), files \(cluster.files())\n\(b.logText.suffix(3000))")
            #expect(!cluster.files().contains(id), "no data published")

            let data = Self.random(3 << 20)
            #expect(try await Self.upload(b.port, id, data) == 204)
            let image = try await Self.image(b.port, id)
            #expect(image["status"] as? String == "active")
            #expect(image["checksum"] as? String == Self.md5(data))
            #expect(cluster.files() == [id])
        }
    }

    /// A replica stopped (SIGSTOP) mid-upload past its lease is taken over; resumed (SIGCONT), it receives
    /// the rest of the body but cannot commit: 409, the image stays `queued`, nothing of it is left.
    @Test func replicaStoppedPastItsLease_cannotCommitWhenResumed() async throws {
        try await Self.withCluster { cluster in
            let a = try await cluster.start("a")
            defer { a.process.killAndWait() }
            let b = try await cluster.start("b")
            defer { b.process.killAndWait() }
            let id = try await Self.createImage(a.port)
            let data = Self.random(3 << 20)
            let connection = try await Self.startPartialUpload(
                cluster, a.port, id, declared: data.count, sent: Array(data[..<(1 << 20)]))
            defer { connection.reset() }
            try await a.process.suspend()
            var resumed = false
            defer { if !resumed { a.process.resume() } }
            // The rest of the body waits in the socket buffers (or blocks this thread) until A runs again.
            let rest = Task { try await offPool { try connection.send(Array(data[(1 << 20)...])) } }

            let reset = try await Self.eventually {
                try await Self.status(b.port, id) == "queued" && cluster.temporaryFiles(of: id).isEmpty
            }
            let seen = try await Self.status(b.port, id)
            #expect(reset, "status \(seen), files \(cluster.files())\n\(b.logText.suffix(3000))")
            a.process.resume()
            resumed = true
            try await rest.value
            let response = try await offPool { connection.receive(until: "\r\n\r\n", timeout: 60) }
            #expect(response.hasPrefix("HTTP/1.1 409"), "\(response)\n\(a.logText.suffix(3000))")

            #expect(try await Self.status(b.port, id) == "queued")
            #expect(try await Self.status(a.port, id) == "queued")
            #expect(cluster.files().isEmpty, "no temporary file, no data: \(cluster.files())")
            // A is a live replica again: an upload through it succeeds.
            #expect(try await Self.upload(a.port, id, data) == 204)
            #expect(try await Self.image(b.port, id)["checksum"] as? String == Self.md5(data))
        }
    }

    /// A replica restarting beside a live one touches nothing of the other's: its upload in flight keeps
    /// its temporary file and completes.
    @Test func restartOfAReplica_leavesAnotherLiveReplicasUploadAlone() async throws {
        try await Self.withCluster { cluster in
            let a = try await cluster.start("a")
            defer { a.process.killAndWait() }
            let b = try await cluster.start("b")
            defer { b.process.killAndWait() }
            let id = try await Self.createImage(b.port)
            let data = Self.random(3 << 20)
            let connection = try await Self.startPartialUpload(
                cluster, b.port, id, declared: data.count, sent: Array(data[..<(1 << 20)]))
            defer { connection.reset() }
            let temporary = cluster.temporaryFiles(of: id)

            await a.stop()
            let a2 = try await cluster.start("a2")
            defer { a2.process.killAndWait() }
            // Start-up recovery ran before a2 listened; give its first takeover passes time too (past the lease).
            try await Task.sleep(for: .seconds(Self.lease * 2))
            #expect(cluster.temporaryFiles(of: id) == temporary, "\(cluster.files())\n\(a2.logText.suffix(3000))")
            #expect(try await Self.status(a2.port, id) == "saving")

            try await offPool { try connection.send(Array(data[(1 << 20)...])) }
            let response = try await offPool { connection.receive(until: "\r\n\r\n", timeout: 60) }
            #expect(response.hasPrefix("HTTP/1.1 204"), "\(response)\n\(b.logText.suffix(3000))")
            #expect(try await Self.image(a2.port, id)["checksum"] as? String == Self.md5(data))
            #expect(cluster.files() == [id])
        }
    }

    // MARK: Behind nginx

    /// nginx (Debian's package) with a private configuration: round-robin over `ports`, on a free port,
    /// in the foreground (so its PID is ours to stop), every response naming the replica that answered.
    static func startNginx(_ cluster: Cluster, ports: [Int]) async throws -> (ManagedProcess, Int) {
        let binary = try #require(
            ["/usr/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) },
            "no nginx: apt-get install nginx (scripts/setup-system does)")
        let port = try freeTCPPort()
        let prefix = try cluster.work.makeDirectory("nginx")
        let config = prefix + "/nginx.conf"
        try """
        daemon off;
        master_process off;
        worker_processes 1;
        user root;
        pid \(prefix)/nginx.pid;
        error_log \(prefix)/error.log warn;
        events { worker_connections 512; }
        http {
            access_log off;
            client_body_temp_path \(prefix)/body;
            proxy_temp_path \(prefix)/proxy;
            fastcgi_temp_path \(prefix)/fastcgi;
            uwsgi_temp_path \(prefix)/uwsgi;
            scgi_temp_path \(prefix)/scgi;
            client_max_body_size 0;
            upstream imagestore {
                \(ports.map { "server 127.0.0.1:\($0);" }.joined(separator: "\n        "))
            }
            server {
                listen 127.0.0.1:\(port);
                location / {
                    proxy_pass http://imagestore;
                    proxy_http_version 1.1;
                    # Streamed as it arrives, as the replicas expect (no spooling of whole images).
                    proxy_request_buffering off;
                    # A PUT is not idempotent here: never replay it on another replica.
                    proxy_next_upstream off;
                    proxy_read_timeout 120s;
                    add_header X-Upstream $upstream_addr always;
                }
            }
        }
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let process = try ManagedProcess(
            binary, arguments: ["-p", prefix, "-c", config], stdoutPath: prefix + "/out.log", stderrPath: prefix + "/out.log")
        let up = try await eventually(timeout: .seconds(30)) { tcpPortAccepts(port) || !process.isRunning }
        let log = (try? String(contentsOfFile: prefix + "/out.log", encoding: .utf8)) ?? ""
        try #require(up && process.isRunning, "nginx did not start: \(log)")
        return (process, port)
    }

    /// Three replicas behind nginx round-robin under a small concurrent load (create, upload, read back,
    /// some uploads racing for one image), then the end-of-run check: no 5xx, every replica served,
    /// every active image's bytes on disk match its checksum, the store holds exactly their files and
    /// nothing in temporary files.
    @Test func threeReplicasBehindNginx_smallLoad_endOfRunCheck() async throws {
        try await Self.withCluster { cluster in
            var replicas: [Replica] = []
            defer { for replica in replicas { replica.process.killAndWait() } }
            for name in ["a", "b", "c"] { replicas.append(try await cluster.start(name)) }
            let (nginx, port) = try await Self.startNginx(cluster, ports: replicas.map(\.port))
            defer { nginx.killAndWait() }

            struct Outcome: Sendable {
                var statuses: [Int] = []
                var upstreams: Set<String> = []
                var uploaded: [String: String] = [:]  // image id → md5 of the bytes that won
            }
            let outcome = try await withThrowingTaskGroup(of: Outcome.self) { group in
                for worker in 0..<6 {
                    group.addTask {
                        var outcome = Outcome()
                        for round in 0..<6 {
                            let (created, body, head) = try await Self.request(
                                port, "POST", "/v2/images",
                                body: Array(#"{"disk_format": "raw", "container_format": "bare"}"#.utf8),
                                contentType: "application/json")
                            outcome.statuses.append(created)
                            outcome.upstreams.formUnion(Self.upstreams(head))
                            guard created == 201,
                                let id = (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])?["id"] as? String
                            else { continue }
                            let data = Self.random(64 * 1024 * (1 + (worker + round) % 4))
                            if round == 5 {
                                // Two uploads racing for one image through the balancer: one 204, one 409.
                                let other = Self.random(100_000)
                                async let first = Self.request(port, "PUT", "/v2/images/\(id)/file", body: data, contentType: "application/octet-stream")
                                async let second = Self.request(port, "PUT", "/v2/images/\(id)/file", body: other, contentType: "application/octet-stream")
                                let (r1, r2) = try await (first, second)
                                outcome.statuses += [r1.0, r2.0]
                                #expect([r1.0, r2.0].sorted() == [204, 409], "\(r1.0) \(r2.0)")
                                if r1.0 == 204 { outcome.uploaded[id] = Self.md5(data) }
                                if r2.0 == 204 { outcome.uploaded[id] = Self.md5(other) }
                            } else {
                                let (uploaded, _, head) = try await Self.request(
                                    port, "PUT", "/v2/images/\(id)/file", body: data, contentType: "application/octet-stream")
                                outcome.statuses.append(uploaded)
                                outcome.upstreams.formUnion(Self.upstreams(head))
                                #expect(uploaded == 204)
                                if uploaded == 204 { outcome.uploaded[id] = Self.md5(data) }
                                let (read, bytes, _) = try await Self.request(port, "GET", "/v2/images/\(id)/file")
                                outcome.statuses.append(read)
                                #expect(read == 200 && bytes == data, "read back through another replica: \(read)")
                            }
                        }
                        return outcome
                    }
                }
                return try await group.reduce(into: Outcome()) { total, one in
                    total.statuses += one.statuses
                    total.upstreams.formUnion(one.upstreams)
                    total.uploaded.merge(one.uploaded) { a, _ in a }
                }
            }
            #expect(!outcome.statuses.contains { $0 >= 500 }, "\(outcome.statuses.filter { $0 >= 500 })")
            #expect(outcome.upstreams.count == 3, "round-robin reached \(outcome.upstreams)")
            #expect(outcome.uploaded.count == 36)

            // End-of-run check, from the catalogue and the store directory.
            let (listed, body) = try await Self.http(port, "GET", "/v2/images?limit=1000")
            #expect(listed == 200)
            let images = (try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])?["images"] as? [[String: Any]] ?? []
            let active = images.filter { $0["status"] as? String == "active" }
            #expect(active.count == 36 && images.count == 36)
            for image in active {
                let id = image["id"] as? String ?? ""
                let onDisk = FileManager.default.contents(atPath: cluster.datadir + "/" + id).map(Array.init) ?? []
                #expect(Self.md5(onDisk) == image["checksum"] as? String, "\(id)")
                #expect(outcome.uploaded[id] == image["checksum"] as? String, "\(id): the bytes of the upload that won")
            }
            #expect(cluster.files() == active.compactMap { $0["id"] as? String }.sorted(), "exactly the active images' files, no temporaries")
        }
    }

    static func upstreams(_ head: String) -> [String] {
        head.split(separator: "\r\n").compactMap { line in
            line.lowercased().hasPrefix("x-upstream:") ? line.dropFirst("x-upstream:".count).trimmingCharacters(in: .whitespaces) : nil
        }
    }

    // MARK: Database restarted under load

    /// PostgreSQL restarted while three replicas take uploads: requests answer 503 meanwhile (never a
    /// 500, never a hang), and afterwards nothing is half-applied: no image stays `saving` (an upload
    /// whose clean-up could not reach the database is reset by its own replica's next takeover pass),
    /// every active image's bytes match its checksum, the store holds exactly their files.
    @Test func postgresRestartedUnderLoad_nothingHalfApplied() async throws {
        let server = try await PostgresServer.start()
        defer { server.stopNow() }
        let cluster = try Cluster(databaseURL: try await server.createDatabase())
        defer { cluster.work.remove() }
        var replicas: [Replica] = []
        defer { for replica in replicas { replica.process.killAndWait() } }
        for name in ["a", "b", "c"] { replicas.append(try await cluster.start(name)) }
        let ports = replicas.map(\.port)

        let stop = TestFlag()
        let load = Task { () -> [Int] in
            try await withThrowingTaskGroup(of: [Int].self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        var statuses: [Int] = []
                        var round = 0
                        while !stop.isSet {
                            round += 1
                            let port = ports[(worker + round) % 3]
                            let (created, body) = try await Self.http(
                                port, "POST", "/v2/images",
                                body: Array(#"{"disk_format": "raw", "container_format": "bare"}"#.utf8),
                                contentType: "application/json")
                            statuses.append(created)
                            guard created == 201,
                                let id = (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])?["id"] as? String
                            else {
                                try await Task.sleep(for: .milliseconds(100))
                                continue
                            }
                            statuses.append(try await Self.upload(ports[(worker + round + 1) % 3], id, Self.random(200_000)))
                        }
                        return statuses
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
        }
        try await Task.sleep(for: .seconds(2))
        try await server.restart()
        try await Task.sleep(for: .seconds(3))
        stop.set()
        let statuses = try await load.value
        print("postgres restart under load: statuses \(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
        #expect(statuses.allSatisfy { [201, 204, 409, 503].contains($0) }, "\(statuses.filter { ![201, 204].contains($0) })")
        #expect(statuses.filter { $0 == 204 }.count > 0)

        // Settled: nothing left `saving` (well within a lease and a takeover pass).
        var images: [[String: Any]] = []
        let settled = try await Self.eventually {
            guard let (status, body) = try? await Self.http(ports[0], "GET", "/v2/images?limit=1000"), status == 200 else { return false }
            images = (try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])?["images"] as? [[String: Any]] ?? []
            return !images.contains { $0["status"] as? String == "saving" }
        }
        #expect(settled, "\(images.filter { $0["status"] as? String == "saving" }.map { $0["id"] ?? "" })")
        let active = images.filter { $0["status"] as? String == "active" }
        for image in active {
            let id = image["id"] as? String ?? ""
            let onDisk = FileManager.default.contents(atPath: cluster.datadir + "/" + id).map(Array.init)
            #expect(onDisk.map(Self.md5) == image["checksum"] as? String, "\(id)")
        }
        #expect(images.allSatisfy { ["active", "queued"].contains($0["status"] as? String ?? "") })
        #expect(cluster.files() == active.compactMap { $0["id"] as? String }.sorted(), "exactly the active images' files, no temporaries")
    }
}
