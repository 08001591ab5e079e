import Foundation
import Logging
import Hummingbird
import ImageStoreCore

/// `GET /v2/info/import` and `/v2/info/stores[/detail]` (multi-store discovery).
struct InfoController {
    /// Configured backends (`enabled_backends`); empty means multi-store is off (404, as Glance).
    let backends: [(id: String, description: String?)]
    let defaultBackend: String
    let datadir: String
    let store: any ImageDataStore

    func addRoutes(to routes: RouteTable) {
        routes.add(.get, "/v2/info/import") { _, _ in
            .json([
                "import-methods": ["description": "Import methods available.", "type": "array", "value": []]
            ])
        }
        routes.add(.get, "/v2/info/stores") { _, _ in try await storesDocument(detail: false) }
        routes.add(.get, "/v2/info/stores/detail") { _, _ in try await storesDocument(detail: true) }
    }

    private func storesDocument(detail: Bool) async throws -> Response {
        guard !backends.isEmpty else { throw ImageStoreError.notFound("Multi backend is not supported at this site.") }
        var stores: [JSONValue] = []
        for backend in backends {
            var entry: [String: JSONValue] = ["id": .string(backend.id)]
            if let description = backend.description { entry["description"] = .string(description) }
            if backend.id == defaultBackend { entry["default"] = "true" }
            if detail {
                entry["type"] = "file"
                entry["weight"] = 0
                entry["properties"] = ["data_dir": .string(datadir), "chunk_size": 65536, "thin_provisioning": false]
            }
            stores.append(.object(entry))
        }
        return .json(["stores": .array(stores)])
    }
}
