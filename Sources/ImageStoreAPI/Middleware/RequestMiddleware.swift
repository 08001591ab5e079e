import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreCore
import Logging

/// The outermost middleware: gives each request its id, turns every
/// error into a Glance-style JSON response through the one mapping table, stamps
/// `x-openstack-request-id` on every response, and logs each request exactly once.
struct RequestMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let logger: Logger
    var errors = ErrorTable()
    /// The store image data goes to, named in the log lines of data requests.
    var storeID: String? = nil

    func handle(
        _ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response
    )
        async throws -> Response
    {
        var context = context
        // A request another replica forwarded (import across replicas) keeps that replica's request id:
        // one id for the client's request in both replicas' logs.
        if request.headers[StageHostForwarder.forwardedHeader] != nil, let id = request.headers[.openstackRequestID],
            Self.isRequestID(id)
        {
            context.requestID = id
        }
        context.logger[metadataKey: "request_id"] = .string(context.requestID)
        let about = Self.imageMetadata(request.uri.path, storeID: storeID)
        for (key, value) in about { context.logger[metadataKey: key] = value }
        let start = ContinuousClock.now
        var response: Response
        do {
            // Glance routes no path with a trailing slash: `GET /v2/images/` (an empty image id) is 404,
            // not the image list.
            let path = request.uri.path
            if path.count > 1 && path.hasSuffix("/") { throw APIError.notFound("The resource could not be found.") }
            response = try await next(request, context)
        } catch {
            response = APIError(error, table: errors).response(requestID: context.requestID, logger: context.logger)
        }
        response.headers[.openstackRequestID] = context.requestID
        // The line's metadata is built only when it is written (the default level, warning, drops it).
        guard logger.logLevel <= .info else { return response }
        let ms = (ContinuousClock.now - start).fractionalMilliseconds
        var metadata: Logger.Metadata = ["request_id": .string(context.requestID), "ms": .string(String(format: "%.2f", ms))]
        metadata.merge(about) { old, _ in old }
        metadata.merge(context.logFacts.all) { old, _ in old }
        logger.info("\(request.method) \(request.uri.path) \(response.status.code)", metadata: metadata)
        return response
    }

    /// Whether `id` is a request id as this server makes them (`req-` and a lower-case UUID).
    static func isRequestID(_ id: String) -> Bool {
        id.hasPrefix("req-") && id.count == 40 && UUID(uuidString: String(id.dropFirst(4))) != nil
            && id == id.lowercased()
    }

    /// `image_id` for `/v2/images/{id}…`, and `store` when the request reads or writes the image's data
    /// (`/file`, `/stage`, `/import`): what an operator greps the log for when one image misbehaves.
    static func imageMetadata(_ path: String, storeID: String?) -> Logger.Metadata {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count >= 3, parts[0] == "v2", parts[1] == "images" else { return [:] }
        var metadata: Logger.Metadata = ["image_id": .string(String(parts[2]))]
        if let storeID, parts.count >= 4, ["file", "stage", "import"].contains(parts[3]) { metadata["store"] = .string(storeID) }
        return metadata
    }
}

extension HTTPField.Name {
    static let openstackRequestID = Self("x-openstack-request-id")!
    static let projectID = Self("X-Project-Id")!
    static let tenantID = Self("X-Tenant-Id")!
    static let roles = Self("X-Roles")!
    static let imageSize = Self("x-openstack-image-size")!
    static let contentMD5 = Self("Content-MD5")!
    static let acceptPatch = Self("Accept-Patch")!
    static let importMethods = Self("OpenStack-image-import-methods")!
    static let storeIDs = Self("OpenStack-image-store-ids")!
    /// Multi-store: the store an upload or import goes to.
    static let imageMetaStore = Self("X-Image-Meta-Store")!
}
