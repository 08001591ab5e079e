import Foundation
import Logging
import Hummingbird
import ImageStoreCore
import ImageStoreGuard

/// `GET /v2/info/import` and `/v2/info/stores[/detail]` (multi-store discovery).
struct InfoController {
    /// `enabled_import_methods`.
    let importMethods: [String]
    /// One configured store as the detail shows it: the values in use.
    struct StoreInfo: Sendable {
        var id: String
        var description: String?
        var weight: Int
        var datadir: String
        var chunkSize: Int
        /// The store's mount guard's latest state (no I/O), when the store is guarded.
        var guardState: @Sendable () -> GuardState?
    }

    /// Every store (`enabled_backends`, or the legacy single one), in configuration order.
    let stores: [StoreInfo]
    /// `enabled_backends` is set; otherwise the stores are listed only when guarded (404, as Glance).
    let multiStore: Bool
    let defaultBackend: String

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
        // A guarded store is listed even without enabled_backends, so operators can read its state (the
        // legacy store's description is not shown there, as before).
        let listed: [StoreInfo]
        if multiStore {
            listed = stores
        } else {
            listed = stores.filter { $0.id == defaultBackend && $0.guardState() != nil }.map {
                var store = $0; store.description = nil; return store
            }
        }
        guard !listed.isEmpty else { throw ImageStoreError.notFound("Multi backend is not supported at this site.") }
        var documents: [JSONValue] = []
        for store in listed {
            var entry: [String: JSONValue] = ["id": .string(store.id)]
            if let description = store.description { entry["description"] = .string(description) }
            if store.id == defaultBackend { entry["default"] = "true" }
            if detail {
                entry["type"] = "file"
                entry["weight"] = .int(Int64(store.weight))
                entry["properties"] = [
                    "data_dir": .string(store.datadir), "chunk_size": .int(Int64(store.chunkSize)), "thin_provisioning": false,
                ]
                if let state = store.guardState() { entry["guard"] = Self.json(state) }
            }
            documents.append(.object(entry))
        }
        return .json(["stores": .array(documents)])
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
