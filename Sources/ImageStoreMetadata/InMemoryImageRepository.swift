import Foundation
import ImageStoreCore

/// An `ImageRepository` held in memory, for tests and single-process experiments.
///
/// Same contract as `SQLiteImageRepository`, checked by the same conformance suite: filtering is
/// `ImageListQuery.matches` (the reference semantics) and ordering follows SQLite's rules (NULLs first
/// ascending, text by bytes, `id` as the final tie-breaker), so both list identically. Being an actor
/// makes every method, the compare-and-set `update` included, atomic.
public actor InMemoryImageRepository: ImageRepository {
    private var images: [ImageID: Image] = [:]
    private var membersByImage: [ImageID: [String: ImageMember]] = [:]
    private var storeIdentities: [String: String] = [:]
    private var replicaRows: [String: ReplicaRecord] = [:]

    public init(_ images: [Image] = []) {
        for image in images { self.images[image.id] = image.normalizedForStorage }
    }

    public func create(_ image: Image) throws {
        guard images[image.id] == nil else { throw ImageStoreError.conflict("Image with identifier \(image.id) already exists!") }
        images[image.id] = image.normalizedForStorage
    }

    public func get(_ id: ImageID) -> Image? { images[id] }

    public func list(_ query: ImageListQuery) throws -> [Image] {
        let order = query.effectiveSortKeys
        let marker: Image?
        if let markerID = query.marker {
            guard let found = images[markerID] else { throw ImageStoreError.badRequest("marker not found") }
            marker = found
        } else {
            marker = nil
        }
        let filter = query.normalizedForStorage
        let page = images.values.filter { image in
            // Keyset semantics: strictly after the marker in sort order (the marker need not match the filters).
            filter.matches(image, members: membersOf(image.id)) && (marker.map { order.orders($0, before: image) } ?? true)
        }
        return Array(page.sorted { order.orders($0, before: $1) }.prefix(max(0, query.limit)))
    }

    @discardableResult
    public func update(
        _ id: ImageID, expecting expected: Set<ImageStatus>?, _ change: @escaping @Sendable (inout Image) throws -> Void
    ) throws -> Image {
        guard var image = images[id] else { throw ImageStoreError.notFound("No image found with ID \(id)") }
        try checkExpected(image, expected)
        try change(&image)
        guard image.id == id else { throw ImageStoreError.internal("An update may not change the image id") }
        image.updatedAt = Date()
        image = image.normalizedForStorage
        images[id] = image
        return image
    }

    @discardableResult
    public func delete(_ id: ImageID) -> Bool {
        membersByImage[id] = nil
        return images.removeValue(forKey: id) != nil
    }

    public func storageUsed(owner: String?, excluding exclude: ImageID?) -> Int64 {
        images.values.reduce(0) { sum, image in
            guard image.owner == owner, image.id != exclude, !Self.freesStorage(image.status) else { return sum }
            return sum + (image.size ?? 0)
        }
    }

    public func images(withStatus statuses: Set<ImageStatus>) -> [Image] {
        // Same order as the SQLite repository: oldest first, id breaking ties.
        let order = [ImageListQuery.SortSpec(key: .createdAt, direction: .asc), .init(key: .id, direction: .asc)]
        return images.values.filter { statuses.contains($0.status) }.sorted { order.orders($0, before: $1) }
    }

    public func ping() {}

    // MARK: Members

    public func addMember(_ member: ImageMember, limit: Int?) throws {
        guard images[member.imageID] != nil else { throw ImageStoreError.notFound("No image found with ID \(member.imageID)") }
        let existing = membersByImage[member.imageID] ?? [:]
        guard existing[member.memberID] == nil else { throw MemberErrors.duplicate(member) }
        if let limit, existing.count >= limit { throw MemberErrors.limit(attempted: existing.count + 1, maximum: limit) }
        membersByImage[member.imageID, default: [:]][member.memberID] = member.normalizedForStorage
    }

    public func member(_ memberID: String, of image: ImageID) -> ImageMember? { membersByImage[image]?[memberID] }

    public func members(of image: ImageID) -> [ImageMember] { membersOf(image) }

    @discardableResult
    public func updateMember(_ memberID: String, of image: ImageID, status: MemberStatus) throws -> ImageMember {
        guard var member = membersByImage[image]?[memberID] else { throw MemberErrors.notFound(memberID, image) }
        member.status = status
        member.updatedAt = Date()
        member = member.normalizedForStorage
        membersByImage[image]?[memberID] = member
        return member
    }

    @discardableResult
    public func removeMember(_ memberID: String, of image: ImageID) -> Bool {
        membersByImage[image]?.removeValue(forKey: memberID) != nil
    }

    public func storeIdentity(of store: String) -> String? { storeIdentities[store] }

    public func claimStoreIdentity(_ markerID: String, of store: String) -> String {
        if let recorded = storeIdentities[store] { return recorded }
        storeIdentities[store] = markerID
        return markerID
    }

    private func membersOf(_ image: ImageID) -> [ImageMember] {
        (membersByImage[image]?.values).map { $0.sorted(by: ImageMember.storageOrder) } ?? []
    }

    /// Statuses whose size no longer counts against a quota.
    static func freesStorage(_ status: ImageStatus) -> Bool { status == .deleted || status == .killed }
}

/// The member errors both repositories throw, worded as Glance's.
enum MemberErrors {
    static func duplicate(_ member: ImageMember) -> ImageStoreError {
        .conflict("Member \(member.memberID) is duplicated for image \(member.imageID)")
    }

    static func limit(attempted: Int, maximum: Int) -> ImageStoreError {
        ImageStoreError(
            .limitExceeded,
            "The limit has been exceeded on the number of allowed image members for this image. Attempted: \(attempted), Maximum: \(maximum)")
    }

    static func notFound(_ memberID: String, _ image: ImageID) -> ImageStoreError {
        .notFound("\(memberID) not found in the member list of the image \(image).")
    }
}

/// The compare-and-set check shared by both repositories, so they refuse with the same message.
func checkExpected(_ image: Image, _ expected: Set<ImageStatus>?) throws {
    guard let expected, !expected.contains(image.status) else { return }
    let wanted = expected.map(\.rawValue).sorted().joined(separator: ", ")
    throw ImageStoreError.conflict("Image \(image.id) is \(image.status.rawValue), expected one of: \(wanted)")
}

// MARK: Replicas

extension InMemoryImageRepository: ReplicaRegistry {
    /// Shared only by the app instances of one process (tests), like a shared database.
    public nonisolated var isShared: Bool { true }

    public func registerReplica(_ id: String, host: String) {
        let now = Date()
        if replicaRows[id] != nil {
            replicaRows[id]?.heartbeatAt = now
        } else {
            replicaRows[id] = ReplicaRecord(id: id, host: host, startedAt: now, heartbeatAt: now)
        }
    }

    public func heartbeatReplica(_ id: String) -> Bool {
        guard replicaRows[id] != nil else { return false }
        replicaRows[id]?.heartbeatAt = Date()
        return true
    }

    public func replicas() -> [ReplicaRecord] {
        replicaRows.values.sorted { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }
    }

    public func expiredReplicas(lease: Duration) -> [ReplicaRecord] {
        let limit = Date().addingTimeInterval(-lease.fractionalSeconds)
        return replicas().filter { $0.heartbeatAt < limit }
    }

    @discardableResult
    public func removeReplica(_ id: String, ifExpired lease: Duration) -> Bool {
        guard let row = replicaRows[id], row.heartbeatAt < Date().addingTimeInterval(-lease.fractionalSeconds) else { return false }
        replicaRows[id] = nil
        return true
    }
}
