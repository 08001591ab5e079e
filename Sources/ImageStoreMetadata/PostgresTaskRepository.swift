import Foundation
import ImageStoreCore
import Logging
import PostgresNIO

/// The `TaskRepository` on PostgreSQL: the images' database and pool, table from the `v4-tasks` migration,
/// so a task written by one replica (an import's) is listed and shown by every other. Filters run in SQL;
/// order and marker are `TaskListQuery.page`, as on SQLite and in memory. `updateTask` reads the row
/// `FOR UPDATE`: concurrent updates of one task, from any replica, apply one after the other.
public final class PostgresTaskRepository: TaskRepository {
    private let database: PostgresImageRepository

    public init(sharing images: PostgresImageRepository) {
        self.database = images
    }

    public func createTask(_ task: ImageTask) async throws {
        try await database.perform("createTask") { connection in
            try await self.insert(task, connection)
        }
    }

    public func task(_ id: String) async throws -> ImageTask? {
        try await database.perform("task") { connection in
            try await self.database.rows(connection, "SELECT \(Self.columns) FROM tasks WHERE id = $1", [.text(id)])
                .first.map(Self.decode)
        }
    }

    public func tasks(_ query: TaskListQuery) async throws -> [ImageTask] {
        let rows = try await database.perform("tasks") { connection in
            var conditions: [String] = []
            var arguments: [SQLValue] = []
            func add(_ column: String, _ value: String) {
                arguments.append(.text(value))
                conditions.append("\(column) = $\(arguments.count)")
            }
            if let owner = query.owner { add("owner", owner) }
            if let type = query.type { add("type", type) }
            if let status = query.status { add("status", status.rawValue) }
            if let image = query.imageID { add("image_id", image.description) }
            let condition = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            return try await self.database.rows(connection, "SELECT \(Self.columns) FROM tasks" + condition, arguments)
                .map(Self.decode)
        }
        return try query.page(of: rows)
    }

    @discardableResult
    public func updateTask(_ id: String, _ change: @escaping @Sendable (inout ImageTask) -> Void) async throws -> ImageTask {
        try await database.perform("updateTask") { connection in
            try await self.database.transaction(connection) { connection in
                guard
                    let current = try await self.database.rows(
                        connection, "SELECT \(Self.columns) FROM tasks WHERE id = $1 FOR UPDATE", [.text(id)]
                    ).first.map(Self.decode)
                else { throw ImageStoreError.notFound("Task with identifier \(id) not found") }
                var task = current
                change(&task)
                task.id = id
                task.updatedAt = Date()
                task = Self.normalized(task)
                let assignments = Self.columns.split(separator: ",").dropFirst().enumerated()
                    .map { "\($0.element.trimmingCharacters(in: .whitespaces)) = $\($0.offset + 2)" }.joined(separator: ", ")
                _ = try await self.database.rows(
                    connection, "UPDATE tasks SET \(assignments) WHERE id = $1", Self.values(task))
                return task
            }
        }
    }

    // MARK: Rows (also used by `db copy`, inside its transaction)

    /// Inserts one task; `.conflict` when its id exists.
    func insert(_ task: ImageTask, _ connection: PostgresConnection) async throws {
        let task = Self.normalized(task)
        let placeholders = (1...Self.columnCount).map { "$\($0)" }.joined(separator: ", ")
        do {
            _ = try await database.rows(connection, "INSERT INTO tasks (\(Self.columns)) VALUES (\(placeholders))", Self.values(task))
        } catch let error as PSQLError where error.sqlState == PostgresMetadefRepository.uniqueViolation {
            throw ImageStoreError.conflict("Task with identifier \(task.id) already exists.")
        }
    }

    private static let columns =
        "id, type, status, input, result, message, owner, image_id, user_id, request_id, expires_at, created_at, updated_at"
    private static let columnCount = 13

    private static func normalized(_ task: ImageTask) -> ImageTask {
        var task = task.normalizedForStorage
        if let expiresAt = task.expiresAt { task.expiresAt = StoredDate.normalized(expiresAt) }
        return task
    }

    /// Values for `columns`, in order.
    private static func values(_ t: ImageTask) -> [SQLValue] {
        func text(_ value: String?) -> SQLValue { value.map(SQLValue.text) ?? .null }
        return [
            .text(t.id), .text(t.type), .text(t.status.rawValue), .text(t.input), text(t.result), .text(t.message), text(t.owner),
            text(t.imageID?.description), text(t.userID), text(t.requestID),
            t.expiresAt.map { .real($0.timeIntervalSince1970) } ?? .null, .real(t.createdAt.timeIntervalSince1970),
            .real(t.updatedAt.timeIntervalSince1970),
        ]
    }

    private static func decode(_ row: PostgresRow) throws -> ImageTask {
        let r = row.makeRandomAccess()
        let expires = try r[10].decode(Double?.self)
        let image = try r[7].decode(String?.self)
        return ImageTask(
            id: try r[0].decode(String.self), type: try r[1].decode(String.self),
            status: TaskStatus(rawValue: try r[2].decode(String.self)) ?? .failure, input: try r[3].decode(String.self),
            result: try r[4].decode(String?.self), message: try r[5].decode(String.self), owner: try r[6].decode(String?.self),
            imageID: image.flatMap { ImageID($0) }, userID: try r[8].decode(String?.self), requestID: try r[9].decode(String?.self),
            expiresAt: expires.map(Date.init(timeIntervalSince1970:)), createdAt: Date(timeIntervalSince1970: try r[11].decode(Double.self)),
            updatedAt: Date(timeIntervalSince1970: try r[12].decode(Double.self)))
    }
}
