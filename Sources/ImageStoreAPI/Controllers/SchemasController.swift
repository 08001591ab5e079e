import Foundation
import Logging
import Hummingbird
import ImageStoreCore

/// `GET /v2/schemas/*`. python-glanceclient builds a validating model (warlock) from the image
/// schema and validates the POST response against it, so this schema and `Image.glanceJSON` must agree.
struct SchemasController {
    /// Built once: their format enums are `[image_format] disk_formats` / `container_formats`.
    let image: JSONValue
    let images: JSONValue

    init(formats: ImageFormats) {
        image = Schemas.image(formats)
        images = Schemas.images(formats)
    }

    func addRoutes(to routes: RouteTable) {
        routes.add(.get, "/v2/schemas/image") { [image] _, _ in .json(image) }
        routes.add(.get, "/v2/schemas/images") { [images] _, _ in .json(images) }
        routes.add(.get, "/v2/schemas/member") { _, _ in .json(Schemas.member) }
        routes.add(.get, "/v2/schemas/members") { _, _ in .json(Schemas.members) }
        routes.add(.get, "/v2/schemas/metadefs/namespace") { _, _ in .json(Schemas.metadefNamespace) }
        routes.add(.get, "/v2/schemas/metadefs/resource_type") { _, _ in .json(Schemas.metadefResourceType) }
        routes.add(.get, "/v2/schemas/task") { _, _ in .json(Schemas.task) }
        routes.add(.get, "/v2/schemas/tasks") { _, _ in .json(Schemas.tasks) }
        routes.add(.get, "/v2/schemas/metadefs/namespaces") { _, _ in .json(Schemas.metadefNamespaces) }
        routes.add(.get, "/v2/schemas/metadefs/resource_types") { _, _ in .json(Schemas.metadefResourceTypes) }
        routes.add(.get, "/v2/schemas/metadefs/object") { _, _ in .json(Schemas.metadefObject) }
        routes.add(.get, "/v2/schemas/metadefs/objects") { _, _ in .json(Schemas.metadefObjects) }
        routes.add(.get, "/v2/schemas/metadefs/property") { _, _ in .json(Schemas.metadefProperty) }
        routes.add(.get, "/v2/schemas/metadefs/properties") { _, _ in .json(Schemas.metadefProperties) }
        routes.add(.get, "/v2/schemas/metadefs/tag") { _, _ in .json(Schemas.metadefTag) }
        routes.add(.get, "/v2/schemas/metadefs/tags") { _, _ in .json(Schemas.metadefTags) }
    }
}

enum Schemas {
    static let uuidPattern = "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"

    static func nullableEnum(_ values: [String], _ description: String) -> JSONValue {
        ["type": ["null", "string"], "description": .string(description), "enum": .array([.null] + values.map { .string($0) })]
    }

    static func readOnly(_ type: JSONValue, _ description: String, maxLength: Int64? = nil) -> JSONValue {
        var property: [String: JSONValue] = ["type": type, "readOnly": true, "description": .string(description)]
        if let maxLength { property["maxLength"] = .int(maxLength) }
        return .object(property)
    }

    /// Common optional properties Glance documents but does not treat as base properties.
    static func extra(_ description: String, pattern: String? = nil) -> JSONValue {
        var property: [String: JSONValue] = ["type": ["null", "string"], "description": .string(description), "is_base": false]
        if let pattern { property["pattern"] = .string(pattern) }
        return .object(property)
    }

