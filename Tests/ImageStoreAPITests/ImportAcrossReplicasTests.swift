import Foundation
import ImageStoreTestSupport
import Testing

/// Import across replicas (Glance's distributed import): each replica stages into a directory of its
/// own (`[os_glance_staging_store]`) and names itself with `worker_self_reference_url`; a glance-direct
/// import or a delete reaching another replica is forwarded to the one holding the staged data.
/// Real `imagestore serve` processes on one PostgreSQL, in `ReplicaTests` (the `replicas` phase).
extension ReplicaTests {
    /// A replica with its own staging directory and its URL as `worker_self_reference_url`.
    static func startStaging(_ cluster: Cluster, _ name: String) async throws -> (Replica, staging: String) {
        let staging = try cluster.work.makeDirectory("staging-\(name)")
        let replica = try await cluster.start(
            name, defaults: { port in "worker_self_reference_url = http://127.0.0.1:\(port)" },
            sections: "[os_glance_staging_store]\nfilesystem_store_datadir = \(staging)")
        return (replica, staging)
    }

    static func entries(_ directory: String, of id: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.contains(id) }
    }

    static func stage(_ port: Int, _ id: String, _ data: [UInt8]) async throws -> Int {
        try await http(port, "PUT", "/v2/images/\(id)/stage", body: data, contentType: "application/octet-stream").0
    }

    static func importDirect(_ port: Int, _ id: String) async throws -> (Int, String) {
        let (status, body) = try await http(
            port, "POST", "/v2/images/\(id)/import", body: Array(#"{"method": {"name": "glance-direct"}}"#.utf8),
            contentType: "application/json")
        return (status, String(decoding: body, as: UTF8.self))
    }

    @Test func importStagedOnAnotherReplicaIsForwarded() async throws {
        try await Self.withCluster { cluster in
            let (a, stagingA) = try await Self.startStaging(cluster, "a")
            defer { a.process.killAndWait() }
            let (b, stagingB) = try await Self.startStaging(cluster, "b")
            defer { b.process.killAndWait() }
            let data = Self.random(300_000)
            let id = try await Self.createImage(b.port)
            #expect(try await Self.stage(a.port, id, data) == 204)
            #expect(Self.entries(stagingA, of: id).count == 1)
            #expect(try await Self.status(b.port, id) == "uploading")

            let (status, body, head) = try await Self.request(
                b.port, "POST", "/v2/images/\(id)/import", body: Array(#"{"method": {"name": "glance-direct"}}"#.utf8),
                contentType: "application/json")
            #expect(status == 202, "\(String(decoding: body, as: UTF8.self))")
            // One request id for the client's request, in both replicas' logs.
            let requestID = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-openstack-request-id:") }
                .map { $0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces) }
            let sameID = try await Self.eventually { requestID.map { a.logText.contains($0) } ?? false }
            #expect(requestID != nil && sameID, "\(head)")
            let active = try await Self.eventually { try await Self.status(b.port, id) == "active" }
            #expect(active, "\(a.logText.suffix(3000))")
            let image = try await Self.image(b.port, id)
            #expect(image["checksum"] as? String == Self.md5(data))
            #expect(image["size"] as? Int == data.count)
            #expect(cluster.files().contains(id))
            let stored = FileManager.default.contents(atPath: cluster.datadir + "/" + id).map { Array($0) }
            #expect(stored == data)
            // A imported it (its staged file is gone); B staged nothing and imported nothing.
            #expect(try await Self.eventually { Self.entries(stagingA, of: id).isEmpty })
            #expect(Self.entries(stagingB, of: id).isEmpty)
            #expect(b.logText.contains("proxying request to the stage host"))
            let (read, bytes) = try await Self.http(a.port, "GET", "/v2/images/\(id)/file")
            #expect(read == 200 && bytes == data)

            // Staged on A, imported through A: no forwarding.
            let local = try await Self.createImage(a.port)
            #expect(try await Self.stage(a.port, local, data) == 204)
            #expect(try await Self.importDirect(a.port, local).0 == 202)
            #expect(try await Self.eventually { try await Self.status(a.port, local) == "active" })
            #expect(!a.logText.contains("proxying request to the stage host"))
        }
    }

    @Test func deleteOfImageStagedOnAnotherReplicaIsForwarded() async throws {
        try await Self.withCluster { cluster in
            let (a, stagingA) = try await Self.startStaging(cluster, "a")
            defer { a.process.killAndWait() }
            let (b, _) = try await Self.startStaging(cluster, "b")
            defer { b.process.killAndWait() }
            let id = try await Self.createImage(a.port)
            #expect(try await Self.stage(a.port, id, Self.random(10_000)) == 204)
            #expect(Self.entries(stagingA, of: id).count == 1)
            let (status, body) = try await Self.http(b.port, "DELETE", "/v2/images/\(id)")
            #expect(status == 204, "\(String(decoding: body, as: UTF8.self))")
            #expect(try await Self.http(b.port, "GET", "/v2/images/\(id)").0 == 404)
            // Deleted by A, which removed its staged file.
            #expect(Self.entries(stagingA, of: id).isEmpty)
            #expect(b.logText.contains("proxying request to the stage host"))
        }
    }

    @Test func importStagedOnADeadReplicaIs503() async throws {
        try await Self.withCluster { cluster in
            let (a, stagingA) = try await Self.startStaging(cluster, "a")
            defer { a.process.killAndWait() }
            let (b, _) = try await Self.startStaging(cluster, "b")
            defer { b.process.killAndWait() }
            let data = Self.random(10_000)
            let id = try await Self.createImage(b.port)
            #expect(try await Self.stage(a.port, id, data) == 204)
            await a.stop()

            let clock = ContinuousClock()
            let started = clock.now
            let (status, body) = try await Self.importDirect(b.port, id)
            #expect(status == 503)
            #expect(body.contains("http://127.0.0.1:\(a.port)"), "\(body)")
            #expect(clock.now - started < .seconds(30))
            // Nothing changed: still staged on A, waiting for it.
            let image = try await Self.image(b.port, id)
            #expect(image["status"] as? String == "uploading")
            #expect(image["os_glance_import_task"] == nil || image["os_glance_import_task"] as? String == "")
            #expect(Self.entries(stagingA, of: id).count == 1)
            let staged = Self.entries(stagingA, of: id).first.flatMap { FileManager.default.contents(atPath: stagingA + "/" + $0) }
            #expect(staged.map { Array($0) } == data)

            // As Glance: a delete whose stage host is unreachable is done here (the staged file stays on A).
            #expect(try await Self.http(b.port, "DELETE", "/v2/images/\(id)").0 == 204)
            #expect(try await Self.http(b.port, "GET", "/v2/images/\(id)").0 == 404)
        }
    }
}

