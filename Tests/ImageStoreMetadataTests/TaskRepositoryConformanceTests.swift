import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreTestSupport
import Testing

/// Makes a fresh `TaskRepository` of one implementation.
typealias TaskFactory = SharingRepositoryFactory<any TaskRepository>

extension SharingRepositoryFactory where Repository == any TaskRepository {
    static var all: [Self] {
        engines(inMemory: { InMemoryTaskRepository() }, sqlite: { SQLiteTaskRepository(sharing: $0, logger: testLogger) }, postgres: { PostgresTaskRepository(sharing: $0) })
    }
}

/// The `TaskRepository` contract, run against every implementation.
@Suite struct TaskRepositoryConformanceTests {
    static let t0 = Date(timeIntervalSince1970: 1_700_000_000.25)

    @Test(arguments: TaskFactory.all)
    func create_roundTrips_duplicateIsConflict(factory: TaskFactory) async throws {
        try await factory.with { repo in
            let image = ImageID()
            let task = ImageTask(
                type: "import", status: .pending, input: #"{"import_from":"http://x/y"}"#, result: #"{"image_id":"i"}"#,
                message: "m", owner: "p1", imageID: image, userID: "u", requestID: "req-1",
                expiresAt: Self.t0.addingTimeInterval(3600), createdAt: Self.t0)
            try await repo.createTask(task)
            #expect(try await repo.task(task.id) == task)
            #expect(try await repo.task("missing") == nil)
            await expectError(.conflict) { try await repo.createTask(task) }
        }
    }

    @Test(arguments: TaskFactory.all)
    func update_changesStatus_setsUpdatedAt_unknownIsNotFound(factory: TaskFactory) async throws {
        try await factory.with { repo in
            let task = ImageTask(type: "import", createdAt: Self.t0)
            try await repo.createTask(task)
            let updated = try await repo.updateTask(task.id) {
                $0.status = .failure
                $0.message = "no"
            }
            #expect(updated.status == .failure && updated.message == "no")
            #expect(updated.updatedAt > Self.t0)
            #expect(try await repo.task(task.id) == updated)
            await expectError(.notFound) { try await repo.updateTask("missing") { $0.status = .success } }
        }
    }

    /// Updates are read-modify-write as one step: none is lost when many run at once (on PostgreSQL
    /// each reads the row FOR UPDATE, as replicas updating one import's task would).
    @Test(arguments: TaskFactory.all)
    func concurrentUpdates_ofOneTask_loseNothing(factory: TaskFactory) async throws {
        try await factory.with { repo in
            let task = ImageTask(type: "api_image_import", message: "", createdAt: Self.t0)
            try await repo.createTask(task)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<12 {
                    group.addTask { try await repo.updateTask(task.id) { $0.message += "<\(i)>" } }
                }
                try await group.waitForAll()
            }
            let message = try #require(try await repo.task(task.id)).message
            for i in 0..<12 { #expect(message.contains("<\(i)>")) }
            #expect(message.count == (0..<12).reduce(0) { $0 + "<\($1)>".count })
        }
    }

    @Test(arguments: TaskFactory.all)
    func list_filtersSortsAndPages(factory: TaskFactory) async throws {
        try await factory.with { repo in
            let image = ImageID()
            var all: [ImageTask] = []
            for i in 0..<7 {
                let task = ImageTask(
                    id: "t\(i)", type: i % 2 == 0 ? "import" : "api_image_import", status: i < 3 ? .success : .pending,
                    owner: i < 5 ? "p1" : "p2", imageID: i == 4 ? image : nil, createdAt: Self.t0.addingTimeInterval(Double(i / 2)))
                try await repo.createTask(task)
                all.append(task)
            }
            var query = TaskListQuery()
            #expect(try await repo.tasks(query).map(\.id) == ["t6", "t5", "t4", "t3", "t2", "t1", "t0"])
            query.owner = "p1"
            query.limit = 2
            #expect(try await repo.tasks(query).map(\.id) == ["t4", "t3"])
            query.marker = "t3"
            #expect(try await repo.tasks(query).map(\.id) == ["t2", "t1"])
            query.marker = "t6"  // another owner's: not a marker this caller may use
            await expectError(.badRequest) { try await repo.tasks(query) }
            var filtered = TaskListQuery()
            filtered.type = "import"
            filtered.status = .pending
            filtered.sortKey = .id
            filtered.ascending = true
            #expect(try await repo.tasks(filtered).map(\.id) == ["t4", "t6"])
            var byImage = TaskListQuery()
            byImage.imageID = image
            #expect(try await repo.tasks(byImage).map(\.id) == ["t4"])
        }
    }
}
