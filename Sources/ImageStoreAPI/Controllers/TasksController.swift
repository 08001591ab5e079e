import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreCore
import ImageStorePolicy

/// `/v2/tasks` (Glance's deprecated tasks API, admin-only by `tasks_api_access`) and
/// `GET /v2/images/{image_id}/tasks`, as `glance/api/v2/tasks.py`.
///
/// ImageStore keeps the task records; it does not run Glance's legacy `import` task (a server-side
/// download from `import_from`). Such a task is validated as Glance validates it — a bad or filtered
/// URI is 400 at creation — then recorded as `failure` with a message saying so, which is also what
/// Glance reports for a download that cannot be done.
struct TasksController {
    let repository: any TaskRepository
    let access: ImageAccess

    static let allowedSchemes: Set<String> = ["http", "https"]
    static let notRun =
        "ImageStore does not run legacy import tasks (a download by the server from import_from); upload the data with PUT /v2/images/{image_id}/file."

    func addRoutes(to routes: RouteTable) {
        routes.add(.post, "/v2/tasks", create)
        routes.add(.get, "/v2/tasks", list)
        routes.add(.get, "/v2/tasks/{task_id}", show)
        routes.add(.get, "/v2/images/{image_id}/tasks", imageTasks)
    }

    @Sendable func create(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        try context.authorize("tasks_api_access")
        let body = try await JSONBody.read(request, context: context)
        guard let object = body.objectValue else { throw ImageStoreError.badRequest("Task 'type' is required") }
        for key in ["type", "input"] where object[key] == nil {
            throw ImageStoreError.badRequest("Task '\(key)' is required")
        }
        for key in object.keys.sorted() where !["type", "input"].contains(key) {
            throw ImageStoreError.badRequest("Additional properties are not allowed ('\(key)' was unexpected)")
        }
        guard let type = object["type"]?.stringValue, ["import", "api_image_import", "location_import"].contains(type) else {
            throw ImageStoreError.badRequest("Invalid value for 'type': \(object["type"]!.serialized()) is not one of import, api_image_import, location_import")
        }
        guard let input = object["input"]?.objectValue else {
            throw ImageStoreError.badRequest("Invalid value for 'input': \(object["input"]!.serialized()) is not of type 'object'")
        }
        // Only the legacy import is created through the API; the others are the image import's own records.
        guard type == "import" else { throw ImageStoreError.badRequest("Invalid type value: \(type)") }
        for key in ["import_from", "import_from_format", "image_properties"] where input[key] == nil {
            throw ImageStoreError.badRequest("Input does not contain '\(key)' field")
        }
        try Self.validateImportFrom(input["import_from"]!)
        try context.authorize("add_task")
        let task = ImageTask(
            type: type, status: .failure, input: body["input"]!.serialized(), message: Self.notRun, owner: context.projectID,
            userID: context.userID, requestID: context.requestID, expiresAt: Date().addingTimeInterval(48 * 3600))
        try await repository.createTask(task)
        return .json(Self.json(task), status: .created, headers: [.location: "/v2/tasks/\(task.id)"])
    }

    @Sendable func list(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        try context.authorize("tasks_api_access")
        try context.authorize("get_tasks")
        let parameters = ImageListParameters(rawQuery: request.uri.query)
        var query = TaskListQuery()
        query.owner = context.isAdmin ? nil : context.projectID
        for (key, value) in parameters.pairs {
            switch key {
            case "limit":
                guard let n = Int(value), n >= 0 else { throw ImageStoreError.badRequest("limit param must be an integer") }
                guard n > 0 else { throw ImageStoreError.badRequest("limit param must be positive") }
                query.limit = min(n, ImageListParameters.maxLimit)
            case "marker": query.marker = value
            case "sort_key":
                guard let key = TaskListQuery.SortKey(rawValue: value) else {
                    throw ImageStoreError.badRequest("Invalid sort key: \(value).")
                }
                query.sortKey = key
            case "sort_dir":
                guard value == "asc" || value == "desc" else {
                    throw ImageStoreError.badRequest("Invalid sort direction: \(value)")
                }
                query.ascending = value == "asc"
            case "type":
                guard value == "import" else { throw ImageStoreError.badRequest("Invalid type value: \(value)") }
                query.type = value
            case "status":
                guard let status = TaskStatus(rawValue: value) else {
                    throw ImageStoreError.badRequest("Invalid status value: \(value)")
                }
                query.status = status
            default: break
            }
        }
        let tasks = try await repository.tasks(query)
        var body: [String: JSONValue] = [
            "tasks": .array(tasks.map(Self.stub)), "first": "/v2/tasks", "schema": "/v2/schemas/tasks",
        ]
        if tasks.count == query.limit, let last = tasks.last {
            body["next"] = .string("/v2/tasks?marker=\(last.id)&limit=\(query.limit)")
        }
        return .json(.object(body))
    }

    @Sendable func show(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        try context.authorize("tasks_api_access")
        let id = context.parameters.get("task_id") ?? ""
        guard let task = try await repository.task(id), context.isAdmin || task.owner == context.projectID else {
            throw ImageStoreError.notFound("Task with identifier \(id) not found")
        }
        try context.authorize("get_task")
        return .json(Self.json(task))
    }

    /// The tasks that worked on an image (what its import wrote), newest first.
    @Sendable func imageTasks(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let image = try await access.image(try context.imageID(), for: "get_image", context)
        var query = TaskListQuery()
        query.imageID = image.id
        query.limit = ImageListParameters.maxLimit
        let tasks = try await repository.tasks(query)
        return .json(["tasks": .array(tasks.map(Self.json))])
    }

    /// Glance's `validate_legacy_import_from_uri`: a URI with an allowed scheme (`http`, `https`) and a host,
    /// and no credentials in it.
    static func validateImportFrom(_ value: JSONValue) throws {
        guard let text = value.stringValue, let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(),
            let host = url.host, !host.isEmpty
        else {
            throw ImageStoreError.badRequest("Invalid location: \(value.stringValue ?? value.serialized())")
        }
        guard allowedSchemes.contains(scheme), url.user == nil, url.password == nil else {
            throw ImageStoreError.badRequest("URI for legacy import task does not pass filtering: \(text)")
        }
    }

    static func json(_ task: ImageTask) -> JSONValue {
        guard case .object(var doc) = stub(task) else { return .null }
        doc["input"] = (try? JSONValue.parse(Array(task.input.utf8))) ?? .null
        doc["result"] = task.result.flatMap { try? JSONValue.parse(Array($0.utf8)) } ?? .null
        doc["message"] = .string(task.message)
        if let image = task.imageID { doc["image_id"] = .string(image.description) }
        if let requestID = task.requestID { doc["request_id"] = .string(requestID) }
        if let userID = task.userID { doc["user_id"] = .string(userID) }
        return .object(doc)
    }

    /// The list's form: no input, result or message.
    static func stub(_ task: ImageTask) -> JSONValue {
        var doc: [String: JSONValue] = [
            "id": .string(task.id), "type": .string(task.type), "status": .string(task.status.rawValue),
            "owner": JSONValue(task.owner), "created_at": .string(GlanceTime.format(task.createdAt)),
            "updated_at": .string(GlanceTime.format(task.updatedAt)), "self": .string("/v2/tasks/\(task.id)"),
            "schema": "/v2/schemas/task",
        ]
        if let expires = task.expiresAt { doc["expires_at"] = .string(GlanceTime.format(expires)) }
        return .object(doc)
    }
}
