import Foundation
import ImageStoreCore
import Logging
import PostgresNIO

/// The `MetadefRepository` on PostgreSQL: the images' database and pool (`PostgresImageRepository`),
/// tables from the `v3-metadefs` migration, so every replica of a deployment sees one catalogue.
/// Every call runs under the pool's deadline (503 past it). Multi-row changes are one transaction; names
/// are unique by primary key, so of concurrent creates of one name exactly one commits and the others
/// get `.conflict` (PostgreSQL's unique violation, 23505).
public final class PostgresMetadefRepository: MetadefRepository {
    private let database: PostgresImageRepository

    /// The catalogue in `images`' database.
    public init(sharing images: PostgresImageRepository) {
        self.database = images
    }

    public func createNamespace(
        _ namespace: MetadefNamespace, items: [MetadefItem], associations: [MetadefAssociation]
    ) async throws {
        try await database.perform("createNamespace") { connection in
            try await self.database.transaction(connection) { connection in
                try await self.insert(namespace, items: items, associations: associations, connection)
            }
        }
    }

    public func namespace(_ name: String) async throws -> MetadefNamespace? {
        try await database.perform("namespace") { connection in
            try await self.database.rows(
                connection, "SELECT \(Self.namespaceColumns) FROM metadef_namespaces WHERE namespace = $1", [.text(name)]
            ).first.map(Self.decodeNamespace)
        }
    }

    public func namespaces() async throws -> [MetadefNamespace] {
        try await database.perform("namespaces") { connection in
            try await self.database.rows(
                connection, "SELECT \(Self.namespaceColumns) FROM metadef_namespaces ORDER BY created_at, namespace", []
            ).map(Self.decodeNamespace)
        }
    }

    @discardableResult
    public func updateNamespace(_ name: String, to namespace: MetadefNamespace) async throws -> MetadefNamespace {
        let namespace = namespace.normalizedForStorage
        return try await database.perform("updateNamespace") { connection in
            do {
                // The children's rows follow a new name (ON UPDATE CASCADE).
                let updated = try await self.database.rows(
                    connection,
                    """
                    UPDATE metadef_namespaces SET namespace = $1, display_name = $2, description = $3, visibility = $4,
                        protected = $5, owner = $6, created_at = $7, updated_at = $8
                    WHERE namespace = $9 RETURNING namespace
                    """,
                    Self.namespaceValues(namespace) + [.text(name)])
                guard !updated.isEmpty else { throw MetadefErrors.namespaceNotFound(name) }
                return namespace
            } catch let error as PSQLError where error.sqlState == Self.uniqueViolation {
                throw MetadefErrors.duplicateNamespace(namespace.namespace)
            }
        }
    }

    @discardableResult
    public func deleteNamespace(_ name: String) async throws -> Bool {
        try await database.perform("deleteNamespace") { connection in
            // Items and associations go with it (ON DELETE CASCADE).
            !(try await self.database.rows(
                connection, "DELETE FROM metadef_namespaces WHERE namespace = $1 RETURNING namespace", [.text(name)]
            ).isEmpty)
        }
    }

    public func items(_ kind: MetadefKind, in namespace: String) async throws -> [MetadefItem] {
        try await database.perform("items") { connection in
            // One statement, one snapshot: the namespace's existence and its items agree.
            let rows = try await self.database.rows(
                connection,
                """
                SELECT n.namespace, i.kind, i.name, i.document, i.created_at, i.updated_at
                FROM metadef_namespaces n LEFT JOIN metadef_items i ON i.namespace = n.namespace AND i.kind = $2
                WHERE n.namespace = $1 ORDER BY i.created_at, i.name
                """,
                [.text(namespace), .text(kind.rawValue)])
            guard !rows.isEmpty else { throw MetadefErrors.namespaceNotFound(namespace) }
            return try rows.compactMap { row in
                let r = row.makeRandomAccess()
                guard try r[1].decode(String?.self) != nil else { return nil }
                return try Self.decodeItem(kind: r[1], name: r[2], document: r[3], created: r[4], updated: r[5])
            }
        }
    }

    public func item(_ kind: MetadefKind, named name: String, in namespace: String) async throws -> MetadefItem? {
        try await database.perform("item") { connection in
            try await self.database.rows(
                connection,
                "SELECT kind, name, document, created_at, updated_at FROM metadef_items WHERE namespace = $1 AND kind = $2 AND name = $3",
                [.text(namespace), .text(kind.rawValue), .text(name)]
            ).first.map { row in
                let r = row.makeRandomAccess()
                return try Self.decodeItem(kind: r[0], name: r[1], document: r[2], created: r[3], updated: r[4])
            }
        }
    }

