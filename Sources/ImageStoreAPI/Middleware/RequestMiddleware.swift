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

    func handle(_ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response)
        async throws -> Response
    {
        var context = context
        context.logger[metadataKey: "request_id"] = .string(context.requestID)
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
        let ms = (ContinuousClock.now - start).fractionalMilliseconds
        logger.info(
            "\(request.method) \(request.uri.path) \(response.status.code)",
            metadata: ["request_id": .string(context.requestID), "ms": .string(String(format: "%.2f", ms))])
        return response
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
