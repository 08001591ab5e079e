import ImageStoreTestSupport
import Foundation
import ImageStoreCore
import Testing

/// The `ImageRepository` contract, run against every implementation.
@Suite struct ImageRepositoryConformanceTests {
    // MARK: create / get

    @Test(arguments: RepositoryFactory.all)
    func createGet_whenEveryFieldSet_roundTripsEveryField(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let created = Date(timeIntervalSince1970: 1_712_345_678.123)
            let image = Image(
                name: "cirros \u{e9}", status: .active, visibility: .community, isProtected: true, osHidden: true,
                checksum: "d41d8cd98f00b204e9800998ecf8427e", osHashAlgo: "sha512", osHashValue: String(repeating: "ab", count: 64),
                size: 5_000_000_000, virtualSize: 10_737_418_240, diskFormat: "qcow2", containerFormat: "bare",
                minDisk: 20, minRam: 2048, owner: "project-1", createdAt: created, updatedAt: created.addingTimeInterval(60.456),
                tags: ["b", "a", "with space"], properties: ["hw_disk_bus": "scsi", "empty": "", "unicode": "\u{1F600}"],
                uploadOwner: "host:42:abcd")
            try await repo.create(image)

            let got = try #require(try await repo.get(image.id))
            #expect(abs(got.createdAt.timeIntervalSince(image.createdAt)) < 0.001)
            #expect(abs(got.updatedAt.timeIntervalSince(image.updatedAt)) < 0.001)
            #expect(got.tags == ["a", "b", "with space"])
            var expected = image
            expected.createdAt = got.createdAt
            expected.updatedAt = got.updatedAt
            #expect(got == expected)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func list_returnsEachImageWithItsOwnTagsAndProperties(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            let images = [
                Image(name: "none", createdAt: t),
                Image(name: "one", createdAt: t.addingTimeInterval(1), tags: ["z"], properties: ["b": "2"]),
                Image(
                    name: "many", createdAt: t.addingTimeInterval(2), tags: ["b", "a", "B"],
                    properties: ["z": "alpha", "a": "zulu", "M": "", "\u{e9}": "\u{1F600}"]),
            ]
            for image in images { try await repo.create(image) }
            // Newest first; every image keeps exactly its own tags (sorted) and properties.
            let listed = try await repo.list(ImageListQuery())
            #expect(listed.map(\.id) == images.reversed().map(\.id))
            #expect(listed.map(\.tags) == [["B", "a", "b"], ["z"], []])
            #expect(listed.map(\.properties) == [["z": "alpha", "a": "zulu", "M": "", "\u{e9}": "\u{1F600}"], ["b": "2"], [:]])
            #expect(listed == images.reversed())
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func createGet_whenOptionalFieldsNil_roundTripsNils(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(createdAt: Date(timeIntervalSince1970: 1_600_000_000.5))
            try await repo.create(image)
            let got = try #require(try await repo.get(image.id))
            #expect(got == image)  // exactly representable date: no rounding at all
            #expect(got.name == nil && got.size == nil && got.owner == nil && got.diskFormat == nil)
            #expect(got.tags.isEmpty && got.properties.isEmpty && got.uploadOwner == nil)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func get_whenUnknownID_returnsNil(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            try await repo.create(Image())
            #expect(try await repo.get(ImageID()) == nil)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func create_whenIDExists_throwsConflictAndKeepsOriginal(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let original = Image(name: "first", tags: ["x"])
            try await repo.create(original)
            await expectError(.conflict) { try await repo.create(Image(id: original.id, name: "second")) }
            let got = try #require(try await repo.get(original.id))
            #expect(got.name == "first" && got.tags == ["x"])
        }
    }

    // MARK: update (compare-and-set)

    @Test(arguments: RepositoryFactory.all)
    func update_whenStatusExpected_storesChangeAndNewUpdatedAt(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let old = Date(timeIntervalSince1970: 1_600_000_000)
            let image = Image(name: "n", createdAt: old, tags: ["keep", "drop"], properties: ["keep": "1", "drop": "2", "change": "a"])
            try await repo.create(image)
            let before = Date()

            let updated = try await repo.update(image.id, expecting: [.queued]) { image in
                image.status = .saving
                image.uploadOwner = "me"
                image.tags = ["keep", "new"]
                image.properties = ["keep": "1", "change": "b", "added": "3"]
            }

            #expect(updated.status == .saving && updated.uploadOwner == "me")
            #expect(updated.updatedAt >= before.addingTimeInterval(-0.001))
            #expect(abs(updated.createdAt.timeIntervalSince(old)) < 0.001)
            let got = try #require(try await repo.get(image.id))
            #expect(got == updated)
            #expect(got.tags == ["keep", "new"])
            #expect(got.properties == ["keep": "1", "change": "b", "added": "3"])
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func update_whenStatusNotExpected_throwsConflictAndChangesNothing(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(status: .active)
            try await repo.create(image)
            let stored = try await repo.get(image.id)
            await expectError(.conflict) {
                try await repo.update(image.id, expecting: [.queued, .saving]) { $0.status = .killed }
            }
            #expect(try await repo.get(image.id) == stored)
            #expect(stored?.status == .active)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func update_whenExpectingNil_appliesWhateverTheStatus(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(status: .deactivated)
            try await repo.create(image)
            let updated = try await repo.update(image.id, expecting: nil) { $0.name = "renamed" }
            #expect(updated.name == "renamed" && updated.status == .deactivated)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func update_whenImageMissing_throwsNotFound(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            await expectError(.notFound) { try await repo.update(ImageID(), expecting: nil) { $0.name = "x" } }
        }
    }

    struct ChangeRefused: Error, Equatable {}

    @Test(arguments: RepositoryFactory.all)
    func update_whenChangeThrows_rethrowsItAndChangesNothing(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(name: "before")
            try await repo.create(image)
            let stored = try #require(try await repo.get(image.id))
            #expect(stored.name == "before")
            await #expect(throws: ChangeRefused.self) {
                try await repo.update(image.id, expecting: nil) { image in
                    image.name = "after"
                    throw ChangeRefused()
                }
            }
            #expect(try await repo.get(image.id) == stored)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func update_when50ConcurrentCASOnOneImage_exactlyOneWins(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(status: .queued)
            try await repo.create(image)

            let outcomes = await withTaskGroup(of: Result<String, ImageStoreError>.self) { group in
                for i in 0..<50 {
                    group.addTask {
                        do {
                            try await repo.update(image.id, expecting: [.queued]) { image in
                                image.status = .saving
                                image.uploadOwner = "uploader-\(i)"
                            }
                            return .success("uploader-\(i)")
                        } catch let error as ImageStoreError {
                            return .failure(error)
                        } catch {
                            return .failure(.internal("\(error)"))
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }

            let winners = outcomes.compactMap { try? $0.get() }
            let failures = outcomes.compactMap { if case .failure(let e) = $0 { e } else { nil } }
            #expect(winners.count == 1)
            #expect(failures.count == 49)
            #expect(failures.allSatisfy { $0.code == .conflict })
            let stored = try #require(try await repo.get(image.id))
            #expect(stored.status == .saving)
            #expect(stored.uploadOwner == winners.first)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func update_when8ConcurrentCASOn8Images_allSucceed(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let images = (0..<8).map { _ in Image(status: .queued) }
            for image in images { try await repo.create(image) }

            try await withThrowingTaskGroup(of: Void.self) { group in
                for image in images {
                    group.addTask {
                        try await repo.update(image.id, expecting: [.queued]) { $0.status = .saving }
                    }
                }
                try await group.waitForAll()
            }
            for image in images { #expect(try await repo.get(image.id)?.status == .saving) }
        }
    }

    // MARK: delete

    @Test(arguments: RepositoryFactory.all)
    func delete_removesRowTagsAndProperties(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let image = Image(tags: ["a", "b"], properties: ["k": "v"])
            let other = Image(tags: ["a"], properties: ["k": "v"])
            try await repo.create(image)
            try await repo.create(other)
            let storedOther = try #require(try await repo.get(other.id))

            #expect(try await repo.delete(image.id))
            #expect(try await repo.get(image.id) == nil)
            #expect(try await repo.delete(image.id) == false)
            // Re-creating the id must start clean: no tag or property survived the delete.
            try await repo.create(Image(id: image.id))
            let recreated = try #require(try await repo.get(image.id))
            #expect(recreated.tags.isEmpty && recreated.properties.isEmpty)
            #expect(try await repo.get(other.id) == storedOther)
        }
    }

    // MARK: storageUsed, images(withStatus:), ping

    @Test(arguments: RepositoryFactory.all)
    func storageUsed_sumsOwnersLiveImagesExcludingOne(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let excluded = Image(status: .saving, size: 1_000, owner: "alice")
            for image in [
                Image(status: .active, size: 100, owner: "alice"),
                Image(status: .queued, size: 20, owner: "alice"),
                Image(status: .queued, size: nil, owner: "alice"),
                Image(status: .killed, size: 5_000, owner: "alice"),
                Image(status: .deleted, size: 7_000, owner: "alice"),
                Image(status: .active, size: 3, owner: "bob"),
                Image(status: .active, size: 4, owner: nil),
                Image(status: .pendingDelete, size: 5, owner: nil),
                excluded,
            ] { try await repo.create(image) }

            #expect(try await repo.storageUsed(owner: "alice", excluding: nil) == 1_120)
            #expect(try await repo.storageUsed(owner: "alice", excluding: excluded.id) == 120)
            #expect(try await repo.storageUsed(owner: "bob", excluding: nil) == 3)
            #expect(try await repo.storageUsed(owner: nil, excluding: nil) == 9)
            #expect(try await repo.storageUsed(owner: "nobody", excluding: nil) == 0)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func imagesWithStatus_returnsExactlyThoseStatuses(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let saving = Image(status: .saving)
            let pending = Image(status: .pendingDelete)
            for image in [saving, pending, Image(status: .active), Image(status: .queued)] { try await repo.create(image) }

            let found = try await repo.images(withStatus: [.saving, .pendingDelete])
            #expect(Set(found.map(\.id)) == [saving.id, pending.id])
            #expect(try await repo.images(withStatus: [.killed]).isEmpty)
            #expect(try await repo.images(withStatus: []).isEmpty)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func ping_succeeds(factory: RepositoryFactory) async throws {
        try await factory.with { repo in try await repo.ping() }
    }

    // MARK: list

    @Test(arguments: RepositoryFactory.all)
    func list_byDefault_sortsCreatedAtDescAndHidesHidden(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let t = Fixtures.base
            let oldest = Image(createdAt: t)
            let middle = Image(createdAt: t.addingTimeInterval(0.001))
            let newest = Image(createdAt: t.addingTimeInterval(5))
            let hidden = Image(osHidden: true, createdAt: t.addingTimeInterval(10))
            for image in [middle, hidden, oldest, newest] { try await repo.create(image) }

            #expect(try await repo.list(ImageListQuery()).map(\.id) == [newest.id, middle.id, oldest.id])
            var both = ImageListQuery()
            both.osHidden = nil
            #expect(try await repo.list(both).map(\.id) == [hidden.id, newest.id, middle.id, oldest.id])
            var onlyHidden = ImageListQuery()
            onlyHidden.osHidden = true
            #expect(try await repo.list(onlyHidden).map(\.id) == [hidden.id])
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func list_withEachFilter_returnsExactlyMatchingImages(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let t = Fixtures.base
            let a = Image(
                name: "a", status: .active, visibility: .public, isProtected: true, size: 10, diskFormat: "raw",
                containerFormat: "bare", owner: "alice", createdAt: t, tags: ["x", "y"], properties: ["bus": "scsi"])
            let b = Image(
                name: nil, status: .queued, visibility: .private, size: nil, diskFormat: nil, containerFormat: nil,
                owner: nil, createdAt: t.addingTimeInterval(1), tags: ["x"], properties: ["bus": "virtio"])
            let c = Image(
                name: "c", status: .saving, visibility: .shared, size: 1_000, diskFormat: "qcow2", containerFormat: "ovf",
                owner: "bob", createdAt: t.addingTimeInterval(2), updatedAt: t.addingTimeInterval(50), tags: [],
                properties: ["bus": "scsi", "os": "linux"])
            for image in [a, b, c] { try await repo.create(image) }

            func ids(_ configure: (inout ImageListQuery) -> Void) async throws -> Set<ImageID> {
                var query = ImageListQuery(limit: 100)
                configure(&query)
                return Set(try await repo.list(query).map(\.id))
            }
            #expect(try await ids { _ in } == [a.id, b.id, c.id])
            #expect(try await ids { $0.ids = [a.id.description, c.id.description] } == [a.id, c.id])
            #expect(try await ids { $0.names = ["a", "c"] } == [a.id, c.id])
            #expect(try await ids { $0.names = [""] } == [b.id])  // a nil name matches "" (ImageListQuery.matches)
            #expect(try await ids { $0.names = [] }.isEmpty)
            #expect(try await ids { $0.statuses = ["queued", "saving"] } == [b.id, c.id])
            #expect(try await ids { $0.diskFormats = ["raw", ""] } == [a.id, b.id])
            #expect(try await ids { $0.containerFormats = ["ovf"] } == [c.id])
            #expect(try await ids { $0.visibilities = ["public", "shared"] } == [a.id, c.id])
            #expect(try await ids { $0.owner = "bob" } == [c.id])
            #expect(try await ids { $0.tags = ["x"] } == [a.id, b.id])
            #expect(try await ids { $0.tags = ["x", "y"] } == [a.id])
            #expect(try await ids { $0.tags = ["x", "z"] }.isEmpty)
            #expect(try await ids { $0.sizeMin = 10 } == [a.id, c.id])
            #expect(try await ids { $0.sizeMin = 11 } == [c.id])
            #expect(try await ids { $0.sizeMax = 999 } == [a.id])
            #expect(
                try await ids {
                    $0.sizeMin = 0; $0.sizeMax = 1_000
                } == [a.id, c.id])
            #expect(try await ids { $0.isProtected = true } == [a.id])
            #expect(try await ids { $0.isProtected = false } == [b.id, c.id])
            #expect(try await ids { $0.properties = ["bus": "scsi"] } == [a.id, c.id])
            #expect(try await ids { $0.properties = ["bus": "scsi", "os": "linux"] } == [c.id])
            #expect(try await ids { $0.properties = ["os": "windows"] }.isEmpty)
            let second = t.addingTimeInterval(1)
            #expect(try await ids { $0.createdAtFilter = .init(op: .gt, date: second) } == [c.id])
            #expect(try await ids { $0.createdAtFilter = .init(op: .gte, date: second) } == [b.id, c.id])
            #expect(try await ids { $0.createdAtFilter = .init(op: .eq, date: second) } == [b.id])
            #expect(try await ids { $0.createdAtFilter = .init(op: .neq, date: second) } == [a.id, c.id])
            #expect(try await ids { $0.createdAtFilter = .init(op: .lt, date: second) } == [a.id])
            #expect(try await ids { $0.createdAtFilter = .init(op: .lte, date: second) } == [a.id, b.id])
            #expect(try await ids { $0.updatedAtFilter = .init(op: .gte, date: t.addingTimeInterval(50)) } == [c.id])
            // Filters combine with AND.
            #expect(
                try await ids {
                    $0.tags = ["x"]; $0.properties = ["bus": "scsi"]
                } == [a.id])
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func list_withLimit_returnsAtMostLimitRows(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            for i in 0..<5 { try await repo.create(Image(createdAt: Fixtures.base.addingTimeInterval(Double(i)))) }
            #expect(try await repo.list(ImageListQuery(limit: 3)).count == 3)
            #expect(try await repo.list(ImageListQuery(limit: 0)).isEmpty)
            #expect(try await repo.list(ImageListQuery(limit: 100)).count == 5)
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func list_whenMarkerUnknown_throwsBadRequest(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            try await repo.create(Image())
            await expectError(.badRequest) { try await repo.list(ImageListQuery(marker: ImageID())) }
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func list_whenMarkerFilteredOut_stillPagesFromItsPosition(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let t = Fixtures.base
            let old = Image(createdAt: t)
            let hiddenMarker = Image(osHidden: true, createdAt: t.addingTimeInterval(1))
            let new = Image(createdAt: t.addingTimeInterval(2))
            for image in [old, hiddenMarker, new] { try await repo.create(image) }
            #expect(try await repo.list(ImageListQuery(marker: hiddenMarker.id)).map(\.id) == [old.id])
        }
    }

    static let sortCases: [(RepositoryFactory, ImageSortKey, SortDirection)] = RepositoryFactory.all.flatMap { factory in
        ImageSortKey.allCases.flatMap { key in [SortDirection.asc, .desc].map { (factory, key, $0) } }
    }

    @Test(arguments: sortCases)
    func list_sortedByEachKey_ordersLikeSQLiteWithIDTieBreaker(
        factory: RepositoryFactory, key: ImageSortKey, direction: SortDirection
    ) async throws {
        try await factory.with { repo in
            let images = Fixtures.images(count: 40)
            for image in images { try await repo.create(image) }
            let stored = try await allStored(repo, images)
            var query = ImageListQuery(limit: 1_000, sort: [.init(key: key, direction: direction)])
            query.osHidden = nil

            let listed = try await repo.list(query)
            #expect(listed.map(\.id) == ReferenceList.list(stored, query)?.map(\.id))
            #expect(listed.count == 40)
            // The tie-breaker: equal keys must come in id order, in the key's direction.
            for (x, y) in zip(listed, listed.dropFirst()) where ReferenceList.value(key, x) == ReferenceList.value(key, y) {
                #expect(direction == .asc ? x.id < y.id : x.id > y.id)
            }
        }
    }

    static let pagingCases: [(RepositoryFactory, [ImageListQuery.SortSpec])] = RepositoryFactory.all.flatMap { factory in
        [
            [.init(key: .createdAt, direction: .desc)],
            [.init(key: .name, direction: .asc)],
            [.init(key: .name, direction: .desc)],
            [.init(key: .size, direction: .asc), .init(key: .createdAt, direction: .desc)],
            [.init(key: .owner, direction: .desc), .init(key: .name, direction: .asc), .init(key: .diskFormat, direction: .desc)],
            [.init(key: .status, direction: .asc), .init(key: .minRam, direction: .desc)],
            [],
        ].map { (factory, $0) }
    }

    @Test(arguments: pagingCases)
    func list_pagingWithMarker_returnsEachImageOnceInOrder(
        factory: RepositoryFactory, sort: [ImageListQuery.SortSpec]
    ) async throws {
        try await factory.with { repo in
            let images = Fixtures.images(count: 60, seed: 7)
            for image in images { try await repo.create(image) }
            let stored = try await allStored(repo, images)
            var query = ImageListQuery(limit: 7, sort: sort)
            query.osHidden = nil

            var paged: [ImageID] = []
            var pages = 0
            while true {
                let page = try await repo.list(query)
                #expect(page.count <= 7)
                #expect(page.map(\.id) == ReferenceList.list(stored, query)?.map(\.id))
                guard let last = page.last else { break }
                paged += page.map(\.id)
                query.marker = last.id
                pages += 1
                try #require(pages <= 10, "paging does not terminate")
            }
            var everything = query
            everything.marker = nil
            everything.limit = 1_000
            #expect(pages == 9)  // 60 = 8 * 7 + 4
            #expect(paged.count == 60 && Set(paged).count == 60)
            #expect(paged == ReferenceList.list(stored, everything)?.map(\.id))
        }
    }

    @Test(arguments: RepositoryFactory.all)
    func list_withRandomQueries_matchesReferenceSemantics(factory: RepositoryFactory) async throws {
        try await factory.with { repo in
            let images = Fixtures.images(count: 80, seed: 99)
            for image in images { try await repo.create(image) }
            for member in Fixtures.members(for: images) { try await repo.addMember(member, limit: nil) }
            let stored = try await allStored(repo, images)
            var members: [ImageID: [ImageMember]] = [:]
            for image in images { members[image.id] = try await repo.members(of: image.id) }

            var rng = SeededGenerator(state: 1234)
            func maybe<T>(_ value: @autoclosure () -> T) -> T? { rng.next() % 3 == 0 ? value() : nil }
            func pick<T>(_ options: [T]) -> T { options[Int(rng.next() % UInt64(options.count))] }
            for round in 0..<150 {
                var query = ImageListQuery(
                    limit: pick([1, 5, 25, 100]), marker: maybe(pick(stored).id),
                    sort: (0..<pick([0, 1, 1, 2, 3])).map { _ in .init(key: pick(ImageSortKey.allCases), direction: pick([.asc, .desc])) })
                query.names = maybe(Set([pick(["alpha", "beta", "", "zeta"]), pick(["Beta", "\u{e9}t\u{e9}"])]))
                query.statuses = maybe(Set([pick(ImageStatus.allCases).rawValue, pick(["active", "queued"])]))
                query.diskFormats = maybe(Set([pick(["raw", "qcow2", ""])]))
                query.containerFormats = maybe(Set([pick(["bare", "ovf", ""])]))
                query.visibilities = maybe(Set([pick(ImageVisibility.allCases).rawValue]))
                query.owner = maybe(pick(["alice", "bob"]))
                query.tags = maybe(pick([["a"], ["b"], ["a", "b"], ["c"]])) ?? []
                query.sizeMin = maybe(pick([0, 10, 11, 1_000]))
                query.sizeMax = maybe(pick([0, 10, 100, 1 << 41]))
                query.osHidden = pick([nil, false, true])
                query.isProtected = maybe(pick([true, false]))
                query.createdAtFilter = maybe(.init(op: pick([.gt, .gte, .eq, .neq, .lt, .lte]), date: pick(stored).createdAt))
                query.updatedAtFilter = maybe(.init(op: pick([.gt, .lte]), date: pick(stored).updatedAt))
                query.properties = maybe(pick([["hw_disk_bus": "scsi"], ["os_distro": "debian"], ["hw_disk_bus": "virtio"]])) ?? [:]
                // Glance's visibility rules for a caller: admin or not, with or without a project, any member status.
                if rng.next() % 2 == 0 {
                    query.viewer = ImageViewer(
                        project: pick([nil, "alice", "bob", "carol"]), isAdmin: pick([true, false, false]),
                        memberStatus: pick([nil, .accepted, .pending, .rejected]), includesOthersCommunity: pick([true, false]))
                }

                let listed = try await repo.list(query)
                #expect(listed == ReferenceList.list(stored, query, members: members), "round \(round): \(query)")
            }
        }
    }

    /// The images as the repository stores them (dates normalized), for the reference oracle.
    private func allStored(_ repo: any ImageRepository, _ images: [Image]) async throws -> [Image] {
        var stored: [Image] = []
        for image in images { stored.append(try #require(try await repo.get(image.id))) }
        return stored
    }
}
