import Foundation

/// A metadata definitions namespace (Glance's `metadefs` catalogue): a named group of objects,
/// properties and tags that Horizon offers when editing images, flavors, volumes…
public struct MetadefNamespace: Sendable, Equatable {
    /// The unique name (Glance's `namespace`), also the key in every URL.
    public var namespace: String
    public var displayName: String?
    public var description: String?
    /// `public` or `private`.
    public var visibility: String
    /// A protected namespace (and everything in it) cannot be deleted.
    public var isProtected: Bool
    public var owner: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        namespace: String, displayName: String? = nil, description: String? = nil, visibility: String = "private",
        isProtected: Bool = false, owner: String? = nil, createdAt: Date = Date(), updatedAt: Date? = nil
    ) {
        self.namespace = namespace
        self.displayName = displayName
        self.description = description
        self.visibility = visibility
        self.isProtected = isProtected
        self.owner = owner
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }
}

/// What a namespace holds, besides resource type associations.
public enum MetadefKind: String, Sendable, CaseIterable {
    case object, property, tag
}

/// An object, property or tag of a namespace. Its definition is kept as the JSON text the API
/// validated (a JSON-schema fragment for properties and objects, `{}` for tags): the repository
/// stores it, it does not interpret it.
public struct MetadefItem: Sendable, Equatable {
    public var kind: MetadefKind
    public var name: String
    public var document: String
    public var createdAt: Date
    public var updatedAt: Date

    public init(kind: MetadefKind, name: String, document: String = "{}", createdAt: Date = Date(), updatedAt: Date? = nil) {
        self.kind = kind
        self.name = name
        self.document = document
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }
}

/// A kind of resource namespaces apply to (`OS::Glance::Image`, `OS::Nova::Flavor`, …).
public struct MetadefResourceType: Sendable, Equatable {
    public var name: String
    /// Seeded system types are protected.
    public var isProtected: Bool
    public var createdAt: Date
    public var updatedAt: Date

    public init(name: String, isProtected: Bool = false, createdAt: Date = Date(), updatedAt: Date? = nil) {
        self.name = name
        self.isProtected = isProtected
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }

    /// The types every new database starts with, as Glance's schema seeded them: `list resource_types`
    /// is never empty, and the stock namespace files associate with these.
    public static let seeded = ["OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor", "OS::Nova::Aggregate", "OS::Nova::Server"]
}

/// A namespace applying to a resource type; `prefix` is put before its property names for that type.
public struct MetadefAssociation: Sendable, Equatable {
    public var resourceType: String
    public var prefix: String?
    public var propertiesTarget: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        resourceType: String, prefix: String? = nil, propertiesTarget: String? = nil, createdAt: Date = Date(),
        updatedAt: Date? = nil
    ) {
        self.resourceType = resourceType
        self.prefix = prefix
        self.propertiesTarget = propertiesTarget
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }
}

/// Where metadata definitions live (SQLite beside the images, in-memory for tests). Policy, visibility
/// and `protected` are the API's to enforce; this seam keeps the catalogue consistent: names unique
/// (`.conflict`), children only in existing namespaces (`.notFound`), and a namespace's children gone or
/// renamed with it. Every implementation passes the same conformance suite (`MetadefRepositoryConformance`).
public protocol MetadefRepository: Sendable {
    /// A new namespace with its first children, all or nothing. `.conflict` if the name is taken or a
    /// child name repeats.
    func createNamespace(_ namespace: MetadefNamespace, items: [MetadefItem], associations: [MetadefAssociation]) async throws

    func namespace(_ name: String) async throws -> MetadefNamespace?

    /// Every namespace, oldest first (`createdAt`, then name).
    func namespaces() async throws -> [MetadefNamespace]

    /// Replaces the namespace `name` by `namespace` (which may carry a new name: its children follow).
    /// `.notFound` when missing, `.conflict` when the new name is taken.
    @discardableResult
    func updateNamespace(_ name: String, to namespace: MetadefNamespace) async throws -> MetadefNamespace

    /// Removes a namespace and everything in it. False if there was none.
    @discardableResult
    func deleteNamespace(_ name: String) async throws -> Bool

    /// The namespace's items of one kind, oldest first (`createdAt`, then name). `.notFound` for an unknown namespace.
    func items(_ kind: MetadefKind, in namespace: String) async throws -> [MetadefItem]

    func item(_ kind: MetadefKind, named name: String, in namespace: String) async throws -> MetadefItem?

    /// Adds items, all or nothing. With `replacing`, the namespace's items of that kind are removed first
    /// (Glance's bulk tag create). `.notFound` for an unknown namespace, `.conflict` for a name that exists
    /// or repeats.
    func addItems(_ items: [MetadefItem], to namespace: String, replacing: MetadefKind?) async throws

    /// Replaces item `name` of `kind` by `item` (possibly renamed). `.notFound`, or `.conflict` when the new name is taken.
    @discardableResult
    func updateItem(_ kind: MetadefKind, named name: String, in namespace: String, to item: MetadefItem) async throws -> MetadefItem

    /// Removes one item (`name`) or all of a kind (nil). Returns how many went.
    @discardableResult
    func removeItems(_ kind: MetadefKind, named name: String?, in namespace: String) async throws -> Int

    /// Every resource type, by name.
    func resourceTypes() async throws -> [MetadefResourceType]

    /// The namespace's associations, oldest first. `.notFound` for an unknown namespace.
    func associations(in namespace: String) async throws -> [MetadefAssociation]

    /// Associates a namespace with a resource type, creating the type when it is new (as Glance does).
    /// `.notFound` for an unknown namespace, `.conflict` when already associated.
    func associate(_ association: MetadefAssociation, with namespace: String) async throws

    @discardableResult
    func dissociate(_ resourceType: String, from namespace: String) async throws -> Bool
}

/// Glance's messages for catalogue errors, shared by every implementation.
public enum MetadefErrors {
    public static func duplicate(_ kind: MetadefKind, _ name: String, _ namespace: String) -> ImageStoreError {
        switch kind {
        case .object:
            .conflict("A metadata definition object with name=\(name) already exists in namespace=\(namespace).")
        case .property:
            .conflict("A metadata definition property with name=\(name) already exists in namespace=\(namespace).")
        case .tag:
            .conflict("A metadata tag with name=\(name) already exists in namespace=\(namespace).")
        }
    }

    public static func duplicateNamespace(_ name: String) -> ImageStoreError {
        .conflict("The metadata definition namespace=\(name) already exists.")
    }

    public static func namespaceNotFound(_ name: String) -> ImageStoreError {
        .notFound("Metadata definition namespace=\(name) was not found.")
    }

    public static func duplicateAssociation(_ type: String, _ namespace: String) -> ImageStoreError {
        .conflict(
            "The metadata definition resource-type association of resource-type=\(type) to namespace=\(namespace) already exists.")
    }
}
