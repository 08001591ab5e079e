import Foundation
import Logging
import Hummingbird
import ImageStoreCore
import ImageStoreGuard

/// `GET /v2/info/import` and `/v2/info/stores[/detail]` (multi-store discovery).
struct InfoController {
    /// `enabled_import_methods`.
    let importMethods: [String]
    /// Configured backends (`enabled_backends`); empty means multi-store is off (404, as Glance).
    let backends: [(id: String, description: String?)]
    let defaultBackend: String
    let datadir: String
    let chunkSize: Int
    /// The mount guard's latest state (no I/O), when the store is guarded.
    let guardState: @Sendable () -> GuardState?

    func addRoutes(to routes: RouteTable) {
        let importMethods = self.importMethods
        routes.add(.get, "/v2/info/import") { _, _ in
            .json([
                "import-methods": [
                    "description": "Import methods available.", "type": "array",
                    "value": .array(importMethods.map { .string($0) }),
                ]
            ])
        }
        routes.add(.get, "/v2/info/stores") { _, _ in try await storesDocument(detail: false) }
        routes.add(.get, "/v2/info/stores/detail") { _, context in
            try context.authorize("stores_info_detail")
            return try await storesDocument(detail: true)
        }
    }

    private func storesDocument(detail: Bool) async throws -> Response {
        // A guarded store is listed even without enabled_backends, so operators can read its state.
        let listed = backends.isEmpty && guardState() != nil ? [(id: defaultBackend, description: String?.none)] : backends
        guard !listed.isEmpty else { throw ImageStoreError.notFound("Multi backend is not supported at this site.") }
        var stores: [JSONValue] = []
        for backend in listed {
            var entry: [String: JSONValue] = ["id": .string(backend.id)]
            if let description = backend.description { entry["description"] = .string(description) }
            if backend.id == defaultBackend { entry["default"] = "true" }
            if detail {
                entry["type"] = "file"
                entry["weight"] = 0
                entry["properties"] = [
                    "data_dir": .string(datadir), "chunk_size": .int(Int64(chunkSize)), "thin_provisioning": false,
                ]
                if backend.id == defaultBackend, let state = guardState() { entry["guard"] = Self.json(state) }
            }
            stores.append(.object(entry))
        }
        return .json(["stores": .array(stores)])
    }

    /// The guard's state for operators: enabled or why not, when it last checked, each check, free space.
    static func json(_ state: GuardState) -> JSONValue {
        var doc: [String: JSONValue] = [
            "state": state.enabled ? "enabled" : "disabled",
            "reason": JSONValue(state.reason),
            "last_check": JSONValue(state.lastCheck.map { GlanceTime.format($0) }),
            "free_bytes": JSONValue(state.freeBytes),
            "total_bytes": JSONValue(state.totalBytes),
            // Store calls past their deadline still holding one of the store's bounded threads.
            "hung_calls": .int(Int64(state.hungCalls)),
        ]
        doc["checks"] = .array(
            state.orderedResults.map { result in
                ["check": .string(result.check.rawValue), "result": .string(result.verdict.rawValue), "detail": .string(result.detail)]
            })
        return .object(doc)
    }
}