extension ReplicaTests {
    /// A replica starting after an image was staged on another one keeps it staged (its start-up
    /// recovery resets only what was staged in its own staging directory), and imports it through its owner.
    @Test func replicaStartingLaterKeepsImagesStagedElsewhere() async throws {
        try await Self.withCluster { cluster in
            let (a, stagingA) = try await Self.startStaging(cluster, "a")
            defer { a.process.killAndWait() }
            let data = Self.random(50_000)
            let id = try await Self.createImage(a.port)
            #expect(try await Self.stage(a.port, id, data) == 204)
            let (c, stagingC) = try await Self.startStaging(cluster, "c")
            defer { c.process.killAndWait() }
            let recovered = try await Self.eventually { c.logText.contains("start-up recovery done") }
            #expect(recovered, "\(c.logText.suffix(3000))")
            #expect(try await Self.status(c.port, id) == "uploading")
            #expect(Self.entries(stagingA, of: id).count == 1)
            #expect(try await Self.importDirect(c.port, id).0 == 202)
            #expect(try await Self.eventually { try await Self.status(c.port, id) == "active" })
            #expect(try await Self.image(c.port, id)["checksum"] as? String == Self.md5(data))
            #expect(Self.entries(stagingC, of: id).isEmpty)
        }
    }
}

