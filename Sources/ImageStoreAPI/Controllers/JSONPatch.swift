import Foundation
import Logging
import ImageStoreCore

/// Glance's JSON patch media types: v2.1 (RFC 6902 style `{"op","path","value"}`) and the old
/// v2.0 (`{"replace": "/name", "value": …}`). Only add, remove and replace, on top-level paths.
enum JSONPatch {
    static let acceptPatch = "application/openstack-images-v2.1-json-patch, application/openstack-images-v2.0-json-patch"

    enum Format {
        case v21, v20
        init?(mediaType: String) {
            switch mediaType {
            case "application/openstack-images-v2.1-json-patch": self = .v21
            case "application/openstack-images-v2.0-json-patch": self = .v20
            default: return nil
            }
        }
    }

    enum Op: String { case add, remove, replace }

    struct Operation {
        var op: Op
        var key: String
        var value: JSONValue?
    }

    static func mediaType(_ contentType: String) -> String {
        contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
    }

    static func operations(from body: JSONValue, format: Format) throws -> [Operation] {
        guard let items = body.arrayValue else {
            throw ImageStoreError.badRequest("Request body must be a JSON array of operation objects.")
        }
        return try items.map { item in
            guard let object = item.objectValue else {
                throw ImageStoreError.badRequest("Operations must be JSON objects.")
            }
            let op: Op
            let path: String
            switch format {
            case .v21:
                guard let opText = object["op"]?.stringValue, let parsed = Op(rawValue: opText) else {
                    throw ImageStoreError.badRequest("Operation objects must contain one of 'add', 'remove', 'replace' as 'op'.")
                }
                guard let p = object["path"]?.stringValue else {
                    throw ImageStoreError.badRequest("Unable to find 'path' in JSON Schema change")
                }
                op = parsed
                path = p
            case .v20:
                let found = Op.allCases.filter { object[$0.rawValue] != nil }
                guard found.count == 1, let p = object[found[0].rawValue]?.stringValue else {
                    throw ImageStoreError.badRequest("Operation objects must contain exactly one member named 'add', 'remove', or 'replace'.")
                }
                op = found[0]
                path = p
            }
            // Glance's depth limits: `/locations/<pos>` (or `-`) for add and remove, `/locations` for all.
            let locationItem = path.hasPrefix("/locations/") && !path.dropFirst("/locations/".count).contains("/")
            let key = op != .replace && locationItem ? "locations" : try pointerKey(path)
            let value = object["value"]
            if op != .remove && value == nil {
                throw ImageStoreError.badRequest("Operation objects must contain 'value' for '\(op.rawValue)'.")
            }
            return Operation(op: op, key: key, value: value)
        }
    }

    /// A JSON pointer naming one top-level member: `/name`, `/x~1y` → `x/y`.
    static func pointerKey(_ path: String) throws -> String {
        guard path.hasPrefix("/") else { throw ImageStoreError.badRequest("Pointer `\(path)` does not start with \"/\".") }
        let body = path.dropFirst()
        guard !body.isEmpty, !body.contains("/") else {
            throw ImageStoreError.badRequest("Invalid JSON pointer for this resource: '\(path)'")
        }
        if body.contains("~") {
            var result = ""
            var iterator = body.makeIterator()
            while let ch = iterator.next() {
                if ch == "~" {
                    switch iterator.next() {
                    case "0": result.append("~")
                    case "1": result.append("/")
                    default: throw ImageStoreError.badRequest("Invalid JSON pointer for this resource: '\(path)'")
                    }
                } else {
                    result.append(ch)
                }
            }
            return result
        }
        return String(body)
    }

    static func apply(_ operations: [Operation], to image: inout Image, formats: ImageFormats) throws {
        for operation in operations {
            if operation.key == "locations" {
                // Glance with show_multiple_locations = false (its default) answers each with 403 before
                // looking at the image; ImageStore shows locations at most, so always.
                let verb = ["add": "add", "remove": "remove", "replace": "update"][operation.op.rawValue] ?? "update"
                throw ImageStoreError.forbidden("It's not allowed to \(verb) locations if locations are invisible.")
            }
            switch operation.op {
            case .remove:
                try ImageAttributes.remove(operation.key, from: &image)
            case .replace
            where !ImageAttributes.baseAttributes.contains(operation.key)
                && image.properties[operation.key] == nil:
                try ImageAttributes.checkWritable(operation.key, creating: false)
                throw ImageStoreError.conflict("Property \(operation.key) does not exist.")
            case .add, .replace:
                try ImageAttributes.set(operation.key, operation.value ?? .null, on: &image, creating: false, formats: formats)
            }
        }
    }
}

extension JSONPatch.Op: CaseIterable {}
