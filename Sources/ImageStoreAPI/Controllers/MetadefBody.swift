import Foundation
import ImageStoreCore

/// Request bodies of the metadefs API, checked as Glance's schemas and WSME models check them: wrong
/// types, missing mandatory fields and unknown fields are 400 with the field named. Read-only fields a
/// client echoes back (`created_at`, `self`, `schema`…) are ignored.
enum MetadefBody {
    static let readOnly: Set<String> = ["created_at", "updated_at", "self", "schema"]
    static let propertyTypes: Set<String> = ["array", "boolean", "integer", "number", "object", "string"]

    static func object(_ value: JSONValue, _ what: String) throws -> [String: JSONValue] {
        guard let object = value.objectValue else { throw ImageStoreError.badRequest("Invalid \(what): a JSON object is required.") }
        return object
    }

    static func list(_ value: JSONValue, _ what: String) throws -> [JSONValue] {
        guard let list = value.arrayValue else { throw ImageStoreError.badRequest("Invalid \(what): a JSON array is required.") }
        return list
    }

    /// The namespace fields of a create or update body; what is missing takes Glance's defaults
    /// (private, not protected, owned by the caller's project).
    static func namespace(_ body: [String: JSONValue], defaultOwner: String?) throws -> MetadefNamespace {
        try allowOnly(
            body,
            [
                "namespace", "display_name", "description", "visibility", "protected", "owner", "resource_type_associations",
                "properties", "objects", "tags",
            ], "namespace")
        let name = try requiredString(body, "namespace", maxLength: 80)
        let visibility = try string(body, "visibility") ?? "private"
        guard visibility == "public" || visibility == "private" else {
            throw ImageStoreError.badRequest("Invalid visibility value: \(visibility). It must be one of: public, private.")
        }
        return MetadefNamespace(
            namespace: name, displayName: try string(body, "display_name", maxLength: 80),
            description: try string(body, "description", maxLength: 500), visibility: visibility,
            isProtected: try bool(body, "protected") ?? false, owner: try string(body, "owner", maxLength: 255) ?? defaultOwner)
    }

    static func association(_ value: JSONValue) throws -> MetadefAssociation {
        let body = try object(value, "resource type association")
        try allowOnly(body, ["name", "prefix", "properties_target"], "resource type association")
        return MetadefAssociation(
            resourceType: try requiredString(body, "name", maxLength: 80), prefix: try string(body, "prefix", maxLength: 80),
            propertiesTarget: try string(body, "properties_target", maxLength: 80))
    }

    static func tag(_ value: JSONValue) throws -> MetadefItem {
        let body = try object(value, "tag")
        try allowOnly(body, ["name"], "tag")
        return MetadefItem(kind: .tag, name: try requiredString(body, "name", maxLength: 255))
    }

    static func object(_ value: JSONValue) throws -> MetadefItem {
        let body = try object(value, "object")
        try allowOnly(body, ["name", "description", "required", "properties"], "object")
        let name = try requiredString(body, "name", maxLength: 80)
        var document: [String: JSONValue] = [:]
        if let description = try string(body, "description") { document["description"] = .string(description) }
        if let required = body["required"], !required.isNull { document["required"] = try stringArray(required, "required") }
        if let properties = body["properties"], !properties.isNull {
            var checked: [String: JSONValue] = [:]
            for (key, property) in try object(properties, "properties") {
                checked[key] = try propertyDocument(try object(property, "property \(key)"))
            }
            document["properties"] = .object(checked)
        }
        return MetadefItem(kind: .object, name: name, document: JSONValue.object(document).serialized())
    }

    /// A property; its name from the body, else `name` (the URL's, on update).
    static func property(_ value: JSONValue, name: String?) throws -> MetadefItem {
        let body = try object(value, "property")
        let propertyName = try string(body, "name", maxLength: 255) ?? name
        guard let propertyName, !propertyName.isEmpty else { throw ImageStoreError.badRequest("Invalid property: 'name' is required.") }
        var fields = body
        fields["name"] = nil
        return MetadefItem(kind: .property, name: propertyName, document: try propertyDocument(fields).serialized())
    }