extension ReplicaTests {
    /// A request already forwarded is never forwarded again: a replica that is not the stage host
    /// refuses it (409) instead of sending it on, and the image stays staged.
    @Test func forwardedImportIsNotForwardedAgain() async throws {
        try await Self.withCluster { cluster in
            let (a, stagingA) = try await Self.startStaging(cluster, "a")
            defer { a.process.killAndWait() }
            let (b, _) = try await Self.startStaging(cluster, "b")
            defer { b.process.killAndWait() }
            let id = try await Self.createImage(a.port)
            #expect(try await Self.stage(a.port, id, Self.random(1000)) == 204)
            let body = #"{"method": {"name": "glance-direct"}}"#
            let (status, answer, _) = try await offPool {
                let connection = try RawHTTPConnection(port: b.port)
                defer { connection.closeNormally() }
                try connection.send(
                    "POST /v2/images/\(id)/import HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                        + "Content-Type: application/json\r\nX-ImageStore-Forwarded-By: http://127.0.0.1:1\r\n"
                        + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
                return try Self.parseResponse(connection.receiveUntilClosed(timeout: 60).bytes)
            }
            #expect(status == 409, "\(String(decoding: answer, as: UTF8.self))")
            #expect(!b.logText.contains("proxying request to the stage host"))
            #expect(try await Self.status(b.port, id) == "uploading")
            #expect(Self.entries(stagingA, of: id).count == 1)
        }
    }
}

extension ReplicaTests {
    /// One request with extra header lines (`Name: value\r\n` each); the status, the body and the head.
    static func request(
        _ port: Int, _ method: String, _ path: String, headers: String, body: String = ""
    ) async throws -> (
        Int, [UInt8], String
    ) {
        try await offPool {
            let connection = try RawHTTPConnection(port: port)
            defer { connection.closeNormally() }
            try connection.send(
                "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\(headers)"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
            return try parseResponse(connection.receiveUntilClosed(timeout: 60).bytes)
        }
    }

    /// The forwarded import runs as the client (noauth identity headers replayed): the stage host's task
    /// names the client's project and user, not the anonymous noauth admin.
    @Test func forwardedImportRunsAsTheClient() async throws {
        try await Self.withCluster { cluster in
            let (a, _) = try await Self.startStaging(cluster, "a")
            defer { a.process.killAndWait() }
            let (b, _) = try await Self.startStaging(cluster, "b")
            defer { b.process.killAndWait() }
            let member = "X-Project-Id: project-one\r\nX-User-Id: user-one\r\nX-Roles: member,reader\r\n"
            let (created, createdBody, _) = try await Self.request(
                b.port, "POST", "/v2/images", headers: member + "Content-Type: application/json\r\n",
                body: #"{"disk_format": "raw", "container_format": "bare"}"#)
            try #require(created == 201, "\(String(decoding: createdBody, as: UTF8.self))")
            let id = try #require((try JSONSerialization.jsonObject(with: Data(createdBody)) as? [String: Any])?["id"] as? String)
            let data = Self.random(5000)
            let (staged, _, _) = try await Self.request(
                a.port, "PUT", "/v2/images/\(id)/stage", headers: member + "Content-Type: application/octet-stream\r\n",
                body: String(decoding: data.map { $0 & 0x3f | 0x40 }, as: UTF8.self))
            #expect(staged == 204)
            // Another project's member cannot see it: refused by B, never forwarded.
            let other = "X-Project-Id: project-two\r\nX-User-Id: user-two\r\nX-Roles: member,reader\r\n"
            let direct = #"{"method": {"name": "glance-direct"}}"#
            let (refused, _, _) = try await Self.request(
                b.port, "POST", "/v2/images/\(id)/import", headers: other + "Content-Type: application/json\r\n", body: direct)
            #expect(refused == 404)
            #expect(!b.logText.contains("proxying request to the stage host"))
            let (status, body, _) = try await Self.request(
                b.port, "POST", "/v2/images/\(id)/import", headers: member + "Content-Type: application/json\r\n", body: direct)
            #expect(status == 202, "\(String(decoding: body, as: UTF8.self))")
            #expect(try await Self.eventually { try await Self.status(b.port, id) == "active" })
            // Tasks are kept by the replica that ran them (not in the shared catalogue yet): A.
            let (_, tasksBody) = try await Self.http(a.port, "GET", "/v2/images/\(id)/tasks")
            let tasks = (try JSONSerialization.jsonObject(with: Data(tasksBody)) as? [String: Any])?["tasks"] as? [[String: Any]]
            let task = try #require(tasks?.first, "\(String(decoding: tasksBody, as: UTF8.self))")
            #expect(task["owner"] as? String == "project-one")
            #expect(task["user_id"] as? String == "user-one")
        }
    }
}
