import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreCore
import ImageStorePolicy

/// `/v2/metadefs/*`: Glance's metadata definitions catalogue (namespaces and their objects, properties,
/// tags and resource type associations), as `glance/api/v2/metadef_*.py`. Reads follow the namespace's
/// visibility (public, or the caller's project; others get 404); writes are admin-only by Glance's default
/// policy (`metadef_admin`); nothing in a protected namespace can be deleted (403).
struct MetadefsController {
    let repository: any MetadefRepository

    static let namespacesPath = "/v2/metadefs/namespaces"

    func addRoutes(to routes: RouteTable) {
        let ns = "\(Self.namespacesPath)/{namespace}"
        routes.add(.get, Self.namespacesPath, listNamespaces)
        routes.add(.post, Self.namespacesPath, createNamespace)
        routes.add(.get, ns, showNamespace)
        routes.add(.put, ns, updateNamespace)
        routes.add(.delete, ns, deleteNamespace)
        for kind in [MetadefKind.object, .property] {
            let path = "\(ns)/\(Self.plural(kind))"
            let item = "\(path)/{\(kind.rawValue)_name}"
            routes.add(.get, path) { try await listItems(kind, $0, $1) }
            routes.add(.post, path) { try await createItem(kind, $0, $1) }
            routes.add(.delete, path) { try await deleteItems(kind, $0, $1) }
            routes.add(.get, item) { try await showItem(kind, $0, $1) }
            routes.add(.put, item) { try await updateItem(kind, $0, $1) }
            routes.add(.delete, item) { try await deleteItem(kind, $0, $1) }
        }
        routes.add(.get, "\(ns)/tags") { try await listItems(.tag, $0, $1) }
        routes.add(.post, "\(ns)/tags", createTags)
        routes.add(.delete, "\(ns)/tags") { try await deleteItems(.tag, $0, $1) }
        routes.add(.get, "\(ns)/tags/{tag_name}") { try await showItem(.tag, $0, $1) }
        routes.add(.post, "\(ns)/tags/{tag_name}", createTag)
        routes.add(.put, "\(ns)/tags/{tag_name}") { try await updateItem(.tag, $0, $1) }
        routes.add(.delete, "\(ns)/tags/{tag_name}") { try await deleteItem(.tag, $0, $1) }
        routes.add(.get, "/v2/metadefs/resource_types", listResourceTypes)
        routes.add(.get, "\(ns)/resource_types", listAssociations)
        routes.add(.post, "\(ns)/resource_types", createAssociation)
        routes.add(.delete, "\(ns)/resource_types/{resource_type}", deleteAssociation)
    }

    // MARK: Namespaces

    @Sendable func listNamespaces(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        try context.authorize("get_metadef_namespaces")
        try context.authorize("list_metadef_resource_types")
        let parameters = ImageListParameters(rawQuery: request.uri.query)
        let query = try NamespaceListQuery(parameters)
        var visible: [(MetadefNamespace, [MetadefAssociation])] = []
        for namespace in try await repository.namespaces() where isVisible(namespace, context) {
            guard try context.allows("get_metadef_namespace", Self.target(namespace)) else { continue }
            if let wanted = query.visibility, namespace.visibility != wanted { continue }
            let associations = (try? await repository.associations(in: namespace.namespace)) ?? []
            if let types = query.resourceTypes, !associations.contains(where: { types.contains($0.resourceType) }) { continue }
            visible.append((namespace, associations))
        }
        visible.sort { query.orders($0.0, before: $1.0) }
        if let marker = query.marker {
            guard let index = visible.firstIndex(where: { $0.0.namespace == marker }) else {
                throw ImageStoreError.notFound("Metadata definition namespace=\(marker) was not found.")
            }
            visible.removeFirst(index + 1)
        }
        let page = visible.prefix(query.limit)
        var body: [String: JSONValue] = [
            "namespaces": .array(page.map { Self.json($0.0, associations: $0.1) }),
            "first": .string(Self.namespacesPath), "schema": "/v2/schemas/metadefs/namespaces",
        ]
        if page.count == query.limit, let last = page.last, visible.count > page.count {
            body["next"] = .string("\(Self.namespacesPath)?marker=\(Self.escaped(last.0.namespace))&limit=\(query.limit)")
        }
        return .json(.object(body))
    }

