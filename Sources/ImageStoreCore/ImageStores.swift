import Foundation

/// One named store of `enabled_backends`: its data store, its own guard, its weight and its own
/// reserve of free space. Each store is guarded on its own, so one share that goes away refuses
/// writes to that store only.
public struct NamedStore: Sendable {
    public let id: String
    public let store: any ImageDataStore
    public let writeGuard: any WriteGuard
    /// `weight`: downloads read the available copy of the highest weight first.
    public let weight: Int
    /// `filesystem_store_reserved_space` of this store, shared by every write to it.
    public let space: SpaceGate

    public init(
        id: String, store: any ImageDataStore, writeGuard: any WriteGuard = UnguardedStore(), weight: Int = 0,
        reservedSpace: ReservedSpace = .none
    ) {
        self.id = id
        self.store = store
        self.writeGuard = writeGuard
        self.weight = weight
        self.space = SpaceGate(reserve: reservedSpace) { [writeGuard, store] in
            if let capacity = try await writeGuard.freeSpace() { return capacity }
            return try await store.capacity()
        }
    }
}

/// The stores images live in, and which of them holds a given image.
///
/// Where an image's data is, is recorded on the image as the reserved property `os_glance_stores`
/// (comma-separated ids, Glance's `stores` field), written only in multi-store mode: clients can
/// never set an `os_glance_` property (403), every catalogue engine keeps properties already, and
/// an image without it (legacy mode, or uploaded before multi-store was turned on) is in the default
/// store, where it has always been.
public struct ImageStores: Sendable {
    /// In `enabled_backends` order.
    public let all: [NamedStore]
    public let defaultID: String
    /// `enabled_backends` is set: the image's stores are recorded and shown.
    public let isMultiStore: Bool

    public static let locationsProperty = "os_glance_stores"

    public init(_ all: [NamedStore], defaultID: String, isMultiStore: Bool) {
        precondition(all.contains { $0.id == defaultID }, "the default store must be one of the stores")
        self.all = all
        self.defaultID = defaultID
        self.isMultiStore = isMultiStore
    }

    /// One unnamed store (legacy mode, unit tests).
    public init(single store: any ImageDataStore, writeGuard: any WriteGuard, id: String = "file", reservedSpace: ReservedSpace = .none) {
        self.init([NamedStore(id: id, store: store, writeGuard: writeGuard, reservedSpace: reservedSpace)], defaultID: id, isMultiStore: false)
    }

    public var `default`: NamedStore { all.first { $0.id == defaultID }! }

    public func store(_ id: String) -> NamedStore? { all.first { $0.id == id } }

    /// The store `id` names, or 400 as Glance answers an unknown `X-Image-Meta-Store`.
    public func store(named id: String?) throws -> NamedStore {
        guard let id else { return self.default }
        guard let store = store(id) else {
            throw ImageStoreError.badRequest("Store for identifier \(id) not found")
        }
        return store
    }

    /// The ids of the stores holding the image's data, in the order recorded (empty without data).
    public func locations(of image: Image) -> [String] {
        guard let recorded = image.properties[Self.locationsProperty] else {
            return image.hasData || image.status == .pendingDelete ? [defaultID] : []
        }
        return Self.parse(recorded)
    }

    /// The image's stores, best first: highest weight, then configuration order. Unknown ids (a store
    /// removed from the configuration) are left out: there is nothing to read them with.
    public func readOrder(of image: Image) -> [NamedStore] {
        let ids = Set(locations(of: image))
        return all.enumerated().filter { ids.contains($0.element.id) }
            .sorted { $0.element.weight != $1.element.weight ? $0.element.weight > $1.element.weight : $0.offset < $1.offset }
            .map(\.element)
    }

    static func parse(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Records `ids` as where the image is (multi-store only; legacy images carry nothing).
    public func record(_ ids: [String], on image: inout Image) {
        guard isMultiStore else { return }
        var unique: [String] = []
        for id in ids where !unique.contains(id) { unique.append(id) }
        image.properties[Self.locationsProperty] = unique.joined(separator: ",")
    }
}
