import Foundation
import ImageStoreCore
import Logging

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
    public var metadefNamespaces: Int64
    /// Objects, properties and tags of the namespaces.
    public var metadefItems: Int64
    public var metadefAssociations: Int64
    public var tasks: Int64

    public init(
        images: Int64, tags: Int64, properties: Int64, members: Int64, metadefNamespaces: Int64 = 0, metadefItems: Int64 = 0,
        metadefAssociations: Int64 = 0, tasks: Int64 = 0
    ) {
        self.images = images
        self.tags = tags
        self.properties = properties
        self.members = members
        self.metadefNamespaces = metadefNamespaces
        self.metadefItems = metadefItems
        self.metadefAssociations = metadefAssociations
        self.tasks = tasks
    }

    public var description: String {
        "\(images) images, \(tags) tags, \(properties) properties, \(members) members, \(metadefNamespaces) metadef namespaces "
            + "(\(metadefItems) objects/properties/tags, \(metadefAssociations) resource type associations), \(tasks) tasks"
    }
}

/// A metadefs namespace with everything in it, as `db copy` moves it.
struct CopiedNamespace: Sendable {
    var namespace: MetadefNamespace
    var items: [MetadefItem]
    var associations: [MetadefAssociation]
}

/// `imagestore db copy`: moves a whole catalogue (every image in every status, with its tags, properties
/// and members; dates and statuses unchanged; the metadefs namespaces with their children and the tasks)
/// into an empty PostgreSQL database, in one transaction, and checks the destination's row counts
/// against what was read.
public enum CatalogueCopy {
    public static func copy(
        from source: any ImageRepository, to destination: PostgresImageRepository, timeout: Duration = .seconds(3600)
    ) async throws -> CatalogueCounts {
        let existing = try await destination.tableCounts()
        guard existing["images"] == 0 else {
            throw ImageStoreError.conflict(
                "the destination database already holds \(existing["images"] ?? 0) images; db copy only fills an empty one")
        }
        for table in ["metadef_namespaces", "tasks"] where existing[table] != 0 {
            throw ImageStoreError.conflict(
                "the destination database already holds \(existing[table] ?? 0) rows in \(table); db copy only fills an empty one")
        }
        let images = try await source.images(withStatus: Set(ImageStatus.allCases))
        var members: [ImageMember] = []
        for image in images { members += try await source.members(of: image.id) }
        let logger = Logger(label: "imagestore.db")
        let metadefs = CatalogueRepositories.metadefs(beside: source, logger: logger)
        var namespaces: [CopiedNamespace] = []
        for namespace in try await metadefs.namespaces() {
            var items: [MetadefItem] = []
            for kind in MetadefKind.allCases { items += try await metadefs.items(kind, in: namespace.namespace) }
            namespaces.append(
                CopiedNamespace(
                    namespace: namespace, items: items, associations: try await metadefs.associations(in: namespace.namespace)))
        }
        var everyTask = TaskListQuery()
        everyTask.limit = Int.max
        let tasks = try await CatalogueRepositories.tasks(beside: source, logger: logger).tasks(everyTask)
        let expected = CatalogueCounts(
            images: Int64(images.count), tags: Int64(images.reduce(0) { $0 + $1.tags.count }),
            properties: Int64(images.reduce(0) { $0 + $1.properties.count }), members: Int64(members.count),
            metadefNamespaces: Int64(namespaces.count), metadefItems: Int64(namespaces.reduce(0) { $0 + $1.items.count }),
            metadefAssociations: Int64(namespaces.reduce(0) { $0 + $1.associations.count }), tasks: Int64(tasks.count))
        try await destination.importCatalogue(
            images: images, members: members, namespaces: namespaces, tasks: tasks, timeout: timeout)
        let after = try await destination.tableCounts()
        let copied = CatalogueCounts(
            images: after["images"] ?? -1, tags: after["image_tags"] ?? -1, properties: after["image_properties"] ?? -1,
            members: after["image_members"] ?? -1, metadefNamespaces: after["metadef_namespaces"] ?? -1,
            metadefItems: after["metadef_items"] ?? -1, metadefAssociations: after["metadef_associations"] ?? -1,
            tasks: after["tasks"] ?? -1)
        guard copied == expected else {
            throw ImageStoreError.internal("the copy is incomplete: read \(expected), the destination holds \(copied)")
        }
        return copied
    }
}
