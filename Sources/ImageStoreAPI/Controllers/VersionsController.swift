import Foundation
import Logging
import Hummingbird
import NIOCore

/// Version discovery: `GET /` (300 Multiple Choices) and `GET /versions` (200), as Glance answers
/// them; python-glanceclient needs an id starting with `v2`, keystoneauth a CURRENT entry.
struct VersionsController {
    /// Glance lists these with enabled_backends set (2.8, 2.10–2.13 need multi-store).
    static let versions: [(id: String, status: String)] = [
        ("v2.17", "CURRENT"), ("v2.16", "SUPPORTED"), ("v2.15", "SUPPORTED"), ("v2.13", "SUPPORTED"),
        ("v2.12", "SUPPORTED"), ("v2.11", "SUPPORTED"), ("v2.10", "SUPPORTED"), ("v2.9", "SUPPORTED"),
        ("v2.8", "SUPPORTED"), ("v2.7", "SUPPORTED"), ("v2.6", "SUPPORTED"), ("v2.5", "SUPPORTED"),
        ("v2.4", "SUPPORTED"), ("v2.3", "SUPPORTED"), ("v2.2", "SUPPORTED"), ("v2.1", "SUPPORTED"),
        ("v2.0", "SUPPORTED"),
    ]

    func addRoutes(to routes: RouteTable) {
        routes.add(.get, "/") { request, context in
            try Self.document(for: request, status: .multipleChoices)
        }
        routes.add(.get, "/versions") { request, context in
            try Self.document(for: request, status: .ok)
        }
    }

    static func document(for request: Request, status: HTTPResponse.Status) throws -> Response {
        let base = baseURL(of: request)
        let list: [JSONValue] = versions.map { version in
            [
                "id": .string(version.id), "status": .string(version.status),
                "links": [["rel": "self", "href": .string("\(base)/v2/")]],
            ]
        }
        let body: JSONValue = ["versions": .array(list)]
        return Response.json(body, status: status)
    }

    /// Scheme and host the client used, so links work behind any bind address.
    static func baseURL(of request: Request) -> String {
        let host = request.head.authority ?? "localhost"
        let scheme = request.headers[HTTPField.Name("X-Forwarded-Proto")!] ?? "http"
        return "\(scheme)://\(host)"
    }
}

extension Response {
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json; charset=UTF-8"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: value.serialized())))
    }
}

import HTTPTypes