    @Sendable func createNamespace(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let body = try MetadefBody.object(try await JSONBody.read(request, context: context), "namespace")
        try context.authorize("add_metadef_namespace")
        var document = try MetadefDocument(body, defaultOwner: context.projectID)
        let associations = document.associations
        let objects = document.items.filter { $0.kind == .object }
        let properties = document.items.filter { $0.kind == .property }
        let tags = document.items.filter { $0.kind == .tag }
        if !associations.isEmpty { try context.authorize("add_metadef_resource_type_association") }
        if !objects.isEmpty { try context.authorize("add_metadef_object") }
        if !properties.isEmpty { try context.authorize("add_metadef_property") }
        if !tags.isEmpty { try context.authorize("add_metadef_tag") }
        document.namespace.createdAt = Date()
        document.namespace.updatedAt = document.namespace.createdAt
        try await repository.createNamespace(document.namespace, items: document.items, associations: associations)
        return .json(try await detail(document.namespace.namespace, resourceType: nil), status: .created)
    }

    @Sendable func showNamespace(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let namespace = try await visibleNamespace(context)
        for action in ["list_metadef_resource_types", "get_metadef_objects", "get_metadef_properties", "get_metadef_tags"] {
            try authorize(action, namespace, context)
        }
        let resourceType = ImageListParameters(rawQuery: request.uri.query).pairs.last { $0.key == "resource_type" }?.value
        return .json(try await detail(namespace.namespace, resourceType: resourceType))
    }

    @Sendable func updateNamespace(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let body = try MetadefBody.object(try await JSONBody.read(request, context: context), "namespace")
        let current = try await visibleNamespace(context)
        try authorize("modify_metadef_namespace", current, context)
        // A PUT replaces: what is not given takes its create default (Glance).
        var namespace = try MetadefBody.namespace(body, defaultOwner: context.projectID)
        namespace.createdAt = current.createdAt
        namespace.updatedAt = Date()
        let updated = try await repository.updateNamespace(current.namespace, to: namespace)
        return .json(Self.json(updated, associations: []))
    }

    @Sendable func deleteNamespace(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let namespace = try await visibleNamespace(context)
        try authorize("delete_metadef_namespace", namespace, context)
        guard !namespace.isProtected else {
            throw ImageStoreError.forbidden(
                "Metadata definition namespace \(namespace.namespace) is protected and cannot be deleted.")
        }
        try await repository.deleteNamespace(namespace.namespace)
        return Response(status: .noContent)
    }

    // MARK: Objects, properties and tags

    func listItems(_ kind: MetadefKind, _ request: Request, _ context: AppRequestContext) async throws -> Response {
        let namespace = try await visibleNamespace(context)
        try authorize("get_metadef_\(Self.plural(kind))", namespace, context)
        let items = try await repository.items(kind, in: namespace.namespace)
        switch kind {
        case .object:
            return .json([
                "objects": .array(items.map { Self.json($0, in: namespace.namespace) }), "schema": "v2/schemas/metadefs/objects",
            ])
        case .property:
            // A map by name, as Glance's PropertyTypes.
            var properties: [String: JSONValue] = [:]
            for item in items { properties[item.name] = Self.json(item, in: namespace.namespace) }
            return .json(["properties": .object(properties), "schema": "v2/schemas/metadefs/properties"])
        case .tag:
            return .json(["tags": .array(items.map { Self.json($0, in: namespace.namespace) })])
        }
    }

    func createItem(_ kind: MetadefKind, _ request: Request, _ context: AppRequestContext) async throws -> Response {
        let body = try await JSONBody.read(request, context: context)
        let namespace = try await visibleNamespace(context)
        try authorize("add_metadef_\(kind.rawValue)", namespace, context)
        let item = kind == .object ? try MetadefBody.object(body) : try MetadefBody.property(body, name: nil)
        try await repository.addItems([item], to: namespace.namespace, replacing: nil)
        return .json(Self.json(item, in: namespace.namespace), status: .created)
    }

    func showItem(_ kind: MetadefKind, _ request: Request, _ context: AppRequestContext) async throws -> Response {
        let namespace = try await visibleNamespace(context)
        try authorize("get_metadef_\(kind.rawValue)", namespace, context)
        var name = try Self.itemName(kind, context)
        // `?resource_type=`: the name may carry that association's prefix (Glance strips it).
        if kind == .property, let type = ImageListParameters(rawQuery: request.uri.query).pairs.last(where: { $0.key == "resource_type" })?.value {
            let prefix = try await repository.associations(in: namespace.namespace).first { $0.resourceType == type }?.prefix ?? ""
            guard name.hasPrefix(prefix) else { throw Self.itemNotFound(kind, name, namespace.namespace) }
            name = String(name.dropFirst(prefix.count))
        }
        guard let item = try await repository.item(kind, named: name, in: namespace.namespace) else {
            throw Self.itemNotFound(kind, name, namespace.namespace)
        }
        return .json(Self.json(item, in: namespace.namespace))
    }

