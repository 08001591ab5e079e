import Foundation
import Logging
import ImageStoreConfig
import ImageStoreCore

/// Setting and removing image attributes from JSON values, shared by create (POST) and PATCH, with
/// Glance's rules: read-only → 403, reserved → 403, wrong type → 400, custom values strings only.
/// Throws `ImageStoreError` so the errors pass unchanged through the repository's compare-and-set.
enum ImageAttributes {
    static let baseAttributes: Set<String> = [
        "id", "name", "visibility", "protected", "os_hidden", "disk_format", "container_format", "min_disk",
        "min_ram", "owner", "tags", "locations",
    ]

    static func checkWritable(_ key: String, creating: Bool) throws {
        if Schemas.readOnlyAttributes.contains(key) || (!creating && key == "id") {
            throw ImageStoreError.forbidden("Attribute '\(key)' is read-only.")
        }
        if Schemas.reservedAttributes.contains(key) || key.hasPrefix("os_glance_") {
            throw ImageStoreError.forbidden("Attribute '\(key)' is reserved.")
        }
        if key == "locations" {
            // Also with show_multiple_locations: locations are shown, never set, here.
            throw ImageStoreError.forbidden("It's not allowed to update locations if locations are invisible.")
        }
    }

    /// Sets one attribute (base or custom) on `image`; `formats` are the values the two formats may take.
    static func set(_ key: String, _ value: JSONValue, on image: inout Image, creating: Bool, formats: ImageFormats) throws {
        try checkWritable(key, creating: creating)
        switch key {
        case "id":
            guard let text = value.stringValue, let id = ImageID(text) else {
                throw ImageStoreError.badRequest("Invalid value for 'id': it must be a UUID.")
            }
            image.id = id
        case "name":
            image.name = try nullableString(value, key, maxLength: 255)
        case "owner":
            image.owner = try nullableString(value, key, maxLength: 255)
        case "visibility":
            guard let text = value.stringValue, let visibility = ImageVisibility(rawValue: text) else {
                throw ImageStoreError.badRequest(
                    "Invalid value for 'visibility': \(value.serialized()) is not one of ['community', 'public', 'private', 'shared']")
            }
            image.visibility = visibility
        case "protected":
            image.isProtected = try bool(value, key)
        case "os_hidden":
            image.osHidden = try bool(value, key)
        case "min_disk":
            image.minDisk = try nonNegativeInt(value, key)
        case "min_ram":
            image.minRam = try nonNegativeInt(value, key)
        case "disk_format", "container_format":
            // The value first: Glance validates it against the schema before it looks at the image (400
            // before 403). Its message is jsonschema's, less the dump of the property's schema.
            let allowed = key == "disk_format" ? formats.disk : formats.container
            let format = try nullableString(value, key, maxLength: 255)
            if let format, !allowed.contains(format) {
                let choices = (["None"] + allowed.map(pythonRepr)).joined(separator: ", ")
                throw ImageStoreError.badRequest(
                    """
                    Provided object does not match schema 'image': \(pythonRepr(format)) is not one of [\(choices)]

                    Failed validating 'enum' in schema['properties']['\(key)']

                    On instance['\(key)']:
                        \(pythonRepr(format))
                    """)
            }
            if !creating && !(image.status == .queued || image.status == .importing) {
                throw ImageStoreError.forbidden("Attribute \(key) can be only replaced for a queued image.")
            }
            if key == "disk_format" { image.diskFormat = format } else { image.containerFormat = format }
        case "tags":
            guard let items = value.arrayValue else {
                throw ImageStoreError.badRequest("Invalid value for 'tags': \(value.typeName) is not of type 'array'")
            }
            var tags: [String] = []
            for item in items {
                guard let tag = item.stringValue else {
                    throw ImageStoreError.badRequest("Invalid value for 'tags': every tag must be a string")
                }
                try validateTag(tag)
                tags.append(tag)
            }
            image.tags = Array(Set(tags)).sorted()
        default:
            guard key.count <= 255, !key.isEmpty else {
                throw ImageStoreError.badRequest("Property names must be 1 to 255 characters long.")
            }
            guard let text = value.stringValue else {
                throw ImageStoreError.badRequest("Invalid value for '\(key)': \(value.serialized()) is not of type 'string'")
            }
            image.properties[key] = text
        }
    }

    /// Removes an attribute (PATCH remove). Base attributes cannot be removed.
    static func remove(_ key: String, from image: inout Image) throws {
        try checkWritable(key, creating: false)
        if baseAttributes.contains(key) {
            throw ImageStoreError.forbidden("Properties \(key) cannot be removed.")
        }
        guard image.properties.removeValue(forKey: key) != nil else {
            throw ImageStoreError.conflict("Property \(key) does not exist.")
        }
    }

    /// Glance's `image_tag_quota` and (when `properties`) `image_property_quota`, on the image as it
    /// would be stored: 413 beyond them. `os_glance_*` properties do not count.
    static func checkLimits(_ image: Image, _ limits: ImageLimits, properties: Bool) throws {
        if let maximum = ImageLimits.bounded(limits.tags), image.tags.count > maximum {
            throw limitExceeded("tags", attempted: image.tags.count, maximum: maximum)
        }
        guard properties, let maximum = ImageLimits.bounded(limits.properties) else { return }
        let count = image.properties.keys.filter { !$0.hasPrefix("os_glance") }.count
        if count > maximum { throw limitExceeded("properties", attempted: count, maximum: maximum) }
    }

    private static func limitExceeded(_ what: String, attempted: Int, maximum: Int) -> ImageStoreError {
        ImageStoreError(
            .limitExceeded,
            "The limit has been exceeded on the number of allowed image \(what). Attempted: \(attempted), Maximum: \(maximum)")
    }

    static func validateTag(_ tag: String) throws {
        guard !tag.isEmpty, tag.count <= 255 else {
            throw ImageStoreError.badRequest("Tags must be 1 to 255 characters long.")
        }
    }

    /// A string as Python's `repr` writes it (jsonschema's messages quote values so).
    static func pythonRepr(_ text: String) -> String {
        let quote: Character = text.contains("'") && !text.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for ch in text {
            if ch == "\\" || ch == quote { out.append("\\") }
            out.append(ch)
        }
        out.append(quote)
        return out
    }

    private static func nullableString(_ value: JSONValue, _ key: String, maxLength: Int) throws -> String? {
        if value.isNull { return nil }
        guard let text = value.stringValue else {
            throw ImageStoreError.badRequest("Invalid value for '\(key)': \(value.typeName) is not of type 'string'")
        }
        guard text.count <= maxLength else {
            throw ImageStoreError.badRequest("Invalid value for '\(key)': it is longer than \(maxLength) characters")
        }
        return text
    }

    private static func bool(_ value: JSONValue, _ key: String) throws -> Bool {
        guard let b = value.boolValue else {
            throw ImageStoreError.badRequest("Invalid value for '\(key)': \(value.serialized()) is not of type 'boolean'")
        }
        return b
    }

    private static func nonNegativeInt(_ value: JSONValue, _ key: String) throws -> Int {
        guard case .int(let i) = value, i >= 0, i <= Int64(Int32.max) else {
            throw ImageStoreError.badRequest("Invalid value for '\(key)': it must be a non-negative integer")
        }
        return Int(i)
    }
}
