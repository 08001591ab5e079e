import Foundation
import ImageStoreCore

/// The schema verbs of `imagestore db` (glance-manage's `db sync`, `db version`), on every engine.
public protocol MetadataSchemaVersioned: Sendable {
    /// Applies the migrations the database lacks; returns their names.
    @discardableResult
    func migrate() async throws -> [String]
    /// The migrations applied, oldest first.
    func appliedMigrations() async throws -> [String]
    /// Every migration this build knows, oldest first.
    static var knownMigrations: [String] { get }
}

extension SQLiteImageRepository: MetadataSchemaVersioned {}
extension PostgresImageRepository: MetadataSchemaVersioned {}

/// Rows of a catalogue, per table.
public struct CatalogueCounts: Sendable, Equatable, CustomStringConvertible {
    public var images: Int64
    public var tags: Int64
    public var properties: Int64
    public var members: Int64

    public init(images: Int64, tags: Int64, properties: Int64, members: Int64) {
        self.images = images
        self.tags = tags
        self.properties = properties
        self.members = members
    }

    public var description: String { "\(images) images, \(tags) tags, \(properties) properties, \(members) members" }
}

/// `imagestore db copy`: moves a whole catalogue (every image in every status, with its tags, properties
/// and members; dates and statuses unchanged) into an empty PostgreSQL database, in one transaction, and
/// checks the destination's row counts against what was read.
public enum CatalogueCopy {
    public static func copy(
        from source: any ImageRepository, to destination: PostgresImageRepository, timeout: Duration = .seconds(3600)
    ) async throws -> CatalogueCounts {
        let existing = try await destination.tableCounts()
        guard existing["images"] == 0 else {
            throw ImageStoreError.conflict(
                "the destination database already holds \(existing["images"] ?? 0) images; db copy only fills an empty one")
        }
        let images = try await source.images(withStatus: Set(ImageStatus.allCases))
        var members: [ImageMember] = []
        for image in images { members += try await source.members(of: image.id) }
        let expected = CatalogueCounts(
            images: Int64(images.count), tags: Int64(images.reduce(0) { $0 + $1.tags.count }),
            properties: Int64(images.reduce(0) { $0 + $1.properties.count }), members: Int64(members.count))
        try await destination.importCatalogue(images: images, members: members, timeout: timeout)
        let after = try await destination.tableCounts()
        let copied = CatalogueCounts(
            images: after["images"] ?? -1, tags: after["image_tags"] ?? -1, properties: after["image_properties"] ?? -1,
            members: after["image_members"] ?? -1)
        guard copied == expected else {
            throw ImageStoreError.internal("the copy is incomplete: read \(expected), the destination holds \(copied)")
        }
        return copied
    }
}
