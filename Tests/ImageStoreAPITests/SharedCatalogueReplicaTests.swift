import Foundation
import ImageStoreTestSupport
import Testing

/// Tasks and the metadefs catalogue on PostgreSQL are one per deployment, not one per replica: what one
/// replica writes every other shows, and a replica started later (after the others stopped) still has
/// it. Real `imagestore serve` processes, in `ReplicaTests` (the `replicas` phase).
extension ReplicaTests {
    static func json(_ body: [UInt8]) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]) ?? [:]
    }

    static func post(_ port: Int, _ path: String, _ json: String) async throws -> (Int, [String: Any]) {
        let (status, body) = try await http(port, "POST", path, body: Array(json.utf8), contentType: "application/json")
        return (status, Self.json(body))
    }

    @Test func tasksAndMetadefsWrittenThroughOneReplica_areSeenThroughAnother_andOutliveThem() async throws {
        try await Self.withCluster { cluster in
            let a = try await cluster.start("a")
            defer { a.process.killAndWait() }
            let b = try await cluster.start("b")
            defer { b.process.killAndWait() }

            // A legacy import task created through A (recorded as a failure, as Glance 33 does) is shown
            // and listed through B.
            let (created, task) = try await Self.post(
                a.port, "/v2/tasks",
                #"{"type": "import", "input": {"import_from": "http://h/x.qcow2", "import_from_format": "qcow2", "image_properties": {"disk_format": "qcow2", "container_format": "bare"}}}"#
            )
            #expect(created == 201, "\(task)")
            let taskID = try #require(task["id"] as? String)
            let (shown, shownBody) = try await Self.http(b.port, "GET", "/v2/tasks/\(taskID)")
            #expect(shown == 200)
            #expect(Self.json(shownBody)["status"] as? String == "failure")
            #expect(Self.json(shownBody)["message"] as? String == task["message"] as? String)
            let (_, listBody) = try await Self.http(b.port, "GET", "/v2/tasks")
            #expect((Self.json(listBody)["tasks"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [taskID])

            // An image imported through A (staging on the share, glance-direct): its import task, written
            // by A as it ran, is listed through B with A's outcome.
            let data = Self.random(200_000)
            let id = try await Self.createImage(a.port)
            #expect(try await Self.stage(a.port, id, data) == 204)
            #expect(try await Self.importDirect(a.port, id).0 == 202)
            #expect(try await Self.eventually { try await Self.status(b.port, id) == "active" })
            var imageTasks: [[String: Any]] = []
            let succeeded = try await Self.eventually {
                let (status, body) = try await Self.http(b.port, "GET", "/v2/images/\(id)/tasks")
                imageTasks = Self.json(body)["tasks"] as? [[String: Any]] ?? []
                return status == 200 && imageTasks.first?["status"] as? String == "success"
            }
            #expect(succeeded && imageTasks.count == 1, "\(imageTasks)")
            let importTaskID = imageTasks.first?["id"] as? String ?? ""

            // A namespace created through A, a tag added through B, both seen through the other.
            let (nsCreated, ns) = try await Self.post(
                a.port, "/v2/metadefs/namespaces", #"{"namespace": "OS::Shared::Test", "visibility": "public"}"#)
            #expect(nsCreated == 201, "\(ns)")
            #expect(try await Self.http(b.port, "GET", "/v2/metadefs/namespaces/OS::Shared::Test").0 == 200)
            let (tagCreated, _) = try await Self.post(b.port, "/v2/metadefs/namespaces/OS::Shared::Test/tags/fast", "{}")
            #expect(tagCreated == 201)
            let (_, tagsBody) = try await Self.http(a.port, "GET", "/v2/metadefs/namespaces/OS::Shared::Test/tags")
            #expect((Self.json(tagsBody)["tags"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["fast"])
            // Both replicas refuse a second namespace of that name: the name is unique in the one catalogue.
            #expect(try await Self.post(b.port, "/v2/metadefs/namespaces", #"{"namespace": "OS::Shared::Test"}"#).0 == 409)

            // Every replica stopped; one started afterwards has all of it.
            await a.stop()
            await b.stop()
            let c = try await cluster.start("c")
            defer { c.process.killAndWait() }
            #expect(try await Self.http(c.port, "GET", "/v2/tasks/\(taskID)").0 == 200)
            let (_, cTasks) = try await Self.http(c.port, "GET", "/v2/images/\(id)/tasks")
            #expect((Self.json(cTasks)["tasks"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [importTaskID])
            let (_, cTags) = try await Self.http(c.port, "GET", "/v2/metadefs/namespaces/OS::Shared::Test/tags")
            #expect((Self.json(cTags)["tags"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["fast"])
            #expect(try await Self.http(c.port, "DELETE", "/v2/metadefs/namespaces/OS::Shared::Test").0 == 204)
        }
    }
}
