import Foundation
import ImageStoreCore

/// The object of an action, as the `%(key)s` placeholders of a rule read it. Values are kept as
/// Python's `str()` would render them (`None`, `True`), because that is what oslo.policy compares.
public struct PolicyTarget: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public private(set) var values: [String: String]

    public init(_ values: [String: String?] = [:]) {
        self.values = values.mapValues { $0 ?? Self.pythonNone }
    }

    public init(dictionaryLiteral elements: (String, String?)...) {
        self.init(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }

    public subscript(key: String) -> String? {
        get { values[key] }
        set { values[key] = newValue }
    }

    static let pythonNone = "None"
    static func python(_ value: Bool) -> String { value ? "True" : "False" }

    /// Glance's target for actions that are not about an existing image (`get_images`, creating):
    /// the caller's own project.
    public static func project(_ projectID: String?) -> PolicyTarget {
        ["project_id": projectID]
    }

    /// Glance's target for an image about to be created (`ImageAPIPolicy` on a dict): its owner as
    /// `project_id` and `owner`, and its visibility (private when not given).
    public static func newImage(owner: String?, visibility: ImageVisibility?) -> PolicyTarget {
        ["project_id": owner, "owner": owner, "visibility": (visibility ?? .private).rawValue]
    }

    /// Glance's `ImageTarget`: the image's attributes and custom properties, `project_id` = owner, and
    /// `member_id` = the caller's project when the image is shared and the caller is not its owner
    /// (Glance only gets that far for a member; other callers were answered 404 before).
    public static func image(_ image: Image, callerProject: String?) -> PolicyTarget {
        var target = PolicyTarget()
        for (key, value) in image.properties { target[key] = value }
        let isMember = image.visibility == .shared && callerProject != image.owner
        let base: [String: String?] = [
            "id": image.id.description, "image_id": image.id.description, "name": image.name,
            "owner": image.owner, "project_id": image.owner, "member_id": isMember ? callerProject : nil,
            "visibility": image.visibility.rawValue, "status": image.status.rawValue,
            "protected": python(image.isProtected), "os_hidden": python(image.osHidden),
            "disk_format": image.diskFormat, "container_format": image.containerFormat,
            "checksum": image.checksum, "size": image.size.map { String($0) },
            "min_disk": String(image.minDisk), "min_ram": String(image.minRam),
        ]
        for (key, value) in base { target[key] = value ?? pythonNone }
        return target
    }

    /// The caller's credentials as a target (Glance checks `context_is_admin` against `context.to_dict()`).
    static func credentials(_ credentials: PolicyCredentials) -> PolicyTarget {
        var target = PolicyTarget()
        for (key, value) in credentials.values {
            switch value {
            case .string(let text): target[key] = text
            case .bool(let flag): target[key] = python(flag)
            case .none: target[key] = pythonNone
            case .list(let items): target[key] = "[" + items.map { "'\($0)'" }.joined(separator: ", ") + "]"
            }
        }
        return target
    }
}