    func updateItem(_ kind: MetadefKind, _ request: Request, _ context: AppRequestContext) async throws -> Response {
        let body = try await JSONBody.read(request, context: context)
        let namespace = try await visibleNamespace(context)
        try authorize("modify_metadef_\(kind.rawValue)", namespace, context)
        let name = try Self.itemName(kind, context)
        guard let current = try await repository.item(kind, named: name, in: namespace.namespace) else {
            throw Self.itemNotFound(kind, name, namespace.namespace)
        }
        var item: MetadefItem
        switch kind {
        case .object: item = try MetadefBody.object(body)
        case .property: item = try MetadefBody.property(body, name: name)
        case .tag: item = try MetadefBody.tag(body)
        }
        item.createdAt = current.createdAt
        item.updatedAt = Date()
        let updated = try await repository.updateItem(kind, named: name, in: namespace.namespace, to: item)
        return .json(Self.json(updated, in: namespace.namespace))
    }

    func deleteItem(_ kind: MetadefKind, _ request: Request, _ context: AppRequestContext) async throws -> Response {
        let namespace = try await visibleNamespace(context)
        try authorize(kind == .property ? "remove_metadef_property" : "delete_metadef_\(kind.rawValue)", namespace, context)
        let name = try Self.itemName(kind, context)
        guard try await repository.item(kind, named: name, in: namespace.namespace) != nil else {
            throw Self.itemNotFound(kind, name, namespace.namespace)
        }
        guard !namespace.isProtected else {
            let what = kind == .tag ? "tag" : kind.rawValue
            throw ImageStoreError.forbidden("Metadata definition \(what) \(name) is protected and cannot be deleted.")
        }
        try await repository.removeItems(kind, named: name, in: namespace.namespace)
        return Response(status: .noContent)
    }

    func deleteItems(_ kind: MetadefKind, _ request: Request, _ context: AppRequestContext) async throws -> Response {
        let namespace = try await visibleNamespace(context)
        // Glance guards "delete all objects/properties" with the namespace's delete rule.
        try authorize(kind == .tag ? "delete_metadef_tags" : "delete_metadef_namespace", namespace, context)
        guard !namespace.isProtected else {
            throw ImageStoreError.forbidden(
                "Metadata definition namespace \(namespace.namespace) is protected and cannot be deleted.")
        }
        try await repository.removeItems(kind, named: nil, in: namespace.namespace)
        return Response(status: .noContent)
    }

    /// `POST …/tags`: several tags at once. They replace the namespace's tags unless
    /// `X-Openstack-Append: true`; all or nothing.
    @Sendable func createTags(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let body = try MetadefBody.object(try await JSONBody.read(request, context: context), "tags")
        let namespace = try await visibleNamespace(context)
        try authorize("add_metadef_tags", namespace, context)
        let tags = try MetadefBody.list(body["tags"] ?? .array([]), "tags").map(MetadefBody.tag)
        var seen = Set<String>()
        for tag in tags where !seen.insert(tag.name).inserted {
            throw ImageStoreError.conflict("Duplicate tag \(tag.name) in the request.")
        }
        let append = request.headers[HTTPField.Name("X-Openstack-Append")!]?.lowercased() == "true"
        try await repository.addItems(tags, to: namespace.namespace, replacing: append ? nil : .tag)
        return .json(["tags": .array(tags.map { ["name": .string($0.name)] })], status: .created)
    }

    /// `POST …/tags/{tag_name}`: one tag, no body.
    @Sendable func createTag(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let namespace = try await visibleNamespace(context)
        try authorize("add_metadef_tag", namespace, context)
        let tag = try MetadefBody.tag(["name": .string(try Self.itemName(.tag, context))])
        try await repository.addItems([tag], to: namespace.namespace, replacing: nil)
        return .json(Self.json(tag, in: namespace.namespace), status: .created)
    }

    // MARK: Resource types

    @Sendable func listResourceTypes(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        try context.authorize("list_metadef_resource_types")
        let types = try await repository.resourceTypes()
        return .json([
            "resource_types": .array(
                types.map {
                    [
                        "name": .string($0.name), "created_at": .string(GlanceTime.format($0.createdAt)),
                        "updated_at": .string(GlanceTime.format($0.updatedAt)),
                    ]
                })
        ])
    }

    @Sendable func listAssociations(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let namespace = try await visibleNamespace(context)
        try authorize("get_metadef_resource_type", namespace, context)
        let associations = try await repository.associations(in: namespace.namespace)
        return .json(["resource_type_associations": .array(associations.map(Self.json))])
    }