    public func addItems(_ items: [MetadefItem], to namespace: String, replacing: MetadefKind?) async throws {
        try await database.perform("addItems") { connection in
            try await self.database.transaction(connection) { connection in
                // Locks the namespace row: a concurrent rename or delete waits for this transaction.
                let found = try await self.database.rows(
                    connection, "SELECT 1 FROM metadef_namespaces WHERE namespace = $1 FOR UPDATE", [.text(namespace)])
                guard !found.isEmpty else { throw MetadefErrors.namespaceNotFound(namespace) }
                if let replacing {
                    _ = try await self.database.rows(
                        connection, "DELETE FROM metadef_items WHERE namespace = $1 AND kind = $2",
                        [.text(namespace), .text(replacing.rawValue)])
                }
                try await self.insert(items, into: namespace, connection)
            }
        }
    }

    @discardableResult
    public func updateItem(
        _ kind: MetadefKind, named name: String, in namespace: String, to item: MetadefItem
    ) async throws -> MetadefItem {
        var stored = item.normalizedForStorage
        stored.kind = kind
        return try await database.perform("updateItem") { [stored] connection in
            do {
                let updated = try await self.database.rows(
                    connection,
                    """
                    UPDATE metadef_items SET name = $1, document = $2, created_at = $3, updated_at = $4
                    WHERE namespace = $5 AND kind = $6 AND name = $7 RETURNING name
                    """,
                    [
                        .text(stored.name), .text(stored.document), .real(stored.createdAt.timeIntervalSince1970),
                        .real(stored.updatedAt.timeIntervalSince1970), .text(namespace), .text(kind.rawValue), .text(name),
                    ])
                guard !updated.isEmpty else {
                    throw ImageStoreError.notFound("Metadata definition \(kind.rawValue)=\(name) not found in namespace=\(namespace).")
                }
                return stored
            } catch let error as PSQLError where error.sqlState == Self.uniqueViolation {
                throw MetadefErrors.duplicate(kind, stored.name, namespace)
            }
        }
    }

    @discardableResult
    public func removeItems(_ kind: MetadefKind, named name: String?, in namespace: String) async throws -> Int {
        try await database.perform("removeItems") { connection in
            var sql = "DELETE FROM metadef_items WHERE namespace = $1 AND kind = $2"
            var arguments: [SQLValue] = [.text(namespace), .text(kind.rawValue)]
            if let name {
                sql += " AND name = $3"
                arguments.append(.text(name))
            }
            return try await self.database.rows(connection, sql + " RETURNING name", arguments).count
        }
    }

    public func resourceTypes() async throws -> [MetadefResourceType] {
        try await database.perform("resourceTypes") { connection in
            try await self.database.rows(
                connection, "SELECT name, protected, created_at, updated_at FROM metadef_resource_types ORDER BY name", []
            ).map { row in
                let (name, isProtected, created, updated) = try row.decode((String, Bool, Double, Double).self)
                return MetadefResourceType(
                    name: name, isProtected: isProtected, createdAt: Date(timeIntervalSince1970: created),
                    updatedAt: Date(timeIntervalSince1970: updated))
            }
        }
    }

    public func associations(in namespace: String) async throws -> [MetadefAssociation] {
        try await database.perform("associations") { connection in
            let rows = try await self.database.rows(
                connection,
                """
                SELECT n.namespace, a.resource_type, a.prefix, a.properties_target, a.created_at, a.updated_at
                FROM metadef_namespaces n LEFT JOIN metadef_associations a ON a.namespace = n.namespace
                WHERE n.namespace = $1 ORDER BY a.created_at, a.resource_type
                """,
                [.text(namespace)])
            guard !rows.isEmpty else { throw MetadefErrors.namespaceNotFound(namespace) }
            return try rows.compactMap { row in
                let (_, type, prefix, target, created, updated) = try row.decode(
                    (String, String?, String?, String?, Double?, Double?).self)
                guard let type, let created, let updated else { return nil }
                return MetadefAssociation(
                    resourceType: type, prefix: prefix, propertiesTarget: target, createdAt: Date(timeIntervalSince1970: created),
                    updatedAt: Date(timeIntervalSince1970: updated))
            }
        }
    }

    public func associate(_ association: MetadefAssociation, with namespace: String) async throws {
        try await database.perform("associate") { connection in
            try await self.database.transaction(connection) { connection in
                let found = try await self.database.rows(
                    connection, "SELECT 1 FROM metadef_namespaces WHERE namespace = $1 FOR UPDATE", [.text(namespace)])
                guard !found.isEmpty else { throw MetadefErrors.namespaceNotFound(namespace) }
                try await self.insert(association, into: namespace, connection)
            }
        }
    }

