import ImageStoreTestSupport
import Foundation
import ImageStoreCore
import Testing

/// The members part of the `ImageRepository` contract (image sharing), run against every implementation.
@Suite struct ImageMemberConformanceTests {
    @Test(arguments: RepositoryFactory.all)
    func addMember_roundTrips_inCreationOrder(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(visibility: .shared, owner: "alice")
            try await repo.create(image)
            let t = Date(timeIntervalSince1970: 1_700_000_000.25)
            let bob = ImageMember(imageID: image.id, memberID: "bob", createdAt: t.addingTimeInterval(1))
            let carol = ImageMember(imageID: image.id, memberID: "carol", status: .accepted, createdAt: t)
            let dave = ImageMember(imageID: image.id, memberID: "dave", createdAt: t.addingTimeInterval(1))
            for member in [bob, carol, dave] { try await repo.addMember(member, limit: nil) }
            #expect(try await repo.members(of: image.id) == [carol, bob, dave])
            #expect(try await repo.member("bob", of: image.id) == bob)
            #expect(try await repo.member("erin", of: image.id) == nil)
            #expect(try await repo.members(of: ImageID()).isEmpty)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func addMember_duplicateIsConflict_unknownImageIsNotFound(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(visibility: .shared)
            try await repo.create(image)
            try await repo.addMember(ImageMember(imageID: image.id, memberID: "bob"), limit: nil)
            await expectError(.conflict) { try await repo.addMember(ImageMember(imageID: image.id, memberID: "bob"), limit: nil) }
            await expectError(.notFound) { try await repo.addMember(ImageMember(imageID: ImageID(), memberID: "bob"), limit: nil) }
            #expect(try await repo.members(of: image.id).count == 1)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func addMember_pastLimit_isLimitExceeded_evenWhenConcurrent(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(visibility: .shared)
            try await repo.create(image)
            try await repo.addMember(ImageMember(imageID: image.id, memberID: "p0"), limit: 2)
            try await repo.addMember(ImageMember(imageID: image.id, memberID: "p1"), limit: 2)
            await expectError(.limitExceeded) { try await repo.addMember(ImageMember(imageID: image.id, memberID: "p2"), limit: 2) }
            try await repo.addMember(ImageMember(imageID: image.id, memberID: "p2"), limit: nil)
            // 12 concurrent adds against a limit of 8 (3 already there): exactly 5 get in.
            let results = await withTaskGroup(of: Bool.self) { group in
                for i in 0..<12 {
                    group.addTask { (try? await repo.addMember(ImageMember(imageID: image.id, memberID: "q\(i)"), limit: 8)) != nil }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results.filter { $0 }.count == 5)
            #expect(try await repo.members(of: image.id).count == 8)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func updateMember_setsStatusAndUpdatedAt_unknownIsNotFound(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(visibility: .shared)
            try await repo.create(image)
            let created = Date(timeIntervalSince1970: 1_600_000_000)
            try await repo.addMember(ImageMember(imageID: image.id, memberID: "bob", createdAt: created), limit: nil)
            let updated = try await repo.updateMember("bob", of: image.id, status: .accepted)
            #expect(updated.status == .accepted && updated.createdAt == created && updated.updatedAt > created)
            #expect(try await repo.member("bob", of: image.id) == updated)
            await expectError(.notFound) { try await repo.updateMember("carol", of: image.id, status: .rejected) }
            await expectError(.notFound) { try await repo.updateMember("bob", of: ImageID(), status: .rejected) }
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func removeMember_andImageDelete_removeMemberships(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(visibility: .shared)
            try await repo.create(image)
            for project in ["bob", "carol"] { try await repo.addMember(ImageMember(imageID: image.id, memberID: project), limit: nil) }
            #expect(try await repo.removeMember("bob", of: image.id))
            #expect(try await !repo.removeMember("bob", of: image.id))
            #expect(try await repo.members(of: image.id).map(\.memberID) == ["carol"])
            try await repo.delete(image.id)
            #expect(try await repo.member("carol", of: image.id) == nil)
            // The same id again starts without members.
            try await repo.create(Image(id: image.id, visibility: .shared))
            #expect(try await repo.members(of: image.id).isEmpty)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func list_withViewer_appliesGlanceVisibility(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let t = Fixtures.base
            let mine = Image(name: "mine", visibility: .private, owner: "alice", createdAt: t)
            let theirs = Image(name: "theirs", visibility: .private, owner: "bob", createdAt: t.addingTimeInterval(1))
            let publicImage = Image(name: "public", visibility: .public, owner: "bob", createdAt: t.addingTimeInterval(2))
            let community = Image(name: "community", visibility: .community, owner: "bob", createdAt: t.addingTimeInterval(3))
            let myCommunity = Image(name: "my community", visibility: .community, owner: "alice", createdAt: t.addingTimeInterval(4))
            let accepted = Image(name: "accepted", visibility: .shared, owner: "bob", createdAt: t.addingTimeInterval(5))
            let pending = Image(name: "pending", visibility: .shared, owner: "bob", createdAt: t.addingTimeInterval(6))
            let notShared = Image(name: "shared, not with alice", visibility: .shared, owner: "bob", createdAt: t.addingTimeInterval(7))
            let ownerless = Image(name: "no owner", visibility: .private, owner: nil, createdAt: t.addingTimeInterval(8))
            let all = [mine, theirs, publicImage, community, myCommunity, accepted, pending, notShared, ownerless]
            for image in all { try await repo.create(image) }
            try await repo.addMember(ImageMember(imageID: accepted.id, memberID: "alice", status: .accepted), limit: nil)
            try await repo.addMember(ImageMember(imageID: pending.id, memberID: "alice"), limit: nil)
            try await repo.addMember(ImageMember(imageID: notShared.id, memberID: "carol", status: .accepted), limit: nil)

            func names(_ viewer: ImageViewer, visibility: String? = nil) async throws -> [String] {
                var query = ImageListQuery(limit: 100, sort: [.init(key: .createdAt, direction: .asc)])
                query.viewer = viewer
                if let visibility { query.visibilities = [visibility] }
                return try await repo.list(query).compactMap(\.name)
            }
            let alice = ImageViewer(project: "alice", isAdmin: false)
            #expect(try await names(alice) == ["mine", "public", "my community", "accepted"])
            #expect(try await names(ImageViewer(project: "alice", isAdmin: false, memberStatus: .pending)) == ["mine", "public", "my community", "pending"])
            #expect(try await names(ImageViewer(project: "alice", isAdmin: false, memberStatus: nil)) == ["mine", "public", "my community", "accepted", "pending"])
            #expect(
                try await names(ImageViewer(project: "alice", isAdmin: false, includesOthersCommunity: true), visibility: "community")
                    == ["community", "my community"])
            #expect(try await names(ImageViewer(project: "alice", isAdmin: false), visibility: "shared") == ["accepted"])
            // No project: only public (community needs a visibility filter); no owner-less private images.
            #expect(try await names(ImageViewer(project: nil, isAdmin: false)) == ["public"])
            // Admins see every image, except others' community images without a visibility filter.
            #expect(try await names(ImageViewer(project: "alice", isAdmin: true)).count == all.count - 1)
            #expect(try await names(ImageViewer(project: nil, isAdmin: true, includesOthersCommunity: true)).count == all.count)
        }
    }
}
