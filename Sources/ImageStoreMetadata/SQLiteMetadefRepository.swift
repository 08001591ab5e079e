import Foundation
import GRDB
import ImageStoreCore
import Logging

/// The `MetadefRepository` on SQLite: the same database (and connection pool) as the images, tables
/// from the `v3-metadefs` migration. Multi-row changes run in one transaction, so a failed bulk create
/// leaves nothing behind; uniqueness is the primary keys', so concurrent creates cannot both succeed.
public final class SQLiteMetadefRepository: MetadefRepository {
    private let access: SQLiteAccess
    private var writer: any DatabaseWriter { access.writer }

    /// The catalogue in `images`' database.
    public init(sharing images: SQLiteImageRepository, logger: Logger) {
        self.access = images.access
    }

    public func createNamespace(
        _ namespace: MetadefNamespace, items: [MetadefItem], associations: [MetadefAssociation]
    ) async throws {
        let namespace = namespace.normalizedForStorage
        try await access.write("createNamespace") { db in
            if try Self.exists(db, namespace.namespace) { throw MetadefErrors.duplicateNamespace(namespace.namespace) }
            try db.execute(
                sql: """
                    INSERT INTO metadef_namespaces
                        (namespace, display_name, description, visibility, protected, owner, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: Self.namespaceRow(namespace))
            try Self.insert(items, into: namespace.namespace, db)
            for association in associations { try Self.insert(association, into: namespace.namespace, db) }
        }
    }

    public func namespace(_ name: String) async throws -> MetadefNamespace? {
        try await access.perform("namespace") {
            try await self.writer.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM metadef_namespaces WHERE namespace = ?", arguments: [name])
                    .map(Self.namespace(from:))
            }
        }
    }

    public func namespaces() async throws -> [MetadefNamespace] {
        try await access.perform("namespaces") {
            try await self.writer.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM metadef_namespaces ORDER BY created_at, namespace")
                    .map(Self.namespace(from:))
            }
        }
    }

    @discardableResult
    public func updateNamespace(_ name: String, to namespace: MetadefNamespace) async throws -> MetadefNamespace {
        let namespace = namespace.normalizedForStorage
        return try await access.write("updateNamespace") { db in
            guard try Self.exists(db, name) else { throw MetadefErrors.namespaceNotFound(name) }
            if namespace.namespace != name, try Self.exists(db, namespace.namespace) {
                throw MetadefErrors.duplicateNamespace(namespace.namespace)
            }
            // The children's rows follow the new name (ON UPDATE CASCADE).
            try db.execute(
                sql: """
                    UPDATE metadef_namespaces SET namespace = ?, display_name = ?, description = ?, visibility = ?,
                        protected = ?, owner = ?, created_at = ?, updated_at = ?
                    WHERE namespace = ?
                    """,
                arguments: Self.namespaceRow(namespace) + [name])
            return namespace
        }
    }

    @discardableResult
    public func deleteNamespace(_ name: String) async throws -> Bool {
        try await access.write("deleteNamespace") { db in
            try db.execute(sql: "DELETE FROM metadef_namespaces WHERE namespace = ?", arguments: [name])
            return db.changesCount > 0
        }
    }

    public func items(_ kind: MetadefKind, in namespace: String) async throws -> [MetadefItem] {
        try await access.perform("items") {
            try await self.writer.read { db in
                guard try Self.exists(db, namespace) else { throw MetadefErrors.namespaceNotFound(namespace) }
                return try Row.fetchAll(
                    db, sql: "SELECT * FROM metadef_items WHERE namespace = ? AND kind = ? ORDER BY created_at, name",
                    arguments: [namespace, kind.rawValue]
                ).map(Self.item(from:))
            }
        }
    }

    public func item(_ kind: MetadefKind, named name: String, in namespace: String) async throws -> MetadefItem? {
        try await access.perform("item") {
            try await self.writer.read { db in
                try Row.fetchOne(
                    db, sql: "SELECT * FROM metadef_items WHERE namespace = ? AND kind = ? AND name = ?",
                    arguments: [namespace, kind.rawValue, name]
                ).map(Self.item(from:))
            }
        }
    }

    public func addItems(_ items: [MetadefItem], to namespace: String, replacing: MetadefKind?) async throws {
        try await access.write("addItems") { db in
            guard try Self.exists(db, namespace) else { throw MetadefErrors.namespaceNotFound(namespace) }
            if let replacing {
                try db.execute(
                    sql: "DELETE FROM metadef_items WHERE namespace = ? AND kind = ?", arguments: [namespace, replacing.rawValue])
            }
            try Self.insert(items, into: namespace, db)
        }
    }

    @discardableResult
    public func updateItem(
        _ kind: MetadefKind, named name: String, in namespace: String, to item: MetadefItem
    ) async throws
        -> MetadefItem
    {
        var stored = item.normalizedForStorage
        stored.kind = kind
        return try await access.write("updateItem") { [stored] db in
            let old = try Row.fetchOne(
                db, sql: "SELECT 1 FROM metadef_items WHERE namespace = ? AND kind = ? AND name = ?",
                arguments: [namespace, kind.rawValue, name])
            guard old != nil else {
                throw ImageStoreError.notFound("Metadata definition \(kind.rawValue)=\(name) not found in namespace=\(namespace).")
            }
            do {
                try db.execute(
                    sql: """
                        UPDATE metadef_items SET name = ?, document = ?, created_at = ?, updated_at = ?
                        WHERE namespace = ? AND kind = ? AND name = ?
                        """,
                    arguments: [
                        stored.name, stored.document, stored.createdAt.timeIntervalSince1970,
                        stored.updatedAt.timeIntervalSince1970, namespace, kind.rawValue, name,
                    ])
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw MetadefErrors.duplicate(kind, stored.name, namespace)
            }
            return stored
        }
    }

    @discardableResult
    public func removeItems(_ kind: MetadefKind, named name: String?, in namespace: String) async throws -> Int {
        try await access.write("removeItems") { db in
            if let name {
                try db.execute(
                    sql: "DELETE FROM metadef_items WHERE namespace = ? AND kind = ? AND name = ?",
                    arguments: [namespace, kind.rawValue, name])
            } else {
                try db.execute(
                    sql: "DELETE FROM metadef_items WHERE namespace = ? AND kind = ?", arguments: [namespace, kind.rawValue])
            }
            return db.changesCount
        }
    }

    public func resourceTypes() async throws -> [MetadefResourceType] {
        try await access.perform("resourceTypes") {
            try await self.writer.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM metadef_resource_types ORDER BY name").map { row in
                    MetadefResourceType(
                        name: row["name"], isProtected: row["protected"],
                        createdAt: Date(timeIntervalSince1970: row["created_at"]),
                        updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
                }
            }
        }
    }

    public func associations(in namespace: String) async throws -> [MetadefAssociation] {
        try await access.perform("associations") {
            try await self.writer.read { db in
                guard try Self.exists(db, namespace) else { throw MetadefErrors.namespaceNotFound(namespace) }
                return try Row.fetchAll(
                    db, sql: "SELECT * FROM metadef_associations WHERE namespace = ? ORDER BY created_at, resource_type",
                    arguments: [namespace]
                ).map { row in
                    MetadefAssociation(
                        resourceType: row["resource_type"], prefix: row["prefix"], propertiesTarget: row["properties_target"],
                        createdAt: Date(timeIntervalSince1970: row["created_at"]),
                        updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
                }
            }
        }
    }

    public func associate(_ association: MetadefAssociation, with namespace: String) async throws {
        try await access.write("associate") { db in
            guard try Self.exists(db, namespace) else { throw MetadefErrors.namespaceNotFound(namespace) }
            try Self.insert(association, into: namespace, db)
        }
    }

    @discardableResult
    public func dissociate(_ resourceType: String, from namespace: String) async throws -> Bool {
        try await access.write("dissociate") { db in
            try db.execute(
                sql: "DELETE FROM metadef_associations WHERE namespace = ? AND resource_type = ?",
                arguments: [namespace, resourceType])
            return db.changesCount > 0
        }
    }

    // MARK: Rows

    private static func exists(_ db: Database, _ namespace: String) throws -> Bool {
        try Row.fetchOne(db, sql: "SELECT 1 FROM metadef_namespaces WHERE namespace = ?", arguments: [namespace]) != nil
    }

    private static func namespaceRow(_ n: MetadefNamespace) -> StatementArguments {
        [
            n.namespace, n.displayName, n.description, n.visibility, n.isProtected, n.owner, n.createdAt.timeIntervalSince1970,
            n.updatedAt.timeIntervalSince1970,
        ]
    }

    private static func namespace(from row: Row) -> MetadefNamespace {
        MetadefNamespace(
            namespace: row["namespace"], displayName: row["display_name"], description: row["description"],
            visibility: row["visibility"], isProtected: row["protected"], owner: row["owner"],
            createdAt: Date(timeIntervalSince1970: row["created_at"]), updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
    }

    private static func item(from row: Row) -> MetadefItem {
        MetadefItem(
            kind: MetadefKind(rawValue: row["kind"]) ?? .object, name: row["name"], document: row["document"],
            createdAt: Date(timeIntervalSince1970: row["created_at"]), updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
    }

    private static func insert(_ items: [MetadefItem], into namespace: String, _ db: Database) throws {
        for item in items {
            let item = item.normalizedForStorage
            do {
                try db.execute(
                    sql: """
                        INSERT INTO metadef_items (namespace, kind, name, document, created_at, updated_at)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        namespace, item.kind.rawValue, item.name, item.document, item.createdAt.timeIntervalSince1970,
                        item.updatedAt.timeIntervalSince1970,
                    ])
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw MetadefErrors.duplicate(item.kind, item.name, namespace)
            }
        }
    }

    /// Creates the resource type when new (as Glance does), then the association.
    private static func insert(_ association: MetadefAssociation, into namespace: String, _ db: Database) throws {
        let a = association.normalizedForStorage
        try db.execute(
            sql: """
                INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) VALUES (?, 0, ?, ?)
                ON CONFLICT (name) DO NOTHING
                """,
            arguments: [a.resourceType, a.createdAt.timeIntervalSince1970, a.createdAt.timeIntervalSince1970])
        do {
            try db.execute(
                sql: """
                    INSERT INTO metadef_associations (namespace, resource_type, prefix, properties_target, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    namespace, a.resourceType, a.prefix, a.propertiesTarget, a.createdAt.timeIntervalSince1970,
                    a.updatedAt.timeIntervalSince1970,
                ])
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
            throw MetadefErrors.duplicateAssociation(a.resourceType, namespace)
        }
    }

}