    @discardableResult
    public func dissociate(_ resourceType: String, from namespace: String) async throws -> Bool {
        try await database.perform("dissociate") { connection in
            !(try await self.database.rows(
                connection, "DELETE FROM metadef_associations WHERE namespace = $1 AND resource_type = $2 RETURNING namespace",
                [.text(namespace), .text(resourceType)]
            ).isEmpty)
        }
    }

    // MARK: Rows (also used by `db copy`, inside its transaction)

    static let uniqueViolation = "23505"
    private static let namespaceColumns =
        "namespace, display_name, description, visibility, protected, owner, created_at, updated_at"

    /// Inserts a namespace with its children; call inside a transaction (a failure leaves nothing).
    func insert(
        _ namespace: MetadefNamespace, items: [MetadefItem], associations: [MetadefAssociation], _ connection: PostgresConnection
    ) async throws {
        let namespace = namespace.normalizedForStorage
        do {
            _ = try await database.rows(
                connection, "INSERT INTO metadef_namespaces (\(Self.namespaceColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                Self.namespaceValues(namespace))
        } catch let error as PSQLError where error.sqlState == Self.uniqueViolation {
            // Also the loser of two concurrent creates: it waited for the winner's commit, then collided.
            throw MetadefErrors.duplicateNamespace(namespace.namespace)
        }
        try await insert(items, into: namespace.namespace, connection)
        for association in associations { try await insert(association, into: namespace.namespace, connection) }
    }

    /// Row by row, so a clash names the item (a namespace holds tens of items, not thousands).
    private func insert(_ items: [MetadefItem], into namespace: String, _ connection: PostgresConnection) async throws {
        for item in items {
            let item = item.normalizedForStorage
            do {
                _ = try await database.rows(
                    connection,
                    "INSERT INTO metadef_items (namespace, kind, name, document, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    [
                        .text(namespace), .text(item.kind.rawValue), .text(item.name), .text(item.document),
                        .real(item.createdAt.timeIntervalSince1970), .real(item.updatedAt.timeIntervalSince1970),
                    ])
            } catch let error as PSQLError where error.sqlState == Self.uniqueViolation {
                throw MetadefErrors.duplicate(item.kind, item.name, namespace)
            }
        }
    }

    /// Creates the resource type when new (as Glance does), then the association.
    private func insert(_ association: MetadefAssociation, into namespace: String, _ connection: PostgresConnection) async throws {
        let a = association.normalizedForStorage
        _ = try await database.rows(
            connection,
            "INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) VALUES ($1, FALSE, $2, $2) "
                + "ON CONFLICT (name) DO NOTHING",
            [.text(a.resourceType), .real(a.createdAt.timeIntervalSince1970)])
        do {
            _ = try await database.rows(
                connection,
                """
                INSERT INTO metadef_associations (namespace, resource_type, prefix, properties_target, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                [
                    .text(namespace), .text(a.resourceType), a.prefix.map(SQLValue.text) ?? .null,
                    a.propertiesTarget.map(SQLValue.text) ?? .null, .real(a.createdAt.timeIntervalSince1970),
                    .real(a.updatedAt.timeIntervalSince1970),
                ])
        } catch let error as PSQLError where error.sqlState == Self.uniqueViolation {
            throw MetadefErrors.duplicateAssociation(a.resourceType, namespace)
        }
    }

    private static func namespaceValues(_ n: MetadefNamespace) -> [SQLValue] {
        [
            .text(n.namespace), n.displayName.map(SQLValue.text) ?? .null, n.description.map(SQLValue.text) ?? .null,
            .text(n.visibility), .bool(n.isProtected), n.owner.map(SQLValue.text) ?? .null,
            .real(n.createdAt.timeIntervalSince1970), .real(n.updatedAt.timeIntervalSince1970),
        ]
    }

    private static func decodeNamespace(_ row: PostgresRow) throws -> MetadefNamespace {
        let (name, displayName, description, visibility, isProtected, owner, created, updated) = try row.decode(
            (String, String?, String?, String, Bool, String?, Double, Double).self)
        return MetadefNamespace(
            namespace: name, displayName: displayName, description: description, visibility: visibility,
            isProtected: isProtected, owner: owner, createdAt: Date(timeIntervalSince1970: created),
            updatedAt: Date(timeIntervalSince1970: updated))
    }

    private static func decodeItem(
        kind: PostgresCell, name: PostgresCell, document: PostgresCell, created: PostgresCell, updated: PostgresCell
    ) throws -> MetadefItem {
        MetadefItem(
            kind: MetadefKind(rawValue: try kind.decode(String.self)) ?? .object, name: try name.decode(String.self),
            document: try document.decode(String.self), createdAt: Date(timeIntervalSince1970: try created.decode(Double.self)),
            updatedAt: Date(timeIntervalSince1970: try updated.decode(Double.self)))
    }
}
