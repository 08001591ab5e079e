import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreTestSupport
import NIOCore
import Testing

/// `/v2/tasks` and `GET /v2/images/{id}/tasks` through the real application (SQLite).
@Suite struct TasksAPITests {
    static func importTask(_ from: String) -> String {
        #"{"type": "import", "input": {"import_from": "\#(from)", "import_from_format": "qcow2", "image_properties": {"disk_format": "qcow2", "container_format": "bare", "name": "t"}}}"#
    }

    @Test func createImportTask_isRecordedAsFailure_andShownListed() async throws {
        try await APITestHarness().run { client in
            let create = try await client.call(.admin, .post, "/v2/tasks", Self.importTask("http://dummy-img-file.qcow2"))
            #expect(create.status == .created, "\(create.text)")
            let id = try #require(create.jsonBody?["id"]?.stringValue)
            #expect(create.headers[.location] == "/v2/tasks/\(id)")
            #expect(create.jsonBody?["status"]?.stringValue == "failure")
            #expect(create.jsonBody?["input"]?["import_from_format"]?.stringValue == "qcow2")
            #expect(create.jsonBody?["owner"]?.stringValue == "proj-a")
            #expect(create.jsonBody?["message"]?.stringValue?.isEmpty == false)

            let show = try await client.call(.admin, .get, "/v2/tasks/\(id)")
            #expect(show.status == .ok)
            #expect(show.jsonBody?["status"]?.stringValue == "failure")
            #expect(show.jsonBody?["expires_at"]?.stringValue != nil)

            let list = try await client.call(.admin, .get, "/v2/tasks?status=failure&sort_dir=asc")
            #expect(list.jsonBody?["tasks"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == [id])
            // The list leaves out input, result and message, as Glance's partial schema.
            #expect(list.jsonBody?["tasks"]?[0]?["input"] == nil)
            #expect(try await client.call(.admin, .get, "/v2/tasks/\(UUID())").status == .notFound)
        }
    }

    @Test func badTasks_are400_andNonAdmins403() async throws {
        try await APITestHarness().run { client in
            let bad: [String] = [
                #"{"input": {}}"#,
                #"{"type": "import"}"#,
                #"{"type": "convert", "input": {}}"#,
                #"{"type": "import", "input": "x"}"#,
                #"{"type": "import", "input": {"import_from": "http://h/x"}}"#,
                Self.importTask("file:///etc/passwd"),
                Self.importTask("ftp://host/x"),
                Self.importTask("http://user:pw@host/x"),
                Self.importTask("not a uri"),
                #"{"type": "import", "input": {}, "extra": 1}"#,
            ]
            for body in bad {
                let response = try await client.call(.admin, .post, "/v2/tasks", body)
                #expect(response.status == .badRequest, "\(body): \(response.status) \(response.text)")
            }
            #expect(try await client.call(.admin, .get, "/v2/tasks").jsonBody?["tasks"]?.arrayValue?.isEmpty == true)
            #expect(try await client.call(.member, .post, "/v2/tasks", Self.importTask("http://h/x")).status == .forbidden)
            #expect(try await client.call(.member, .get, "/v2/tasks").status == .forbidden)
            #expect(try await client.call(.admin, .get, "/v2/tasks?sort_key=bogus").status == .badRequest)
            #expect(try await client.call(.admin, .get, "/v2/tasks?marker=nope").status == .badRequest)
        }
    }

    @Test func imageTasks_emptyForAnImage_404ForAnUnseenOne() async throws {
        try await APITestHarness().run { client in
            let id = try await client.imageOfProjectA()
            let tasks = try await client.call(.member, .get, "/v2/images/\(id)/tasks")
            #expect(tasks.status == .ok)
            #expect(tasks.jsonBody?["tasks"]?.arrayValue?.isEmpty == true)
            #expect(try await client.call(.otherMember, .get, "/v2/images/\(id)/tasks").status == .notFound)
            for name in ["task", "tasks"] {
                let schema = try await client.call(.reader, .get, "/v2/schemas/\(name)")
                #expect(schema.jsonBody?["name"]?.stringValue == name)
            }
        }
    }
}