    @Sendable func createAssociation(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let body = try await JSONBody.read(request, context: context)
        let namespace = try await visibleNamespace(context)
        try authorize("add_metadef_resource_type_association", namespace, context)
        let association = try MetadefBody.association(body)
        try await repository.associate(association, with: namespace.namespace)
        return .json(Self.json(association), status: .created)
    }

    @Sendable func deleteAssociation(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let namespace = try await visibleNamespace(context)
        try authorize("remove_metadef_resource_type_association", namespace, context)
        let type = Self.parameter("resource_type", context)
        guard try await repository.associations(in: namespace.namespace).contains(where: { $0.resourceType == type }) else {
            throw ImageStoreError.notFound(
                "Failed to find resource type association for namespace=\(namespace.namespace) and resource type=\(type)")
        }
        guard !namespace.isProtected else {
            throw ImageStoreError.forbidden(
                "Metadata definition resource-type-association \(type) is protected and cannot be deleted.")
        }
        try await repository.dissociate(type, from: namespace.namespace)
        return Response(status: .noContent)
    }

    // MARK: Access

    /// `{namespace}` as this caller may see it: 404 for a missing namespace and for another project's
    /// private one (never confirming it exists), then `get_metadef_namespace`.
    private func visibleNamespace(_ context: AppRequestContext) async throws -> MetadefNamespace {
        let name = Self.parameter("namespace", context)
        guard let namespace = try await repository.namespace(name), isVisible(namespace, context) else {
            throw MetadefErrors.namespaceNotFound(name)
        }
        try authorize("get_metadef_namespace", namespace, context)
        return namespace
    }

    private func isVisible(_ namespace: MetadefNamespace, _ context: AppRequestContext) -> Bool {
        context.isAdmin || namespace.visibility == "public" || (namespace.owner != nil && namespace.owner == context.projectID)
    }

    /// Glance's `MetadefAPIPolicy`: a refusal is 404 when the caller may not even see the namespace, else 403.
    private func authorize(_ action: String, _ namespace: MetadefNamespace, _ context: AppRequestContext) throws {
        let target = Self.target(namespace)
        guard try !context.allows(action, target) else { return }
        if try action == "get_metadef_namespace" || !context.allows("get_metadef_namespace", target) {
            throw MetadefErrors.namespaceNotFound(namespace.namespace)
        }
        throw ImageStoreError.forbidden("You are not authorized to complete \(action) action.")
    }

    static func target(_ namespace: MetadefNamespace) -> PolicyTarget {
        ["project_id": namespace.owner, "visibility": namespace.visibility]
    }

    private static func itemName(_ kind: MetadefKind, _ context: AppRequestContext) throws -> String {
        parameter("\(kind.rawValue)_name", context)
    }

    /// A path parameter, percent-decoded (names may hold spaces and other reserved characters).
    static func parameter(_ name: String, _ context: AppRequestContext) -> String {
        let raw = context.parameters.get(name) ?? ""
        return raw.removingPercentEncoding ?? raw
    }

    static func itemNotFound(_ kind: MetadefKind, _ name: String, _ namespace: String) -> ImageStoreError {
        .notFound("Metadata definition \(kind.rawValue)=\(name) not found in namespace=\(namespace).")
    }

    static func plural(_ kind: MetadefKind) -> String {
        switch kind {
        case .object: "objects"
        case .property: "properties"
        case .tag: "tags"
        }
    }

    static func escaped(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? text
    }

    // MARK: Documents

    /// A namespace with everything in it (show, create), property names prefixed for `resourceType`.
    private func detail(_ name: String, resourceType: String?) async throws -> JSONValue {
        guard let namespace = try await repository.namespace(name) else { throw MetadefErrors.namespaceNotFound(name) }
        let associations = try await repository.associations(in: name)
        guard case .object(var doc) = Self.json(namespace, associations: associations) else { return .null }
        let prefix = resourceType.flatMap { type in associations.first { $0.resourceType == type }?.prefix } ?? ""
        let objects = try await repository.items(.object, in: name)
        if !objects.isEmpty {
            doc["objects"] = .array(
                objects.map { object in
                    guard !prefix.isEmpty, case .object(var json) = Self.json(object, in: name),
                        let properties = json["properties"]?.objectValue
                    else { return Self.json(object, in: name) }
                    json["properties"] = .object(Dictionary(uniqueKeysWithValues: properties.map { (prefix + $0.key, $0.value) }))
                    return .object(json)
                })
        }
        let properties = try await repository.items(.property, in: name)
        if !properties.isEmpty {
            var map: [String: JSONValue] = [:]
            for property in properties {
                var json = Self.json(property, in: name).objectValue ?? [:]
                json["name"] = nil  // the key says it, as in Glance's namespace document
                map[prefix + property.name] = .object(json)
            }
            doc["properties"] = .object(map)
        }
        let tags = try await repository.items(.tag, in: name)
        if !tags.isEmpty { doc["tags"] = .array(tags.map { ["name": .string($0.name)] }) }
        return .object(doc)
    }