    static func imageProperties(_ formats: ImageFormats) -> [String: JSONValue] {
        [
            "id": ["type": "string", "description": "An identifier for the image", "pattern": .string(uuidPattern)],
            "name": ["type": ["null", "string"], "description": "Descriptive name for the image", "maxLength": 255],
            "status": [
                "type": "string", "readOnly": true, "description": "Status of the image",
                "enum": .array(ImageStatus.allCases.map { .string($0.rawValue) }),
            ],
            "visibility": [
                "type": "string", "description": "Scope of image accessibility",
                "enum": ["community", "public", "private", "shared"],
            ],
            "protected": ["type": "boolean", "description": "If true, image will not be deletable."],
            "os_hidden": ["type": "boolean", "description": "If true, image will not appear in default image list response."],
            "checksum": readOnly(["null", "string"], "md5 hash of image contents.", maxLength: 32),
            "os_hash_algo": readOnly(["null", "string"], "Algorithm to calculate the os_hash_value", maxLength: 64),
            "os_hash_value": readOnly(["null", "string"], "Hexdigest of the image contents using the algorithm specified by the os_hash_algo", maxLength: 128),
            "owner": ["type": ["null", "string"], "description": "Owner of the image", "maxLength": 255],
            "size": readOnly(["null", "integer"], "Size of image file in bytes"),
            "virtual_size": readOnly(["null", "integer"], "Virtual size of image in bytes"),
            "container_format": nullableEnum(formats.container, "Format of the container"),
            "disk_format": nullableEnum(formats.disk, "Format of the disk"),
            "created_at": readOnly("string", "Date and time of image registration"),
            "updated_at": readOnly("string", "Date and time of the last image modification"),
            "tags": ["type": "array", "description": "List of strings related to the image", "items": ["type": "string", "maxLength": 255]],
            "direct_url": readOnly("string", "URL to access the image file kept in external store"),
            "min_ram": ["type": "integer", "description": "Amount of ram (in MB) required to boot image."],
            "min_disk": ["type": "integer", "description": "Amount of disk space (in GB) required to boot image."],
            "self": readOnly("string", "An image self url"),
            "file": readOnly("string", "An image file url"),
            "stores": readOnly("string", "Store in which image data resides.  Only present when the operator has enabled multiple stores.  May be a comma-separated list of store identifiers."),
            "schema": readOnly("string", "An image schema url"),
            "locations": [
                "type": "array", "description": "A set of URLs to access the image file kept in external store",
                "items": [
                    "type": "object", "required": ["url", "metadata"],
                    "properties": ["url": ["type": "string", "maxLength": 255], "metadata": ["type": "object"]],
                ],
            ],
            "kernel_id": extra("ID of image stored in Glance that should be used as the kernel when booting an AMI-style image.", pattern: uuidPattern),
            "ramdisk_id": extra("ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style image.", pattern: uuidPattern),
            "instance_uuid": [
                "type": "string", "description": "Metadata which can be used to record which instance this image is associated with. (Informational only, does not create an instance snapshot.)",
                "is_base": false,
            ],
            "architecture": [
                "type": "string", "description": "Operating system architecture as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html", "is_base": false,
            ],
            "os_distro": [
                "type": "string", "description": "Common name of operating system distribution as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html",
                "is_base": false,
            ],
            "os_version": ["type": "string", "description": "Operating system version as specified by the distributor.", "is_base": false],
            "description": ["type": "string", "description": "A human-readable string describing this image.", "is_base": false],
        ]
    }

    static func image(_ formats: ImageFormats) -> JSONValue {
        [
            "name": "image",
            "properties": .object(imageProperties(formats)),
            "additionalProperties": ["type": "string"],
            "links": [
                ["href": "{self}", "rel": "self"], ["href": "{file}", "rel": "enclosure"],
                ["href": "{schema}", "rel": "describedby"],
            ],
        ]
    }

    static func images(_ formats: ImageFormats) -> JSONValue {
        [
            "name": "images",
            "properties": [
                "images": ["type": "array", "items": image(formats)],
                "schema": ["type": "string"], "first": ["type": "string"], "next": ["type": "string"],
            ],
            "links": [
                ["rel": "first", "href": "{first}"], ["rel": "next", "href": "{next}"],
                ["rel": "describedby", "href": "{schema}"],
            ],
        ]
    }

    static let member: JSONValue = [
        "name": "member",
        "properties": [
            "member_id": ["type": "string", "description": "An identifier for the image member (tenantId)"],
            "image_id": ["type": "string", "description": "An identifier for the image", "pattern": .string(uuidPattern)],
            "created_at": ["type": "string", "description": "Date and time of image member creation"],
            "updated_at": ["type": "string", "description": "Date and time of last modification of image member"],
            "status": ["type": "string", "description": "The status of this image member", "enum": ["pending", "accepted", "rejected"]],
            "schema": ["readOnly": true, "type": "string"],
        ],
        "additionalProperties": false,
    ]

    static let members: JSONValue = [
        "name": "members",
        "properties": [
            "members": ["type": "array", "items": member],
            "schema": ["type": "string"], "first": ["type": "string"], "next": ["type": "string"],
        ],
        "links": [
            ["rel": "first", "href": "{first}"], ["rel": "next", "href": "{next}"],
            ["rel": "describedby", "href": "{schema}"],
        ],
    ]

