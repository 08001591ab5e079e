import Foundation

/// Where image metadata lives (SQLite now, PostgreSQL later, in-memory for tests).
///
/// Every implementation passes the same conformance suite (`ImageRepositoryConformance`).
public protocol ImageRepository: Sendable {
    /// Stores a new image. Throws `.conflict` if the id exists.
    func create(_ image: Image) async throws

    /// The image, or nil.
    func get(_ id: ImageID) async throws -> Image?

    /// One page of images matching `query`, in its sort order, after its marker.
    /// Throws `.badRequest` if the marker does not name an image.
    func list(_ query: ImageListQuery) async throws -> [Image]

    /// Atomic read-modify-write (compare-and-set): reads the image, and if `expected` is non-nil the
    /// status must be one of them, else `.conflict`; runs `change`; stores the result with a new
    /// `updatedAt` and returns it. Throws `.notFound` when missing; errors thrown by `change` abort.
    @discardableResult
    func update(
        _ id: ImageID, expecting expected: Set<ImageStatus>?, _ change: @escaping @Sendable (inout Image) throws -> Void
    ) async throws -> Image

    /// Removes the image record and its members. Returns false if it did not exist.
    @discardableResult
    func delete(_ id: ImageID) async throws -> Bool

    /// Sum of `size` over an owner's images (for `user_storage_quota`), excluding `exclude`.
    func storageUsed(owner: String?, excluding exclude: ImageID?) async throws -> Int64

    /// Images in any of these statuses (used by start-up reconciliation).
    func images(withStatus statuses: Set<ImageStatus>) async throws -> [Image]

    /// A cheap round trip, for health checks.
    func ping() async throws

    // MARK: Members (image sharing)

    /// Adds `member` to its image. Throws `.notFound` when the image does not exist, `.conflict` when
    /// the project is already a member, and `.limitExceeded` when the image has `limit` members already
    /// (nil: no limit). The count and the insert are one atomic step.
    func addMember(_ member: ImageMember, limit: Int?) async throws

    /// One membership, or nil.
    func member(_ memberID: String, of image: ImageID) async throws -> ImageMember?

    /// Every member of an image, oldest first (`createdAt`, then `memberID`). Empty for an unknown image.
    func members(of image: ImageID) async throws -> [ImageMember]

    /// Sets a member's status, with a new `updatedAt`; returns the stored member. Throws `.notFound` when
    /// there is no such membership.
    @discardableResult
    func updateMember(_ memberID: String, of image: ImageID, status: MemberStatus) async throws -> ImageMember

    /// Removes a membership. Returns false if there was none.
    @discardableResult
    func removeMember(_ memberID: String, of image: ImageID) async throws -> Bool

    // MARK: Store identity

    /// The share identity (the marker's store id) recorded for `store` (a backend id), or nil.
    func storeIdentity(of store: String) async throws -> String?

    /// Records `markerID` as the identity of `store` unless one is recorded already, in one atomic step,
    /// and returns the recorded identity: `markerID` the first time, the earlier one afterwards. The mount
    /// guard compares it with the marker it reads, so a different share mounted later is noticed.
    func claimStoreIdentity(_ markerID: String, of store: String) async throws -> String
}

/// A sort key Glance accepts.
public enum ImageSortKey: String, Sendable, CaseIterable {
    case name, status, id, size
    case containerFormat = "container_format"
    case diskFormat = "disk_format"
    case createdAt = "created_at"
    case updatedAt = "updated_at"
    case visibility, owner
    case minDisk = "min_disk"
    case minRam = "min_ram"
}

public enum SortDirection: String, Sendable {
    case asc, desc
}

/// Comparison operators of Glance's time filters (`created_at=gte:2020-01-01T00:00:00Z`).
public enum TimeComparison: String, Sendable {
    case gt, gte, eq, neq, lt, lte
}

/// A parsed `GET /v2/images` query.
public struct ImageListQuery: Sendable, Equatable {
    /// Each set filter is "value in set" (`in:` lists); nil means no filter.
    public var ids: Set<String>?
    public var names: Set<String>?
    public var statuses: Set<String>?
    public var diskFormats: Set<String>?
    public var containerFormats: Set<String>?
    public var visibilities: Set<String>?
    public var owner: String?
    /// All of these tags must be present.
    public var tags: [String]
    public var sizeMin: Int64?
    public var sizeMax: Int64?
    /// nil: both; Glance's default is false (hidden images are not listed).
    public var osHidden: Bool?
    public var isProtected: Bool?
    public var createdAtFilter: TimeFilter?
    public var updatedAtFilter: TimeFilter?
    /// Custom property equality filters (`?hw_disk_bus=scsi`).
    public var properties: [String: String]
    /// Sort keys, most significant first. Implementations append `id` as the final tie-breaker.
    public var sortKeys: [SortSpec]
    public var limit: Int
    /// List images after this one (in sort order).
    public var marker: ImageID?
    /// Glance's visibility rules for the caller (owner, public, community, memberships); nil lists every
    /// image (internal use).
    public var viewer: ImageViewer?

    public struct TimeFilter: Sendable, Equatable {
        public var op: TimeComparison
        public var date: Date
        public init(op: TimeComparison, date: Date) { self.op = op; self.date = date }
    }

    public struct SortSpec: Sendable, Equatable {
        public var key: ImageSortKey
        public var direction: SortDirection
        public init(key: ImageSortKey, direction: SortDirection) { self.key = key; self.direction = direction }
    }

    public init(
        limit: Int = 25, marker: ImageID? = nil,
        sort: [SortSpec] = [SortSpec(key: .createdAt, direction: .desc)]
    ) {
        self.tags = []
        self.properties = [:]
        self.sortKeys = sort
        self.limit = limit
        self.marker = marker
        self.osHidden = false
    }

    /// Whether `image`, whose members are `members`, passes every filter and the viewer's visibility
    /// rules (not sort, marker or limit). Shared by implementations that filter in Swift, and the
    /// reference the SQL implementation is tested against.
    public func matches(_ image: Image, members: [ImageMember] = []) -> Bool {
        if let viewer, !viewer.lists(image, members: members) { return false }
        if let ids, !ids.contains(image.id.description) { return false }
        if let names, !names.contains(image.name ?? "") { return false }
        if let statuses, !statuses.contains(image.status.rawValue) { return false }
        if let diskFormats, !diskFormats.contains(image.diskFormat ?? "") { return false }
        if let containerFormats, !containerFormats.contains(image.containerFormat ?? "") { return false }
        if let visibilities, !visibilities.contains(image.visibility.rawValue) { return false }
        if let owner, image.owner != owner { return false }
        if !tags.allSatisfy(image.tags.contains) { return false }
        if let sizeMin, (image.size ?? -1) < sizeMin || image.size == nil { return false }
        if let sizeMax, image.size == nil || image.size! > sizeMax { return false }
        if let osHidden, image.osHidden != osHidden { return false }
        if let isProtected, image.isProtected != isProtected { return false }
        if let f = createdAtFilter, !f.op.holds(image.createdAt, f.date) { return false }
        if let f = updatedAtFilter, !f.op.holds(image.updatedAt, f.date) { return false }
        for (key, value) in properties where image.properties[key] != value { return false }
        return true
    }
}

extension TimeComparison {
    public func holds<T: Comparable>(_ value: T, _ reference: T) -> Bool {
        switch self {
        case .gt: value > reference
        case .gte: value >= reference
        case .eq: value == reference
        case .neq: value != reference
        case .lt: value < reference
        case .lte: value <= reference
        }
    }
}
