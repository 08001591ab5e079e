import Foundation
import Logging
import HTTPTypes
import Hummingbird

/// Every route the API serves, registered in one list: the router gets each handler plus a 405
/// (with `Allow`) for the other methods on the same path, as Glance's RejectMethodController does,
/// and the list itself is what the OpenAPI document is checked against.
final class RouteTable: @unchecked Sendable {  // used only while the app is being assembled
    typealias Handler = @Sendable (Request, AppRequestContext) async throws -> Response

    struct Entry: Hashable {
        var method: HTTPRequest.Method
        /// OpenAPI-style template: `/v2/images/{image_id}`.
        var path: String
    }

    private(set) var entries: [Entry] = []
    let router: Router<AppRequestContext>

    init(router: Router<AppRequestContext>) { self.router = router }

    func add(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Handler) {
        entries.append(Entry(method: method, path: path))
        router.on(RouterPath(Self.hummingbirdPath(path)), method: method) { request, context in
            try await handler(request, context)
        }
    }

    /// Adds the 405 answers. Call once, after every route is added.
    func finish() {
        let methods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete]
        let byPath = Dictionary(grouping: entries, by: \.path)
        for (path, routes) in byPath {
            let allowed = routes.map(\.method)
            let allow = allowed.map(\.rawValue).joined(separator: ", ")
            for method in methods where !allowed.contains(method) {
                router.on(RouterPath(Self.hummingbirdPath(path)), method: method) { _, _ -> Response in
                    throw APIError(
                        status: .methodNotAllowed, message: "The method \(method.rawValue) is not allowed for this resource.",
                        headers: [.allow: allow])
                }
            }
        }
    }

    /// `{name}` → `:name`.
    static func hummingbirdPath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? ":" + part.dropFirst().dropLast() : String(part)
        }.joined(separator: "/")
    }
}

extension AppRequestContext {
    /// The `{image_id}` parameter as an `ImageID`; anything that is not a UUID is simply not found.
    func imageID(_ name: String = "image_id") throws -> ImageID {
        guard let text = parameters.get(name), let id = ImageID(text) else {
            throw APIError.notFound("No image found with ID \(parameters.get(name) ?? "")")
        }
        return id
    }
}

import ImageStoreCore
