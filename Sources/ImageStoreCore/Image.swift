import Foundation

/// Image status, as Glance's state machine names them.
public enum ImageStatus: String, Sendable, CaseIterable, Codable {
    case queued, saving, active, killed, deleted, uploading, importing
    case pendingDelete = "pending_delete"
    case deactivated
}

/// Who may see an image.
public enum ImageVisibility: String, Sendable, CaseIterable, Codable {
    case `public`, `private`, shared, community
}

/// The values an image's `disk_format` and `container_format` may take: `[image_format] disk_formats`
/// and `container_formats`, in their configured order (the schema's enums list them so).
public struct ImageFormats: Sendable, Equatable {
    public var disk: [String]
    public var container: [String]

    /// Glance's defaults (glance/common/config.py).
    public static let defaultDisk = ["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"]
    public static let defaultContainer = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]

    public init(disk: [String] = Self.defaultDisk, container: [String] = Self.defaultContainer) {
        self.disk = disk
        self.container = container
    }
}

/// One image's metadata record.
public struct Image: Sendable, Equatable, Codable {
    public var id: ImageID
    public var name: String?
    public var status: ImageStatus
    public var visibility: ImageVisibility
    public var isProtected: Bool
    public var osHidden: Bool
    public var checksum: String?
    public var osHashAlgo: String?
    public var osHashValue: String?
    public var size: Int64?
    public var virtualSize: Int64?
    public var diskFormat: String?
    public var containerFormat: String?
    public var minDisk: Int
    public var minRam: Int
    public var owner: String?
    public var createdAt: Date
    public var updatedAt: Date
    /// Kept sorted and unique.
    public var tags: [String]
    /// Custom properties; Glance makes every one a string.
    public var properties: [String: String]
    /// While `saving`: which process holds the upload (so a restart only resets its own).
    public var uploadOwner: String?

    public init(
        id: ImageID = ImageID(), name: String? = nil, status: ImageStatus = .queued,
        visibility: ImageVisibility = .shared, isProtected: Bool = false, osHidden: Bool = false,
        checksum: String? = nil, osHashAlgo: String? = nil, osHashValue: String? = nil,
        size: Int64? = nil, virtualSize: Int64? = nil, diskFormat: String? = nil, containerFormat: String? = nil,
        minDisk: Int = 0, minRam: Int = 0, owner: String? = nil,
        createdAt: Date = Date(), updatedAt: Date? = nil, tags: [String] = [], properties: [String: String] = [:],
        uploadOwner: String? = nil
    ) {
        self.id = id
        self.name = name
        self.status = status
        self.visibility = visibility
        self.isProtected = isProtected
        self.osHidden = osHidden
        self.checksum = checksum
        self.osHashAlgo = osHashAlgo
        self.osHashValue = osHashValue
        self.size = size
        self.virtualSize = virtualSize
        self.diskFormat = diskFormat
        self.containerFormat = containerFormat
        self.minDisk = minDisk
        self.minRam = minRam
        self.owner = owner
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.tags = Array(Set(tags)).sorted()
        self.properties = properties
        self.uploadOwner = uploadOwner
    }

    /// Adds a tag keeping the list sorted and unique.
    public mutating func addTag(_ tag: String) {
        guard !tags.contains(tag) else { return }
        tags.append(tag)
        tags.sort()
    }

    /// Whether the image has data that a store holds.
    public var hasData: Bool { status == .active || status == .deactivated }
}