    /// Glance's namespace schema: python-glanceclient validates namespace documents with it (warlock),
    /// so every field the API returns is here.
    static let metadefNamespace: JSONValue = [
        "name": "namespace",
        "properties": [
            "namespace": ["type": "string", "maxLength": 80, "description": "The unique namespace text."],
            "display_name": ["type": "string", "maxLength": 80, "description": "The user friendly name for the namespace. Used by UI if available."],
            "description": ["type": "string", "maxLength": 500, "description": "Provides a user friendly description of the namespace."],
            "visibility": ["type": "string", "enum": ["public", "private"], "description": "Scope of namespace accessibility."],
            "protected": ["type": "boolean", "description": "If true, namespace will not be deletable."],
            "owner": ["type": "string", "maxLength": 255, "description": "Owner of the namespace."],
            "created_at": ["type": "string", "readOnly": true, "description": "Date and time of namespace creation", "format": "date-time"],
            "updated_at": ["type": "string", "readOnly": true, "description": "Date and time of the last namespace modification", "format": "date-time"],
            "schema": ["type": "string", "readOnly": true], "self": ["type": "string", "readOnly": true],
            "resource_type_associations": [
                "type": "array",
                "items": ["type": "object", "properties": ["name": ["type": "string"], "prefix": ["type": "string"], "properties_target": ["type": "string"]]],
            ],
            "properties": ["$ref": "#/definitions/property"],
            "objects": [
                "type": "array",
                "items": [
                    "type": "object",
                    "properties": [
                        "name": ["type": "string"], "description": ["type": "string"],
                        "required": ["$ref": "#/definitions/stringArray"], "properties": ["$ref": "#/definitions/property"],
                    ],
                ],
            ],
            "tags": ["type": "array", "items": ["type": "object", "properties": ["name": ["type": "string"]]]],
        ],
        "additionalProperties": false, "required": ["namespace"], "definitions": metadefDefinitions,
    ]

    static let metadefResourceType: JSONValue = [
        "name": "resource_type_association",
        "properties": [
            "name": ["type": "string", "maxLength": 80], "prefix": ["type": "string", "maxLength": 80],
            "properties_target": ["type": "string", "maxLength": 80],
            "created_at": ["type": "string", "readOnly": true, "format": "date-time"],
            "updated_at": ["type": "string", "readOnly": true, "format": "date-time"],
        ],
        "additionalProperties": false, "required": ["name"],
    ]

    // MARK: Tasks (glance/api/v2/tasks.py)

    static let taskProperties: [String: JSONValue] = [
        "id": ["type": "string", "description": "An identifier for the task", "pattern": .string(uuidPattern)],
        "type": [
            "type": "string", "description": "The type of task represented by this content",
            "enum": ["import", "api_image_import", "location_import"],
        ],
        "status": [
            "type": "string", "description": "The current status of this task",
            "enum": .array(TaskStatus.allCases.map { .string($0.rawValue) }),
        ],
        "input": ["type": ["null", "object"], "description": "The parameters required by task, JSON blob"],
        "result": ["type": ["null", "object"], "description": "The result of current task, JSON blob"],
        "owner": ["type": "string", "description": "An identifier for the owner of this task"],
        "message": ["type": "string", "description": "Human-readable informative message only included when appropriate (usually on failure)"],
        "image_id": ["type": "string", "description": "Image associated with the task"],
        "request_id": ["type": "string", "description": "Human-readable informative request-id"],
        "user_id": ["type": "string", "description": "User associated with the task"],
        "expires_at": ["type": ["null", "string"], "description": "Datetime when this resource would be subject to removal"],
        "created_at": ["type": "string", "description": "Datetime when this resource was created"],
        "updated_at": ["type": "string", "description": "Datetime when this resource was updated"],
        "self": ["readOnly": true, "type": "string"],
        "schema": ["readOnly": true, "type": "string"],
    ]

    static let task: JSONValue = ["name": "task", "properties": .object(taskProperties)]

    static let tasks: JSONValue = {
        var partial = taskProperties
        for hidden in ["input", "result", "message"] { partial[hidden] = nil }
        return collection("tasks", ["name": "task", "properties": .object(partial)])
    }()

    // MARK: Metadata definitions (glance/api/v2/metadef_*.py get_schema / get_collection_schema)

    static let propertyTypeEnum: JSONValue = ["array", "boolean", "integer", "number", "object", "string", .null]

    /// Glance's shared `definitions` (positiveInteger, stringArray, property).
    static let metadefDefinitions: JSONValue = [
        "positiveInteger": ["type": "integer", "minimum": 0],
        "positiveIntegerDefault0": ["allOf": [["$ref": "#/definitions/positiveInteger"], ["default": 0]]],
        "stringArray": ["type": "array", "items": ["type": "string"], "uniqueItems": true],
        "property": [
            "type": "object",
            "additionalProperties": [
                "type": "object", "required": ["title", "type"],
                "properties": .object(metadefPropertyFields),
            ],
        ],
    ]

