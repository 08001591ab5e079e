import Foundation
import ImageStoreCore

/// A `MetadefRepository` held in memory (tests, and the catalogue of a server whose images are in
/// memory). Same contract as `SQLiteMetadefRepository`, checked by the same conformance suite; being an
/// actor makes every multi-step change atomic.
public actor InMemoryMetadefRepository: MetadefRepository {
    private struct Entry {
        var namespace: MetadefNamespace
        var items: [MetadefKind: [String: MetadefItem]] = [:]
        var associations: [String: MetadefAssociation] = [:]
    }

    private var entries: [String: Entry] = [:]
    private var types: [String: MetadefResourceType] = [:]

    public init() {
        let now = StoredDate.normalized(Date())
        for name in MetadefResourceType.seeded {
            types[name] = MetadefResourceType(name: name, isProtected: true, createdAt: now)
        }
    }

    public func createNamespace(
        _ namespace: MetadefNamespace, items: [MetadefItem], associations: [MetadefAssociation]
    ) throws {
        guard entries[namespace.namespace] == nil else { throw MetadefErrors.duplicateNamespace(namespace.namespace) }
        var entry = Entry(namespace: namespace.normalizedForStorage)
        try Self.insert(items, into: &entry)
        for association in associations {
            guard entry.associations[association.resourceType] == nil else {
                throw MetadefErrors.duplicateAssociation(association.resourceType, namespace.namespace)
            }
            entry.associations[association.resourceType] = association.normalizedForStorage
        }
        for association in associations { addType(association.resourceType) }
        entries[namespace.namespace] = entry
    }

    public func namespace(_ name: String) -> MetadefNamespace? { entries[name]?.namespace }

    public func namespaces() -> [MetadefNamespace] {
        entries.values.map(\.namespace).sorted { oldestFirst($0.createdAt, $0.namespace, $1.createdAt, $1.namespace) }
    }

    public func updateNamespace(_ name: String, to namespace: MetadefNamespace) throws -> MetadefNamespace {
        guard var entry = entries[name] else { throw MetadefErrors.namespaceNotFound(name) }
        if namespace.namespace != name, entries[namespace.namespace] != nil {
            throw MetadefErrors.duplicateNamespace(namespace.namespace)
        }
        entry.namespace = namespace.normalizedForStorage
        entries[name] = nil
        entries[namespace.namespace] = entry
        return entry.namespace
    }

    public func deleteNamespace(_ name: String) -> Bool { entries.removeValue(forKey: name) != nil }

    public func items(_ kind: MetadefKind, in namespace: String) throws -> [MetadefItem] {
        guard let entry = entries[namespace] else { throw MetadefErrors.namespaceNotFound(namespace) }
        return (entry.items[kind] ?? [:]).values.sorted { oldestFirst($0.createdAt, $0.name, $1.createdAt, $1.name) }
    }

    public func item(_ kind: MetadefKind, named name: String, in namespace: String) -> MetadefItem? {
        entries[namespace]?.items[kind]?[name]
    }

    public func addItems(_ items: [MetadefItem], to namespace: String, replacing: MetadefKind?) throws {
        guard var entry = entries[namespace] else { throw MetadefErrors.namespaceNotFound(namespace) }
        if let replacing { entry.items[replacing] = [:] }
        try Self.insert(items, into: &entry)
        entries[namespace] = entry
    }

    public func updateItem(_ kind: MetadefKind, named name: String, in namespace: String, to item: MetadefItem) throws -> MetadefItem {
        guard var entry = entries[namespace] else { throw MetadefErrors.namespaceNotFound(namespace) }
        guard entry.items[kind]?[name] != nil else { throw ImageStoreError.notFound("Metadata definition \(kind.rawValue)=\(name) not found in namespace=\(namespace).") }
        if item.name != name, entry.items[kind]?[item.name] != nil { throw MetadefErrors.duplicate(kind, item.name, namespace) }
        var stored = item.normalizedForStorage
        stored.kind = kind
        entry.items[kind]?[name] = nil
        entry.items[kind]?[item.name] = stored
        entries[namespace] = entry
        return stored
    }

    public func removeItems(_ kind: MetadefKind, named name: String?, in namespace: String) -> Int {
        guard var entry = entries[namespace] else { return 0 }
        let removed: Int
        if let name {
            removed = entry.items[kind]?.removeValue(forKey: name) == nil ? 0 : 1
        } else {
            removed = entry.items[kind]?.count ?? 0
            entry.items[kind] = [:]
        }
        entries[namespace] = entry
        return removed
    }

    public func resourceTypes() -> [MetadefResourceType] { types.values.sorted { Array($0.name.utf8).lexicographicallyPrecedes($1.name.utf8) } }

    public func associations(in namespace: String) throws -> [MetadefAssociation] {
        guard let entry = entries[namespace] else { throw MetadefErrors.namespaceNotFound(namespace) }
        return entry.associations.values.sorted { oldestFirst($0.createdAt, $0.resourceType, $1.createdAt, $1.resourceType) }
    }

    public func associate(_ association: MetadefAssociation, with namespace: String) throws {
        guard entries[namespace] != nil else { throw MetadefErrors.namespaceNotFound(namespace) }
        guard entries[namespace]?.associations[association.resourceType] == nil else {
            throw MetadefErrors.duplicateAssociation(association.resourceType, namespace)
        }
        addType(association.resourceType)
        entries[namespace]?.associations[association.resourceType] = association.normalizedForStorage
    }

    public func dissociate(_ resourceType: String, from namespace: String) -> Bool {
        entries[namespace]?.associations.removeValue(forKey: resourceType) != nil
    }

    private func addType(_ name: String) {
        if types[name] == nil { types[name] = MetadefResourceType(name: name, createdAt: StoredDate.normalized(Date())) }
    }

    private static func insert(_ items: [MetadefItem], into entry: inout Entry) throws {
        for item in items {
            guard entry.items[item.kind]?[item.name] == nil else {
                throw MetadefErrors.duplicate(item.kind, item.name, entry.namespace.namespace)
            }
            entry.items[item.kind, default: [:]][item.name] = item.normalizedForStorage
        }
    }
}

extension MetadefNamespace: StoredTimestamps {}
extension MetadefItem: StoredTimestamps {}
extension MetadefAssociation: StoredTimestamps {}

/// Oldest first, then by name in byte order (SQLite's BINARY collation): the catalogue's list order.
func oldestFirst(_ date: Date, _ name: String, _ otherDate: Date, _ otherName: String) -> Bool {
    date != otherDate ? date < otherDate : Array(name.utf8).lexicographicallyPrecedes(otherName.utf8)
}
