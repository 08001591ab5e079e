import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreCore
import Logging
import NIOCore

/// Interoperable import (`glance/api/v2/images.py import_image`, `image_data.py stage`):
/// `PUT /v2/images/{id}/stage`, `POST /v2/images/{id}/import`, and `DELETE /v2/stores/{store}/{id}`.
struct ImportController {
    let access: ImageAccess
    let service: ImageService
    let importer: ImageImporter
    /// `enabled_import_methods`.
    let methods: [String]
    /// `enabled_backends` is set (Glance's `CONF.enabled_backends`): `stores` in the body is read.
    let multiStore: Bool
    /// The one store images live in.
    let storeID: String
    /// `[import_filtering_opts]` for a web-download URI, its host name resolved (`WebImageFetcher.permits`).
    let permitsURI: @Sendable (String) async -> Bool
    /// `worker_self_reference_url`, recorded as `os_glance_stage_host`.
    let stageHost: String?
    /// Glance-direct imports of images staged on another replica go there.
    let forwarder: StageHostForwarder

    func addRoutes(to routes: RouteTable) {
        routes.add(.put, "/v2/images/{image_id}/stage", stage)
        routes.add(.post, "/v2/images/{image_id}/import", importImage)
        routes.add(.delete, "/v2/stores/{store_id}/{image_id}", deleteFromStore)
    }

    @Sendable func stage(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let id = try context.imageID()
        // Glance routes /stage only while glance-direct is enabled.
        guard methods.contains(ImportMethod.glanceDirect.name) else {
            throw ImageStoreError.notFound("The glance-direct import method is not enabled: there is no staging.")
        }
        guard JSONPatch.mediaType(request.headers[.contentType] ?? "") == "application/octet-stream" else {
            throw ImageStoreError(.unsupportedMediaType, "The Content-Type of image data must be application/octet-stream.")
        }
        let declared = try ImageDataController.declaredSize(request.headers)
        _ = try await access.image(id, for: "modify_image", context)
        _ = try await service.stage(id, body: request.body, declaredSize: declared, stageHost: stageHost)
        context.logger.info("image data staged", metadata: ["image_id": "\(id)"])
        return Response(status: .noContent)
    }

    @Sendable func importImage(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let id = try context.imageID()
        let body = try await JSONBody.read(request, context: context)
        let (method, allStores, allMustSucceed, stores) = try parse(body)
        let image = try await access.visibleImage(id, context)
        try ImageImporter.checkState(image, for: method)
        // As Glance: copy-image is its own rule (admin by default); the others need the right to modify.
        try access.authorize(method == .copyImage ? "copy_image" : "modify_image", on: image, context)
        if let held = image.properties[ImportProperty.task], !held.isEmpty {
            throw ImageStoreError.conflict("New operation on image '\(id)' is not permitted as prior operation is still in progress")
        }
        let known = service.stores
        var targets: [String] = []
        if multiStore {
            // As Glance: the body's `stores`, else the X-Image-Meta-Store header, else the default store.
            let header = request.headers[.imageMetaStore]
            if allStores && (stores != nil || header != nil) {
                throw ImageStoreError.badRequest(
                    "All_stores parameter can't be used with x-image-meta-store header or stores parameter")
            }
            let named = stores ?? header.map { [$0] }
            for store in named ?? [] where known.store(store) == nil {
                throw ImageStoreError.conflict("Unknown scheme '\(store)' found in URI")
            }
            if allStores {
                targets = known.all.map(\.id)
            } else {
                targets = named ?? [storeID]
            }
            var unique: [String] = []
            for target in targets where !unique.contains(target) { unique.append(target) }
            targets = unique
        }
        if method == .copyImage {
            let present = known.locations(of: image)
            // One store (no enabled_backends): a named store already holds it (Glance's 400).
            if !multiStore && !allStores { throw ImageStoreError.badRequest("Image is already present at store '\(storeID)'") }
            if !allStores, let there = targets.first(where: { present.contains($0) }) {
                throw ImageStoreError.badRequest("Image is already present at store '\(there)'")
            }
            // all_stores copies to every store without the image (Glance drops the ones holding it).
            targets.removeAll { present.contains($0) }
            if targets.isEmpty {
                // Nothing to copy: Glance answers 202 and does nothing. Said on the image, as an import that
                // ended would: nothing left to copy, nothing failed (clients wait for
                // `os_glance_importing_to_stores` to be empty).
                try await service.repository.update(id, expecting: [.active]) { image in
                    image.properties[ImportProperty.importingToStores] = ""
                    if image.properties[ImportProperty.failedImport] == nil { image.properties[ImportProperty.failedImport] = "" }
                }
                return Response(status: .accepted)
            }
        }
        if !allMustSucceed && !multiStore {
            throw ImageStoreError.badRequest("All_stores_must_succeed can only be set with enabled_backends")
        }
        if case .webDownload(let uri) = method, !(await permitsURI(uri)) {
            throw ImageStoreError.badRequest("URI for web-download does not pass filtering: \(uri)")
        }
        // As Glance: the image was staged on another replica, whose staging directory holds the data.
        if method == .glanceDirect, let host = forwarder.stageHost(of: image) {
            guard !StageHostForwarder.wasForwarded(request) else {
                throw ImageStoreError.conflict(
                    "Image \(id) is staged on \(host), but this request was already forwarded to this replica "
                        + "(\(stageHost ?? "no worker_self_reference_url")): not forwarding it again")
            }
            return try await forwarder.forward(request, body: ByteBuffer(string: body.serialized()), to: host, context: context)
        }
        let input: JSONValue = [
            "image_id": .string(id.description), "import_req": body,
            "backend": multiStore ? .array(targets.map { .string($0) }) : [.null],
        ]
        _ = try await importer.start(
            id, method: method, input: input.serialized(), owner: context.projectID, userID: context.userID,
            requestID: context.requestID, stores: targets, allMustSucceed: allMustSucceed)
        return Response(status: .accepted)
    }

