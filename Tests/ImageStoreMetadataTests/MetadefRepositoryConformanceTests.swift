import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreTestSupport
import Testing

/// Makes a fresh `MetadefRepository` of one implementation.
typealias MetadefFactory = SharingRepositoryFactory<any MetadefRepository>

extension SharingRepositoryFactory where Repository == any MetadefRepository {
    static var all: [Self] {
        engines(inMemory: { InMemoryMetadefRepository() }, sqlite: { SQLiteMetadefRepository(sharing: $0, logger: testLogger) }, postgres: { PostgresMetadefRepository(sharing: $0) })
    }
}

/// The `MetadefRepository` contract, run against every implementation.
@Suite struct MetadefRepositoryConformanceTests {
    static let t0 = Date(timeIntervalSince1970: 1_700_000_000.5)

    static func namespace(_ name: String, at offset: TimeInterval = 0, owner: String? = "p1") -> MetadefNamespace {
        MetadefNamespace(
            namespace: name, displayName: "Display \(name)", description: nil, visibility: "public", isProtected: false,
            owner: owner, createdAt: t0.addingTimeInterval(offset))
    }

    @Test(arguments: MetadefFactory.all)
    func createNamespace_withChildren_roundTrips(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            let ns = Self.namespace("OS::Test")
            let object = MetadefItem(kind: .object, name: "obj", document: #"{"description":"d"}"#, createdAt: Self.t0)
            let property = MetadefItem(kind: .property, name: "hw_x", document: #"{"title":"X","type":"string"}"#, createdAt: Self.t0)
            let tag = MetadefItem(kind: .tag, name: "fast", createdAt: Self.t0)
            let association = MetadefAssociation(resourceType: "OS::Glance::Image", prefix: "hw_", createdAt: Self.t0)
            try await repo.createNamespace(ns, items: [object, property, tag], associations: [association])
            #expect(try await repo.namespace("OS::Test") == ns)
            #expect(try await repo.items(.object, in: "OS::Test") == [object])
            #expect(try await repo.items(.property, in: "OS::Test") == [property])
            #expect(try await repo.items(.tag, in: "OS::Test") == [tag])
            #expect(try await repo.item(.property, named: "hw_x", in: "OS::Test") == property)
            #expect(try await repo.item(.object, named: "hw_x", in: "OS::Test") == nil)
            #expect(try await repo.associations(in: "OS::Test") == [association])
            #expect(try await repo.namespace("OS::Other") == nil)
        }
    }

    @Test(arguments: MetadefFactory.all)
    func createNamespace_duplicateOrRepeatedChild_isConflict_andLeavesNothing(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            try await repo.createNamespace(Self.namespace("a"), items: [], associations: [])
            await expectError(.conflict) { try await repo.createNamespace(Self.namespace("a", at: 1), items: [], associations: []) }
            let tag = MetadefItem(kind: .tag, name: "t")
            await expectError(.conflict) { try await repo.createNamespace(Self.namespace("b"), items: [tag, tag], associations: []) }
            #expect(try await repo.namespace("b") == nil)
            #expect(try await repo.namespaces().map(\.namespace) == ["a"])
        }
    }