    static let metadefPropertyFields: [String: JSONValue] = [
        "name": ["type": "string", "maxLength": 80], "title": ["type": "string"], "description": ["type": "string"],
        "operators": ["type": "array", "items": ["type": "string"]], "type": ["type": "string", "enum": propertyTypeEnum],
        "required": ["$ref": "#/definitions/stringArray"], "minimum": ["type": "number"], "maximum": ["type": "number"],
        "maxLength": ["$ref": "#/definitions/positiveInteger"], "minLength": ["$ref": "#/definitions/positiveIntegerDefault0"],
        "pattern": ["type": "string", "format": "regex"], "enum": ["type": "array"], "readonly": ["type": "boolean"],
        "default": [:],
        "items": [
            "type": "object",
            "properties": ["type": ["type": "string", "enum": propertyTypeEnum], "enum": ["type": "array"]],
        ],
        "maxItems": ["$ref": "#/definitions/positiveInteger"], "minItems": ["$ref": "#/definitions/positiveIntegerDefault0"],
        "uniqueItems": ["type": "boolean", "default": false], "additionalItems": ["type": "boolean"],
    ]

    static func collection(_ name: String, _ items: JSONValue, extra: [String: JSONValue] = [:]) -> JSONValue {
        var properties: [String: JSONValue] = [
            name: ["type": "array", "items": items], "first": ["type": "string"], "next": ["type": "string"],
            "schema": ["type": "string"],
        ]
        for (key, value) in extra { properties[key] = value }
        return [
            "name": .string(name), "properties": .object(properties),
            "links": [
                ["rel": "first", "href": "{first}"], ["rel": "next", "href": "{next}"], ["rel": "describedby", "href": "{schema}"],
            ],
        ]
    }

    static let metadefNamespaces: JSONValue = collection("namespaces", metadefNamespace)
    static let metadefResourceTypes: JSONValue = collection("resource_type_associations", metadefResourceType)

    static let metadefObject: JSONValue = [
        "name": "object",
        "properties": [
            "name": ["type": "string", "maxLength": 80], "description": ["type": "string"],
            "required": ["$ref": "#/definitions/stringArray"], "properties": ["$ref": "#/definitions/property"],
            "schema": ["type": "string", "readOnly": true], "self": ["type": "string", "readOnly": true],
            "created_at": ["type": "string", "readOnly": true, "description": "Date and time of object creation", "format": "date-time"],
            "updated_at": ["type": "string", "readOnly": true, "description": "Date and time of the last object modification", "format": "date-time"],
        ],
        "additionalProperties": false, "required": ["name"], "definitions": metadefDefinitions,
    ]
    static let metadefObjects: JSONValue = collection("objects", metadefObject)

    static let metadefProperty: JSONValue = {
        var properties = metadefPropertyFields
        properties["name"] = ["type": "string", "maxLength": 255]
        return [
            "name": "property", "properties": .object(properties), "additionalProperties": false,
            "required": ["name", "title", "type"], "definitions": metadefDefinitions,
        ]
    }()
    static let metadefProperties: JSONValue = [
        "name": "properties",
        "properties": ["properties": ["$ref": "#/definitions/property"], "first": ["type": "string"], "next": ["type": "string"], "schema": ["type": "string"]],
        "links": [["rel": "first", "href": "{first}"], ["rel": "next", "href": "{next}"], ["rel": "describedby", "href": "{schema}"]],
        "definitions": metadefDefinitions,
    ]

    static let metadefTag: JSONValue = [
        "name": "tag",
        "properties": [
            "name": ["type": "string", "maxLength": 255],
            "created_at": ["type": "string", "readOnly": true, "description": "Date and time of tag creation", "format": "date-time"],
            "updated_at": ["type": "string", "readOnly": true, "description": "Date and time of the last tag modification", "format": "date-time"],
        ],
        "additionalProperties": false, "required": ["name"],
    ]
    static let metadefTags: JSONValue = collection("tags", metadefTag)

    /// Names clients may set on create/patch, with their schema type.
    static let readOnlyAttributes: Set<String> = [
        "created_at", "updated_at", "status", "checksum", "size", "virtual_size", "direct_url", "self", "file",
        "schema", "os_hash_algo", "os_hash_value", "stores",
    ]
    static let reservedAttributes: Set<String> = ["location", "deleted", "deleted_at"]
}
