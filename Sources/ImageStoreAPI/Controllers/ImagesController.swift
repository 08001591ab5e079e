import Logging
import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreCore
import NIOCore

/// Image metadata routes: create, list, show, update (JSON patch), delete, tags, (de)activation.
struct ImagesController {
    let repository: any ImageRepository
    let service: ImageService
    /// The backend id shown as `stores` when multi-store is configured.
    let storeID: String?

    func addRoutes(to routes: RouteTable) {
        routes.add(.post, "/v2/images", create)
        routes.add(.get, "/v2/images", list)
        routes.add(.get, "/v2/images/{image_id}", show)
        routes.add(.patch, "/v2/images/{image_id}", update)
        routes.add(.delete, "/v2/images/{image_id}", delete)
        routes.add(.put, "/v2/images/{image_id}/tags/{tag}", addTag)
        routes.add(.delete, "/v2/images/{image_id}/tags/{tag}", deleteTag)
        routes.add(.post, "/v2/images/{image_id}/actions/deactivate", deactivate)
        routes.add(.post, "/v2/images/{image_id}/actions/reactivate", reactivate)
    }

    // MARK: Handlers

    @Sendable func create(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let body = try await JSONBody.read(request, context: context)
        guard let fields = body.objectValue else {
            throw ImageStoreError.badRequest("The request body must be a JSON object.")
        }
        var image = Image(owner: context.projectID)
        for key in fields.keys.sorted() {
            try ImageAttributes.set(key, fields[key]!, on: &image, creating: true)
        }
        let now = Date()
        image.createdAt = now
        image.updatedAt = now
        image.status = .queued
        do {
            try await repository.create(image)
        } catch let error as ImageStoreError where error.code == .conflict {
            throw ImageStoreError.conflict("Image with identifier \(image.id) already exists!")
        }
        var headers: HTTPFields = [.location: "\(VersionsController.baseURL(of: request))/v2/images/\(image.id)"]
        if let storeID { headers[.storeIDs] = storeID }
        return .json(image.glanceJSON(storeID: storeID), status: .created, headers: headers)
    }

    @Sendable func list(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let parameters = ImageListParameters(rawQuery: request.uri.query)
        let query = try parameters.query()
        let images = try await repository.list(query)
        var body: [String: JSONValue] = [
            "images": .array(images.map { $0.glanceJSON(storeID: storeID) }),
            "schema": "/v2/schemas/images",
            "first": .string(parameters.link(marker: nil, rawQuery: request.uri.query)),
        ]
        // Glance adds `next` whenever a full page came back.
        if images.count == query.limit, let last = images.last, query.limit > 0 {
            body["next"] = .string(parameters.link(marker: last.id, rawQuery: request.uri.query))
        }
        return .json(.object(body))
    }

    @Sendable func show(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let image = try await existingImage(context)
        return .json(image.glanceJSON(storeID: storeID))
    }

    @Sendable func update(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let id = try context.imageID()
        let mediaType = request.headers[.contentType].map(JSONPatch.mediaType) ?? ""
        guard let format = JSONPatch.Format(mediaType: mediaType) else {
            throw APIError(
                status: .unsupportedMediaType,
                message: "Unsupported Content-Type: use application/openstack-images-v2.1-json-patch.",
                headers: [.acceptPatch: JSONPatch.acceptPatch])
        }
        let operations = try JSONPatch.operations(from: try await JSONBody.read(request, context: context), format: format)
        let updated = try await repository.update(id, expecting: nil) { image in
            try JSONPatch.apply(operations, to: &image)
        }
        return .json(updated.glanceJSON(storeID: storeID))
    }

    @Sendable func delete(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        try await service.delete(try context.imageID())
        return Response(status: .noContent)
    }

    @Sendable func addTag(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let id = try context.imageID()
        let tag = context.parameters.get("tag") ?? ""
        try ImageAttributes.validateTag(tag)
        try await repository.update(id, expecting: nil) { $0.addTag(tag) }
        return Response(status: .noContent)
    }

    @Sendable func deleteTag(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let id = try context.imageID()
        let tag = context.parameters.get("tag") ?? ""
        try await repository.update(id, expecting: nil) { image in
            guard let index = image.tags.firstIndex(of: tag) else { throw ImageStoreError.notFound("Tag \(tag) not found.") }
            image.tags.remove(at: index)
        }
        return Response(status: .noContent)
    }

    @Sendable func deactivate(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        try await setActivation(try context.imageID(), to: .deactivated, verb: "deactivate")
    }

    @Sendable func reactivate(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        try await setActivation(try context.imageID(), to: .active, verb: "reactivate")
    }

    // MARK: Helpers

    /// active ⇄ deactivated; repeating the current state is a no-op; anything else is 403.
    private func setActivation(_ id: ImageID, to target: ImageStatus, verb: String) async throws -> Response {
        try await repository.update(id, expecting: nil) { image in
            guard image.status == .active || image.status == .deactivated else {
                throw ImageStoreError.forbidden("Not allowed to \(verb) image in status '\(image.status.rawValue)'")
            }
            image.status = target
        }
        return Response(status: .noContent)
    }

    private func existingImage(_ context: AppRequestContext) async throws -> Image {
        let id = try context.imageID()
        guard let image = try await repository.get(id) else { throw ImageStoreError.notFound("No image found with ID \(id)") }
        return image
    }
}

/// Reading small JSON bodies: at most the context's limit (413 beyond, before reading it whole), 400 if malformed.
enum JSONBody {
    static func read(_ request: Request, context: AppRequestContext) async throws -> JSONValue {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > context.maxUploadSize {
            throw ImageStoreError(.payloadTooLarge, "Request body is too large: the limit is \(context.maxUploadSize) bytes.")
        }
        var buffer = ByteBuffer()
        for try await chunk in request.body {
            guard buffer.readableBytes + chunk.readableBytes <= context.maxUploadSize else {
                throw ImageStoreError(.payloadTooLarge, "Request body is too large: the limit is \(context.maxUploadSize) bytes.")
            }
            var chunk = chunk
            buffer.writeBuffer(&chunk)
        }
        guard buffer.readableBytes > 0 else { throw ImageStoreError.badRequest("A JSON request body is required.") }
        do {
            return try JSONValue.parse(buffer.readableBytesView)
        } catch {
            throw ImageStoreError.badRequest("Malformed JSON in request body.")
        }
    }
}
