import Foundation
import GRDB
import ImageStoreCore
import Logging

/// A `TaskRepository` in memory (tests, and beside an in-memory image repository).
public actor InMemoryTaskRepository: TaskRepository {
    private var tasks: [String: ImageTask] = [:]

    public init() {}

    public func createTask(_ task: ImageTask) throws {
        guard tasks[task.id] == nil else { throw ImageStoreError.conflict("Task with identifier \(task.id) already exists.") }
        tasks[task.id] = task.normalizedForStorage
    }

    public func task(_ id: String) -> ImageTask? { tasks[id] }

    public func tasks(_ query: TaskListQuery) throws -> [ImageTask] { try query.page(of: Array(tasks.values)) }

    public func updateTask(_ id: String, _ change: @escaping @Sendable (inout ImageTask) -> Void) throws -> ImageTask {
        guard var task = tasks[id] else { throw ImageStoreError.notFound("Task with identifier \(id) not found") }
        change(&task)
        task.id = id
        task.updatedAt = Date()
        task = task.normalizedForStorage
        tasks[id] = task
        return task
    }
}

extension ImageTask: StoredTimestamps {}

/// The `TaskRepository` on SQLite: the images' database, table from the `v4-tasks` migration. Filters run
/// in SQL; order and marker are `TaskListQuery.page`, the same code the in-memory repository runs.
public final class SQLiteTaskRepository: TaskRepository {
    private let access: SQLiteAccess
    private var writer: any DatabaseWriter { access.writer }

    public init(sharing images: SQLiteImageRepository, logger: Logger) {
        self.access = images.access
    }

    public func createTask(_ task: ImageTask) async throws {
        var task = task.normalizedForStorage
        if let expiresAt = task.expiresAt { task.expiresAt = StoredDate.normalized(expiresAt) }
        try await access.write("createTask") { [task] db in
            do {
                try db.execute(
                    sql: """
                        INSERT INTO tasks (id, type, status, input, result, message, owner, image_id, user_id, request_id,
                            expires_at, created_at, updated_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: Self.row(task))
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw ImageStoreError.conflict("Task with identifier \(task.id) already exists.")
            }
        }
    }

    public func task(_ id: String) async throws -> ImageTask? {
        try await access.perform("task") {
            try await self.writer.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM tasks WHERE id = ?", arguments: [id]).map(Self.task(from:))
            }
        }
    }

    public func tasks(_ query: TaskListQuery) async throws -> [ImageTask] {
        try await access.perform("tasks") {
            let rows = try await self.writer.read { db in
                var conditions: [String] = []
                var arguments: StatementArguments = []
                if let owner = query.owner { conditions.append("owner = ?"); arguments += [owner] }
                if let type = query.type { conditions.append("type = ?"); arguments += [type] }
                if let status = query.status { conditions.append("status = ?"); arguments += [status.rawValue] }
                if let image = query.imageID { conditions.append("image_id = ?"); arguments += [image.description] }
                let condition = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
                return try Row.fetchAll(db, sql: "SELECT * FROM tasks" + condition, arguments: arguments).map(Self.task(from:))
            }
            return try query.page(of: rows)
        }
    }

    @discardableResult
    public func updateTask(_ id: String, _ change: @escaping @Sendable (inout ImageTask) -> Void) async throws -> ImageTask {
        try await access.write("updateTask") { db in
            guard let current = try Row.fetchOne(db, sql: "SELECT * FROM tasks WHERE id = ?", arguments: [id]).map(Self.task(from:))
            else { throw ImageStoreError.notFound("Task with identifier \(id) not found") }
            var task = current
            change(&task)
            task.id = id
            task.updatedAt = Date()
            task = task.normalizedForStorage
            if let expiresAt = task.expiresAt { task.expiresAt = StoredDate.normalized(expiresAt) }
            try db.execute(
                sql: """
                    UPDATE tasks SET id = ?, type = ?, status = ?, input = ?, result = ?, message = ?, owner = ?, image_id = ?,
                        user_id = ?, request_id = ?, expires_at = ?, created_at = ?, updated_at = ?
                    WHERE id = ?
                    """,
                arguments: Self.row(task) + [id])
            return task
        }
    }

    private static func row(_ t: ImageTask) -> StatementArguments {
        [
            t.id, t.type, t.status.rawValue, t.input, t.result, t.message, t.owner, t.imageID?.description, t.userID,
            t.requestID, t.expiresAt?.timeIntervalSince1970, t.createdAt.timeIntervalSince1970, t.updatedAt.timeIntervalSince1970,
        ]
    }

    private static func task(from row: Row) -> ImageTask {
        let expires: Double? = row["expires_at"]
        let image: String? = row["image_id"]
        return ImageTask(
            id: row["id"], type: row["type"], status: TaskStatus(rawValue: row["status"]) ?? .failure, input: row["input"],
            result: row["result"], message: row["message"], owner: row["owner"], imageID: image.flatMap { ImageID($0) },
            userID: row["user_id"], requestID: row["request_id"], expiresAt: expires.map(Date.init(timeIntervalSince1970:)),
            createdAt: Date(timeIntervalSince1970: row["created_at"]), updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
    }

}