    /// Glance's request deserializer (`_validate_import_body`) and schema checks: each a 400.
    private func parse(_ body: JSONValue) throws -> (ImportMethod, allStores: Bool, allMustSucceed: Bool, stores: [String]?) {
        guard let object = body.objectValue else { throw ImageStoreError.badRequest("The request body must be a JSON object.") }
        guard let methodValue = object["method"] else { throw ImageStoreError.badRequest("Import request requires a 'method' field.") }
        guard let methodObject = methodValue.objectValue else {
            throw ImageStoreError.badRequest("Invalid value for 'method': it must be an object")
        }
        guard let nameValue = methodObject["name"] else { throw ImageStoreError.badRequest("Import request requires a 'name' field.") }
        guard let name = nameValue.stringValue, methods.contains(name) else {
            throw ImageStoreError.badRequest("Unknown import method name '\(nameValue.stringValue ?? nameValue.serialized())'.")
        }
        var allMustSucceed = true
        if let value = object["all_stores_must_succeed"] {
            guard let flag = value.boolValue else {
                throw ImageStoreError.badRequest("'all_stores_must_succeed' must be boolean value only")
            }
            allMustSucceed = flag
        }
        var allStores = false
        if let value = object["all_stores"] {
            guard let flag = value.boolValue else { throw ImageStoreError.badRequest("'all_stores' must be boolean value only") }
            allStores = flag
        }
        var stores: [String]?
        if let value = object["stores"], value != .null {
            guard let list = value.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                throw ImageStoreError.badRequest("Invalid value for 'stores': it must be a list of store ids")
            }
            stores = list.compactMap(\.stringValue)
        }
        let method: ImportMethod
        switch name {
        case ImportMethod.glanceDirect.name: method = .glanceDirect
        case ImportMethod.copyImage.name: method = .copyImage
        default:
            guard let uri = methodObject["uri"]?.stringValue, !uri.isEmpty else {
                throw ImageStoreError.badRequest("URI for web-download does not pass filtering: \(methodObject["uri"]?.serialized() ?? "None")")
            }
            method = .webDownload(uri: uri)
        }
        return (method, allStores, allMustSucceed, stores)
    }

    /// `DELETE /v2/stores/{store_id}/{image_id}` (`images.py delete_from_store`): only with
    /// `enabled_backends` (404 otherwise), an unknown store is 409, the image's last copy is refused
    /// (403: delete the image instead), a store whose guard refuses writes is 410.
    @Sendable func deleteFromStore(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        guard multiStore else { throw ImageStoreError.notFound("The resource could not be found.") }
        let store = context.parameters.get("store_id") ?? ""
        guard service.stores.store(store) != nil else {
            throw ImageStoreError.conflict("The selected store \(store) is not available on this node.")
        }
        let id = try context.imageID()
        let image: Image
        do {
            image = try await access.visibleImage(id, context)
        } catch let error as ImageStoreError where error.code == .notFound {
            throw ImageStoreError.notFound("Failed to find image \(id)")
        }
        try access.authorize("get_image_location", on: image, context)
        try access.authorize("delete_image_location", on: image, context)
        try await service.removeCopy(id, from: store)
        context.logger.info("image copy removed", metadata: ["image_id": "\(id)", "store": "\(store)"])
        return Response(status: .noContent)
    }
}