    static func json(_ namespace: MetadefNamespace, associations: [MetadefAssociation]) -> JSONValue {
        var doc: [String: JSONValue] = [
            "namespace": .string(namespace.namespace), "visibility": .string(namespace.visibility),
            "protected": .bool(namespace.isProtected), "created_at": .string(GlanceTime.format(namespace.createdAt)),
            "updated_at": .string(GlanceTime.format(namespace.updatedAt)),
            "self": .string("\(namespacesPath)/\(namespace.namespace)"), "schema": "/v2/schemas/metadefs/namespace",
        ]
        // Unset fields are left out, as Glance's WSME models do.
        if let owner = namespace.owner { doc["owner"] = .string(owner) }
        if let name = namespace.displayName { doc["display_name"] = .string(name) }
        if let description = namespace.description { doc["description"] = .string(description) }
        if !associations.isEmpty { doc["resource_type_associations"] = .array(associations.map(json)) }
        return .object(doc)
    }

    static func json(_ item: MetadefItem, in namespace: String) -> JSONValue {
        var doc = (try? JSONValue.parse(Array(item.document.utf8)))?.objectValue ?? [:]
        doc["name"] = .string(item.name)
        switch item.kind {
        case .object:
            doc["created_at"] = .string(GlanceTime.format(item.createdAt))
            doc["updated_at"] = .string(GlanceTime.format(item.updatedAt))
            doc["self"] = .string("\(namespacesPath)/\(namespace)/objects/\(item.name)")
            doc["schema"] = "v2/schemas/metadefs/object"
        case .tag:
            doc["created_at"] = .string(GlanceTime.format(item.createdAt))
            doc["updated_at"] = .string(GlanceTime.format(item.updatedAt))
        case .property:
            break
        }
        return .object(doc)
    }

    static func json(_ association: MetadefAssociation) -> JSONValue {
        var doc: [String: JSONValue] = [
            "name": .string(association.resourceType), "created_at": .string(GlanceTime.format(association.createdAt)),
            "updated_at": .string(GlanceTime.format(association.updatedAt)),
        ]
        if let prefix = association.prefix { doc["prefix"] = .string(prefix) }
        if let target = association.propertiesTarget { doc["properties_target"] = .string(target) }
        return .object(doc)
    }
}

/// `GET /v2/metadefs/namespaces` parameters, with Glance's 400s.
struct NamespaceListQuery {
    var limit = 25
    var marker: String?
    var sortKey = "created_at"
    var ascending = false
    var visibility: String?
    var resourceTypes: Set<String>?

    init(_ parameters: ImageListParameters) throws {
        for (key, value) in parameters.pairs {
            switch key {
            case "limit":
                guard let n = Int(value), n >= 0 else { throw ImageStoreError.badRequest("limit param must be an integer") }
                limit = min(n, ImageListParameters.maxLimit)
            case "marker": marker = value
            case "sort_key":
                guard ["created_at", "updated_at", "namespace", "display_name"].contains(value) else {
                    throw ImageStoreError.badRequest("Invalid sort key: \(value).")
                }
                sortKey = value
            case "sort_dir":
                guard value == "asc" || value == "desc" else {
                    throw ImageStoreError.badRequest("Invalid sort direction: \(value). It must be one of the following: asc, desc.")
                }
                ascending = value == "asc"
            case "visibility":
                guard value == "public" || value == "private" else {
                    throw ImageStoreError.badRequest("Invalid visibility value: \(value)")
                }
                visibility = value
            case "resource_types":
                resourceTypes = Set(value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            default: break
            }
        }
    }

    func orders(_ a: MetadefNamespace, before b: MetadefNamespace) -> Bool {
        func key(_ n: MetadefNamespace) -> String {
            switch sortKey {
            case "namespace": n.namespace
            case "display_name": n.displayName ?? ""
            case "updated_at": String(format: "%020.6f", n.updatedAt.timeIntervalSince1970)
            default: String(format: "%020.6f", n.createdAt.timeIntervalSince1970)
            }
        }
        let (ka, kb) = (key(a), key(b))
        if ka == kb { return ascending ? a.namespace < b.namespace : a.namespace > b.namespace }
        return ascending ? ka < kb : ka > kb
    }
}
