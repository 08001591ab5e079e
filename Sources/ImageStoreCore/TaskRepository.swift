import Foundation

/// Glance's task statuses.
public enum TaskStatus: String, Sendable, CaseIterable {
    case pending, processing, success, failure
}

/// A Glance task (`/v2/tasks`): an asynchronous operation on images (legacy `import`, and the record an
/// image import writes, listed by `GET /v2/images/{id}/tasks`).
public struct ImageTask: Sendable, Equatable {
    public var id: String
    public var type: String
    public var status: TaskStatus
    /// The request's `input`, as JSON text.
    public var input: String
    /// The outcome (`{"image_id": …}`), as JSON text.
    public var result: String?
    public var message: String
    public var owner: String?
    public var imageID: ImageID?
    public var userID: String?
    public var requestID: String?
    public var expiresAt: Date?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String = UUID().uuidString.lowercased(), type: String, status: TaskStatus = .pending, input: String = "{}",
        result: String? = nil, message: String = "", owner: String? = nil, imageID: ImageID? = nil, userID: String? = nil,
        requestID: String? = nil, expiresAt: Date? = nil, createdAt: Date = Date(), updatedAt: Date? = nil
    ) {
        self.id = id
        self.type = type
        self.status = status
        self.input = input
        self.result = result
        self.message = message
        self.owner = owner
        self.imageID = imageID
        self.userID = userID
        self.requestID = requestID
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }
}

/// A `GET /v2/tasks` query: filters, then Glance's order (`sort_key`, `sort_dir`, id breaking ties),
/// after `marker`, at most `limit`.
public struct TaskListQuery: Sendable, Equatable {
    public enum SortKey: String, Sendable, CaseIterable {
        case createdAt = "created_at", updatedAt = "updated_at", id, type, status
    }

    /// nil: every owner (admin).
    public var owner: String?
    public var type: String?
    public var status: TaskStatus?
    public var imageID: ImageID?
    public var sortKey: SortKey = .createdAt
    public var ascending = false
    public var limit = 25
    public var marker: String?

    public init() {}

    public func matches(_ task: ImageTask) -> Bool {
        if let owner, task.owner != owner { return false }
        if let type, task.type != type { return false }
        if let status, task.status != status { return false }
        if let imageID, task.imageID != imageID { return false }
        return true
    }

    /// Whether `a` comes before `b` in this query's order.
    public func orders(_ a: ImageTask, before b: ImageTask) -> Bool {
        func compare<T: Comparable>(_ x: T, _ y: T) -> Bool? { x == y ? nil : (ascending ? x < y : x > y) }
        let decided: Bool?
        switch sortKey {
        case .createdAt: decided = compare(a.createdAt, b.createdAt)
        case .updatedAt: decided = compare(a.updatedAt, b.updatedAt)
        case .id: decided = nil
        case .type: decided = compare(a.type, b.type)
        case .status: decided = compare(a.status.rawValue, b.status.rawValue)
        }
        return decided ?? (ascending ? a.id < b.id : a.id > b.id)
    }

    /// The page of `tasks`: filtered, sorted, after the marker (which must be one of the matching tasks: `.badRequest`).
    public func page(of tasks: [ImageTask]) throws -> [ImageTask] {
        let sorted = tasks.filter(matches).sorted { orders($0, before: $1) }
        var start = 0
        if let marker {
            guard let index = sorted.firstIndex(where: { $0.id == marker }) else {
                throw ImageStoreError.badRequest("Invalid marker. Task \(marker) could not be found.")
            }
            start = index + 1
        }
        return Array(sorted[start...].prefix(max(0, limit)))
    }
}

/// Where tasks live (SQLite beside the images; in memory for tests). Every implementation passes the
/// conformance suite `TaskRepositoryConformanceTests`.
public protocol TaskRepository: Sendable {
    /// `.conflict` when the id exists.
    func createTask(_ task: ImageTask) async throws
    func task(_ id: String) async throws -> ImageTask?
    func tasks(_ query: TaskListQuery) async throws -> [ImageTask]
    /// Atomic read-modify-write with a new `updatedAt`; `.notFound` when missing.
    @discardableResult
    func updateTask(_ id: String, _ change: @escaping @Sendable (inout ImageTask) -> Void) async throws -> ImageTask
}