    /// Glance's `PropertyType`: `title` and `type` are mandatory; the rest is a JSON-schema fragment.
    static func propertyDocument(_ body: [String: JSONValue]) throws -> JSONValue {
        try allowOnly(
            body,
            [
                "name", "type", "title", "description", "operators", "default", "readonly", "minimum", "maximum", "enum",
                "pattern", "minLength", "maxLength", "confidential", "items", "required", "uniqueItems", "minItems", "maxItems", "additionalItems",
            ],
            "property")
        let type = try requiredString(body, "type")
        guard propertyTypes.contains(type) else {
            throw ImageStoreError.badRequest(
                "Invalid property type \(type): it must be one of \(propertyTypes.sorted().joined(separator: ", ")).")
        }
        _ = try requiredString(body, "title")
        for key in ["description", "pattern"] { _ = try string(body, key) }
        for key in ["readonly", "confidential", "uniqueItems", "additionalItems"] { _ = try bool(body, key) }
        for key in ["minLength", "maxLength", "minItems", "maxItems"] {
            if let v = body[key], !v.isNull, (v.intValue ?? -1) < 0 {
                throw ImageStoreError.badRequest("Invalid property: '\(key)' must be a non-negative integer.")
            }
        }
        for key in ["minimum", "maximum"] {
            if let v = body[key], !v.isNull {
                switch v {
                case .int, .double: break
                default: throw ImageStoreError.badRequest("Invalid property: '\(key)' must be a number.")
                }
            }
        }
        for key in ["operators", "enum"] { if let v = body[key], !v.isNull { _ = try list(v, key) } }
        if let items = body["items"], !items.isNull { _ = try object(items, "items") }
        var document = body
        document["name"] = nil
        return .object(document.filter { !$0.value.isNull })
    }

    // MARK: Field helpers

    static func allowOnly(_ body: [String: JSONValue], _ allowed: Set<String>, _ what: String) throws {
        for key in body.keys.sorted() where !allowed.contains(key) && !readOnly.contains(key) {
            throw ImageStoreError.badRequest("Invalid \(what): additional property '\(key)' is not allowed.")
        }
    }

    static func string(_ body: [String: JSONValue], _ key: String, maxLength: Int? = nil) throws -> String? {
        guard let value = body[key], !value.isNull else { return nil }
        guard let text = value.stringValue else {
            throw ImageStoreError.badRequest("Invalid value for '\(key)': \(value.serialized()) is not a string.")
        }
        if let maxLength, text.count > maxLength {
            throw ImageStoreError.badRequest("Invalid value for '\(key)': longer than \(maxLength) characters.")
        }
        return text
    }

    static func requiredString(_ body: [String: JSONValue], _ key: String, maxLength: Int? = nil) throws -> String {
        guard let text = try string(body, key, maxLength: maxLength), !text.isEmpty else {
            throw ImageStoreError.badRequest("'\(key)' is a required property.")
        }
        return text
    }

    static func bool(_ body: [String: JSONValue], _ key: String) throws -> Bool? {
        guard let value = body[key], !value.isNull else { return nil }
        guard let flag = value.boolValue else {
            throw ImageStoreError.badRequest("Invalid value for '\(key)': \(value.serialized()) is not a boolean.")
        }
        return flag
    }

    static func stringArray(_ value: JSONValue, _ key: String) throws -> JSONValue {
        guard let list = value.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
            throw ImageStoreError.badRequest("Invalid value for '\(key)': an array of strings is required.")
        }
        return .array(list)
    }
}

/// A complete namespace document (a create body, or one of Glance's `etc/metadefs/*.json` files) as
/// what the repository stores.
struct MetadefDocument {
    var namespace: MetadefNamespace
    var items: [MetadefItem]
    var associations: [MetadefAssociation]

    init(_ body: [String: JSONValue], defaultOwner: String?) throws {
        namespace = try MetadefBody.namespace(body, defaultOwner: defaultOwner)
        associations = try (body["resource_type_associations"].map { try MetadefBody.list($0, "resource_type_associations") } ?? [])
            .map(MetadefBody.association)
        let objects = try (body["objects"].map { try MetadefBody.list($0, "objects") } ?? []).map { try MetadefBody.object($0) }
        let properties = try (body["properties"].map { try MetadefBody.object($0, "properties") } ?? [:]).sorted { $0.key < $1.key }
            .map { try MetadefBody.property($0.value, name: $0.key) }
        let tags = try (body["tags"].map { try MetadefBody.list($0, "tags") } ?? []).map(MetadefBody.tag)
        items = objects + properties + tags
    }
}

/// `imagestore db load-metadefs DIR`: Glance's `glance-manage db_load_metadefs` for our catalogue. Every
/// `*.json` file is one namespace; an existing namespace is kept unless `overwrite`.
public enum MetadefLoader {
    public struct Report: Sendable {
        public var loaded: [String] = []
        public var skipped: [String] = []
    }

    public static func load(directory: String, into repository: any MetadefRepository, overwrite: Bool) async throws -> Report {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        var report = Report()
        for file in files {
            let path = (directory as NSString).appendingPathComponent(file)
            let document: MetadefDocument
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: path))
                let json = try JSONValue.parse(data)
                document = try MetadefDocument(try MetadefBody.object(json, "namespace"), defaultOwner: nil)
            } catch let error as ImageStoreError {
                throw ImageStoreError.badRequest("\(path): \(error.message)")
            } catch {
                throw ImageStoreError.badRequest("\(path): not a JSON namespace document")
            }
            let name = document.namespace.namespace
            if try await repository.namespace(name) != nil {
                guard overwrite else {
                    report.skipped.append(name)
                    continue
                }
                try await repository.deleteNamespace(name)
            }
            try await repository.createNamespace(document.namespace, items: document.items, associations: document.associations)
            report.loaded.append(name)
        }
        return report
    }
}