    @Test(arguments: MetadefFactory.all)
    func namespaces_oldestFirst_thenByName(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            for (name, offset) in [("c", 0.0), ("b", 1.0), ("a", 1.0), ("d", -1.0)] {
                try await repo.createNamespace(Self.namespace(name, at: offset), items: [], associations: [])
            }
            #expect(try await repo.namespaces().map(\.namespace) == ["d", "c", "a", "b"])
        }
    }

    @Test(arguments: MetadefFactory.all)
    func updateNamespace_renamesWithChildren_conflictAndNotFound(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            try await repo.createNamespace(
                Self.namespace("old"), items: [MetadefItem(kind: .tag, name: "t", createdAt: Self.t0)],
                associations: [MetadefAssociation(resourceType: "OS::Nova::Flavor", createdAt: Self.t0)])
            try await repo.createNamespace(Self.namespace("taken"), items: [], associations: [])
            var renamed = Self.namespace("new")
            renamed.visibility = "private"
            renamed.isProtected = true
            renamed.updatedAt = Self.t0.addingTimeInterval(5)
            await expectError(.conflict) {
                var clash = renamed
                clash.namespace = "taken"
                return try await repo.updateNamespace("old", to: clash)
            }
            await expectError(.notFound) { try await repo.updateNamespace("missing", to: renamed) }
            #expect(try await repo.updateNamespace("old", to: renamed) == renamed)
            #expect(try await repo.namespace("old") == nil)
            #expect(try await repo.namespace("new") == renamed)
            #expect(try await repo.items(.tag, in: "new").map(\.name) == ["t"])
            #expect(try await repo.associations(in: "new").map(\.resourceType) == ["OS::Nova::Flavor"])
        }
    }

    @Test(arguments: MetadefFactory.all)
    func deleteNamespace_takesChildren_andUnknownIsFalse(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            try await repo.createNamespace(
                Self.namespace("n"), items: [MetadefItem(kind: .object, name: "o")],
                associations: [MetadefAssociation(resourceType: "OS::Glance::Image")])
            #expect(try await repo.deleteNamespace("n"))
            #expect(try await repo.deleteNamespace("n") == false)
            await expectError(.notFound) { try await repo.items(.object, in: "n") }
            await expectError(.notFound) { try await repo.associations(in: "n") }
            // Recreated under the same name: nothing of the old one comes back.
            try await repo.createNamespace(Self.namespace("n"), items: [], associations: [])
            #expect(try await repo.items(.object, in: "n").isEmpty)
            #expect(try await repo.associations(in: "n").isEmpty)
        }
    }

    @Test(arguments: MetadefFactory.all)
    func addItems_replacingOrAppending_isAllOrNothing(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            try await repo.createNamespace(Self.namespace("n"), items: [], associations: [])
            let tags = ["a", "b", "c"].enumerated().map { MetadefItem(kind: .tag, name: $1, createdAt: Self.t0.addingTimeInterval(Double($0))) }
            try await repo.addItems(tags, to: "n", replacing: .tag)
            await expectError(.conflict) { try await repo.addItems([MetadefItem(kind: .tag, name: "b")], to: "n", replacing: nil) }
            // A clash inside a replacing batch keeps the old tags.
            let clash = [MetadefItem(kind: .tag, name: "x"), MetadefItem(kind: .tag, name: "x")]
            await expectError(.conflict) { try await repo.addItems(clash, to: "n", replacing: .tag) }
            #expect(try await repo.items(.tag, in: "n").map(\.name) == ["a", "b", "c"])
            try await repo.addItems([MetadefItem(kind: .tag, name: "z", createdAt: Self.t0)], to: "n", replacing: .tag)
            #expect(try await repo.items(.tag, in: "n").map(\.name) == ["z"])
            // Same name, other kind: no clash.
            try await repo.addItems([MetadefItem(kind: .object, name: "z")], to: "n", replacing: nil)
            await expectError(.notFound) { try await repo.addItems(tags, to: "missing", replacing: nil) }
        }
    }

    @Test(arguments: MetadefFactory.all)
    func updateItem_renames_conflictAndNotFound(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            try await repo.createNamespace(
                Self.namespace("n"),
                items: [MetadefItem(kind: .property, name: "p1", document: "{}"), MetadefItem(kind: .property, name: "p2")],
                associations: [])
            let changed = MetadefItem(kind: .property, name: "p3", document: #"{"title":"T","type":"string"}"#, createdAt: Self.t0)
            await expectError(.conflict) {
                try await repo.updateItem(.property, named: "p1", in: "n", to: MetadefItem(kind: .property, name: "p2"))
            }
            await expectError(.notFound) { try await repo.updateItem(.property, named: "nope", in: "n", to: changed) }
            #expect(try await repo.updateItem(.property, named: "p1", in: "n", to: changed) == changed)
            #expect(try await repo.item(.property, named: "p1", in: "n") == nil)
            #expect(try await repo.item(.property, named: "p3", in: "n") == changed)
        }
    }

    @Test(arguments: MetadefFactory.all)
    func removeItems_oneOrAllOfAKind(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            try await repo.createNamespace(
                Self.namespace("n"),
                items: [MetadefItem(kind: .object, name: "o1"), MetadefItem(kind: .object, name: "o2"), MetadefItem(kind: .tag, name: "o1")],
                associations: [])
            #expect(try await repo.removeItems(.object, named: "o1", in: "n") == 1)
            #expect(try await repo.removeItems(.object, named: "o1", in: "n") == 0)
            #expect(try await repo.item(.tag, named: "o1", in: "n") != nil)
            try await repo.addItems([MetadefItem(kind: .object, name: "o3")], to: "n", replacing: nil)
            #expect(try await repo.removeItems(.object, named: nil, in: "n") == 2)
            #expect(try await repo.items(.object, in: "n").isEmpty)
            #expect(try await repo.items(.tag, in: "n").count == 1)
        }
    }

    @Test(arguments: MetadefFactory.all)
    func resourceTypes_seeded_andCreatedByAssociation(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            let seeded = try await repo.resourceTypes()
            #expect(Set(seeded.map(\.name)) == Set(MetadefResourceType.seeded))
            #expect(seeded.allSatisfy { $0.isProtected })
            try await repo.createNamespace(Self.namespace("n"), items: [], associations: [])
            let association = MetadefAssociation(resourceType: "OS::Custom::Thing", prefix: "x_", propertiesTarget: "image", createdAt: Self.t0)
            try await repo.associate(association, with: "n")
            await expectError(.conflict) { try await repo.associate(association, with: "n") }
            await expectError(.notFound) { try await repo.associate(association, with: "missing") }
            #expect(try await repo.associations(in: "n") == [association])
            let types = try await repo.resourceTypes()
            #expect(types.map(\.name) == types.map(\.name).sorted())
            #expect(types.first { $0.name == "OS::Custom::Thing" }?.isProtected == false)
            #expect(try await repo.dissociate("OS::Custom::Thing", from: "n"))
            #expect(try await repo.dissociate("OS::Custom::Thing", from: "n") == false)
            #expect(try await repo.associations(in: "n").isEmpty)
            // The type stays, as in Glance.
            let after = try await repo.resourceTypes()
            #expect(after.contains { $0.name == "OS::Custom::Thing" })
        }
    }

    @Test(arguments: MetadefFactory.all)
    func concurrentCreates_ofOneName_exactlyOneWins(factory: MetadefFactory) async throws {
        try await factory.with { repo in
            let wins = await withTaskGroup(of: Bool.self) { group in
                for i in 0..<8 {
                    group.addTask {
                        (try? await repo.createNamespace(
                            Self.namespace("race", at: Double(i)), items: [MetadefItem(kind: .tag, name: "t\(i)")], associations: [])) != nil
                    }
                }
                return await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
            }
            #expect(wins == 1)
            let tags = try await repo.items(.tag, in: "race")
            #expect(tags.count == 1)
        }
    }
}
