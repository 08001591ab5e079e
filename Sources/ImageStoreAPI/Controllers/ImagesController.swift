import Logging
import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreConfig
import ImageStoreCore
import ImageStorePolicy
import NIOCore

/// Image metadata routes: create, list, show, update (JSON patch), delete, tags, (de)activation.
struct ImagesController {
    let repository: any ImageRepository
    let service: ImageService
    let access: ImageAccess
    let limits: ImageLimits
    /// `[image_format] disk_formats` / `container_formats`.
    let formats: ImageFormats
    /// The stores, when images say where they are (`stores`, the `OpenStack-image-store-ids` header).
    let stores: ImageStores?
    /// `show_image_direct_url` / `show_multiple_locations`; nil when both are off.
    let locations: LocationView?
    /// `enabled_import_methods`, announced on image creation (openstacksdk refuses `--import` without it).
    let importMethods: [String]
    /// Deletes of images staged on another replica go there (the staged file is removed by its owner).
    let forwarder: StageHostForwarder

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
            try ImageAttributes.set(key, fields[key]!, on: &image, creating: true, formats: formats)
        }
        try authorizeCreate(image, visibilityGiven: fields["visibility"] != nil, context)
        try ImageAttributes.checkLimits(image, limits, properties: true)
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
        if let stores { headers[.storeIDs] = stores.all.map(\.id).joined(separator: ",") }
        if !importMethods.isEmpty { headers[.importMethods] = importMethods.joined(separator: ",") }
        return .json(image.glanceJSON(stores: stores, locations: locations), status: .created, headers: headers)
    }

    @Sendable func list(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let parameters = ImageListParameters(rawQuery: request.uri.query)
        var query = try parameters.query()
        // Glance's "may you list at all" check; each image is then checked against get_image.
        try context.authorize("get_images")
        query.viewer = ImageViewer(
            project: context.projectID, isAdmin: context.isAdmin, memberStatus: try parameters.memberStatus(),
            includesOthersCommunity: parameters.hasVisibilityFilter)
        let images = try await repository.list(query)
        var shown: [JSONValue] = []
        for image in images {
            if try access.mayShow(image, context) { shown.append(image.glanceJSON(stores: stores, locations: locations)) }
        }
        var body: [String: JSONValue] = [
            "images": .array(shown),
            "schema": "/v2/schemas/images",
            "first": .string(parameters.link(marker: nil, rawQuery: request.uri.query)),
        ]
        // Glance adds `next` whenever a full page came back (counted before the policy filter; the
        // marker is the page's last row, so paging moves on even past images the filter dropped).
        if images.count == query.limit, let last = images.last, query.limit > 0 {
            body["next"] = .string(parameters.link(marker: last.id, rawQuery: request.uri.query))
        }
        return .json(.object(body))
    }

    @Sendable func show(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let image = try await access.visibleImage(try context.imageID(), context)
        return .json(image.glanceJSON(stores: stores, locations: locations))
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
        let image = try await access.visibleImage(id, context)
        try authorizePatch(operations, on: image, context)
        let (limits, formats) = (self.limits, self.formats)
        let updated = try await repository.update(id, expecting: nil) { image in
            let before = Set(image.properties.keys)
            try JSONPatch.apply(operations, to: &image, formats: formats)
            // Glance checks the property limit only when a property was added, so an image over a
            // lowered limit can still shed properties.
            try ImageAttributes.checkLimits(image, limits, properties: !Set(image.properties.keys).isSubset(of: before))
        }
        return .json(updated.glanceJSON(stores: stores, locations: locations))
    }

    @Sendable func delete(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let image = try await access.image(try context.imageID(), for: "delete_image", context)
        // As Glance (`_delete_image_on_remote`): data staged on another replica is deleted there. Its
        // answer is relayed unless it could not be reached or failed (5xx): then the image is deleted
        // here, leaving the staged file to that replica.
        if image.status == .uploading || image.status == .importing, !StageHostForwarder.wasForwarded(request),
            let host = forwarder.stageHost(of: image)
        {
            do {
                let answer = try await forwarder.forward(request, body: nil, to: host, context: context)
                if answer.status.code < 500 { return answer }
                context.logger.warning("the stage host failed the delete: deleting here", metadata: ["stage_host": .string(host)])
            } catch let error as ImageStoreError where error.code == .dependencyUnavailable {
                context.logger.warning("the stage host is unreachable: deleting here", metadata: ["stage_host": .string(host)])
            }
        }
        try await service.delete(image.id)
        return Response(status: .noContent)
    }

    @Sendable func addTag(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let id = try context.imageID()
        let tag = context.parameters.get("tag") ?? ""
        try ImageAttributes.validateTag(tag)
        _ = try await access.image(id, for: "modify_image", context)
        let limits = self.limits
        try await repository.update(id, expecting: nil) { image in
            image.addTag(tag)
            try ImageAttributes.checkLimits(image, limits, properties: false)
        }
        return Response(status: .noContent)
    }

    @Sendable func deleteTag(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let id = try context.imageID()
        let tag = context.parameters.get("tag") ?? ""
        _ = try await access.image(id, for: "modify_image", context)
        try await repository.update(id, expecting: nil) { image in
            guard let index = image.tags.firstIndex(of: tag) else { throw ImageStoreError.notFound("Tag \(tag) not found.") }
            image.tags.remove(at: index)
        }
        return Response(status: .noContent)
    }

    @Sendable func deactivate(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let image = try await access.image(try context.imageID(), for: "deactivate", context)
        return try await setActivation(image.id, to: .deactivated, verb: "deactivate")
    }

    @Sendable func reactivate(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let image = try await access.image(try context.imageID(), for: "reactivate", context)
        return try await setActivation(image.id, to: .active, verb: "reactivate")
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

    /// Glance's `add_image` with its target (the new image's owner and visibility), then the
    /// visibility rules for a public or community image.
    private func authorizeCreate(_ image: Image, visibilityGiven: Bool, _ context: AppRequestContext) throws {
        let target = PolicyTarget.newImage(owner: image.owner, visibility: visibilityGiven ? image.visibility : nil)
        guard try context.allows("add_image", target) else {
            if image.owner != context.projectID {
                throw ImageStoreError.forbidden("You are not permitted to create images owned by '\(image.owner ?? "None")'.")
            }
            throw ImageStoreError.forbidden("You are not authorized to complete add_image action.")
        }
        if visibilityGiven { try authorizeVisibility(image.visibility, target, context) }
    }

    /// Per operation as Glance's `update_property`: a visibility change needs its own rule, an owner
    /// change needs an admin, and every change needs `modify_image`.
    private func authorizePatch(_ operations: [JSONPatch.Operation], on image: Image, _ context: AppRequestContext) throws {
        for operation in operations {
            if operation.key == "owner" && operation.op != .remove && !context.isAdmin {
                throw ImageStoreError.forbidden("Owner can't be updated by non admin.")
            }
            if operation.key == "visibility", let value = operation.value?.stringValue,
                let visibility = ImageVisibility(rawValue: value)
            {
                try authorizeVisibility(visibility, access.target(image, context), context, image: image)
            }
            try access.authorize("modify_image", on: image, context)
        }
    }

    /// Glance's `_enforce_image_visibility`: public needs `publicize_image`, community `communitize_image`.
    private func authorizeVisibility(
        _ visibility: ImageVisibility, _ target: PolicyTarget, _ context: AppRequestContext, image: Image? = nil
    ) throws {
        let rule: String
        switch visibility {
        case .public: rule = "publicize_image"
        case .community: rule = "communitize_image"
        case .private, .shared: return
        }
        if let image { return try access.authorize(rule, on: image, context) }
        try context.authorize(rule, target)
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
