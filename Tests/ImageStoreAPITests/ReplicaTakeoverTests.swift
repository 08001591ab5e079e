import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreStorage
import ImageStoreTestSupport
import Logging
import NIOCore
import Testing

/// Takeover and recovery rules of `ImageService` in one process: two services on one catalogue and one
/// store directory stand for two replicas. The multi-process proof is `ReplicaTests`.
@Suite struct ReplicaTakeoverTests {
    static let logger = Logger(label: "imagestore.replica-tests")

    struct Fixture {
        let directory: TemporaryDirectory
        let repository: any ImageRepository
        let registry: any ReplicaRegistry

        init(repository: any ImageRepository) throws {
            directory = try TemporaryDirectory(prefix: "imagestore-takeover")
            self.repository = repository
            registry = repository as! any ReplicaRegistry
        }

        func service(_ replica: String, lease: ReplicaLease? = nil) -> ImageService {
            let store = FilesystemImageStore(directory: directory.path, replicaID: replica, logger: ReplicaTakeoverTests.logger)
            return ImageService(repository: repository, store: store, processToken: replica, lease: lease, logger: ReplicaTakeoverTests.logger)
        }

        func files() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted() }

        func touch(_ name: String, age: TimeInterval = 0) {
            let path = directory.appending(name)
            FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3]))
            if age > 0 {
                try? FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-age)], ofItemAtPath: path)
            }
        }

        /// An image `saving` under `owner`.
        func savingImage(owner: String) async throws -> ImageID {
            let image = Image(id: ImageID(), status: .queued, diskFormat: "raw", containerFormat: "bare")
            try await repository.create(image)
            try await repository.update(image.id, expecting: [.queued]) {
                $0.status = .saving
                $0.uploadOwner = owner
            }
            return image.id
        }
    }

    @Test func takeover_neverBeforeTheLease_thenResetsOnlyTheDeadReplicasUploads() async throws {
        let fixture = try Fixture(repository: InMemoryImageRepository())
        defer { fixture.directory.remove() }
        for replica in ["dead", "live", "me"] { try await fixture.registry.registerReplica(replica, host: "h") }
        let deadsImage = try await fixture.savingImage(owner: "dead")
        let livesImage = try await fixture.savingImage(owner: "live")
        fixture.touch(".\(deadsImage).dead.0abc.tmp")
        fixture.touch("\(deadsImage)")  // renamed in, never published: the dead upload's
        fixture.touch(".\(livesImage).live.0def.tmp")
        let me = fixture.service("me")

        // Within the lease nothing is touched, however long the uploads take.
        var report = try await me.takeOverExpiredReplicas(lease: .seconds(60))
        #expect(report == .init())
        #expect(try await fixture.repository.get(deadsImage)?.status == .saving)
        #expect(fixture.files().count == 3)

        // "dead" is 5 s silent, "live" heartbeats just before: a 3 s lease tells them apart even if this
        // machine stalls for up to 3 s between that heartbeat and the takeover's query (the margins of
        // ReplicaRegistryConformanceTests, whose 2 s / 1.5 s version failed once with both expired).
        try await Task.sleep(for: .seconds(5))
        #expect(try await fixture.registry.heartbeatReplica("live"))
        #expect(try await fixture.registry.heartbeatReplica("me"))
        report = try await me.takeOverExpiredReplicas(lease: .seconds(3))
        #expect(report.uploadsReset == 1 && report.replicasRemoved == ["dead"], "\(report)")
        let reset = try #require(try await fixture.repository.get(deadsImage))
        #expect(reset.status == .queued && reset.uploadOwner == nil)
        let kept = try #require(try await fixture.repository.get(livesImage))
        #expect(kept.status == .saving && kept.uploadOwner == "live")
        #expect(fixture.files() == [".\(livesImage).live.0def.tmp"])
        #expect(try await fixture.registry.replicas().map(\.id).sorted() == ["live", "me"])
    }

    @Test func twoSurvivorsTakingOverAtOnce_resetEachImageOnce() async throws {
        let fixture = try Fixture(repository: InMemoryImageRepository())
        defer { fixture.directory.remove() }
        try await fixture.registry.registerReplica("dead", host: "h")
        var images: [ImageID] = []
        for _ in 0..<8 { images.append(try await fixture.savingImage(owner: "dead")) }
        try await Task.sleep(for: .milliseconds(400))
        let s1 = fixture.service("s1")
        let s2 = fixture.service("s2")
        async let r1 = s1.takeOverExpiredReplicas(lease: .milliseconds(200))
        async let r2 = s2.takeOverExpiredReplicas(lease: .milliseconds(200))
        let (a, b) = try await (r1, r2)
        #expect(a.uploadsReset + b.uploadsReset == 8, "\(a) \(b)")
        for id in images { #expect(try await fixture.repository.get(id)?.status == .queued) }
    }

    /// An upload whose replica was taken over (its lease expired while it was stopped) gets 409 at its
    /// commit, publishes nothing, leaves no temporary file, and the image stays `queued`.
    @Test func uploadTakenOverMidway_cannotCommit() async throws {
        let fixture = try Fixture(repository: InMemoryImageRepository())
        defer { fixture.directory.remove() }
        try await fixture.registry.registerReplica("slow", host: "h")
        try await fixture.registry.registerReplica("other", host: "h")
        let slow = fixture.service("slow", lease: ReplicaLease(replicaID: "slow", leaseTime: .seconds(60)))
        let other = fixture.service("other")
        let image = Image(id: ImageID(), status: .queued, diskFormat: "raw", containerFormat: "bare")
        try await fixture.repository.create(image)

        let (body, input) = AsyncStream<ByteBuffer>.makeStream()
        input.yield(ByteBuffer(bytes: [UInt8](repeating: 7, count: 100_000)))
        let upload = Task { try await slow.upload(image.id, body: body, declaredSize: nil) }
        let started = try await eventually { try await fixture.repository.get(image.id)?.status == .saving }
        #expect(started)
        try await Task.sleep(for: .milliseconds(600))
        #expect(try await fixture.registry.heartbeatReplica("other"))
        let report = try await other.takeOverExpiredReplicas(lease: .milliseconds(400))
        #expect(report.uploadsReset == 1)
        #expect(try await fixture.repository.get(image.id)?.status == .queued)

        input.yield(ByteBuffer(bytes: [UInt8](repeating: 8, count: 1000)))
        input.finish()
        let error = await #expect(throws: ImageStoreError.self) { try await upload.value }
        #expect(error?.code == .conflict, "\(String(describing: error))")
        let after = try #require(try await fixture.repository.get(image.id))
        #expect(after.status == .queued && after.uploadOwner == nil)
        #expect(fixture.files().isEmpty, "\(fixture.files())")
    }

    /// The commit also needs this replica's own lease: one that lapsed (no heartbeat within the lease) or
    /// was lost (the replica found itself declared dead) refuses the commit even before any takeover.
    @Test(arguments: ["lapsed", "lost"])
    func uploadWhoseLeaseDidNotHold_cannotCommit(how: String) async throws {
        let fixture = try Fixture(repository: InMemoryImageRepository())
        defer { fixture.directory.remove() }
        let lease = ReplicaLease(replicaID: "r", leaseTime: how == "lapsed" ? .milliseconds(300) : .seconds(60))
        let service = fixture.service("r", lease: lease)
        let image = Image(id: ImageID(), status: .queued, diskFormat: "raw", containerFormat: "bare")
        try await fixture.repository.create(image)
        let (body, input) = AsyncStream<ByteBuffer>.makeStream()
        input.yield(ByteBuffer(bytes: [UInt8](repeating: 7, count: 10_000)))
        let upload = Task { try await service.upload(image.id, body: body, declaredSize: nil) }
        #expect(try await eventually { try await fixture.repository.get(image.id)?.status == .saving })
        if how == "lapsed" { try await Task.sleep(for: .milliseconds(600)) } else { lease.lost() }
        input.finish()
        let error = await #expect(throws: ImageStoreError.self) { try await upload.value }
        #expect(error?.code == .conflict, "\(String(describing: error))")
        #expect(try await fixture.repository.get(image.id)?.status == .queued)
        #expect(fixture.files().isEmpty, "\(fixture.files())")
    }

    /// On a shared catalogue start-up recovery removes only this replica's temporary files and resets
    /// only its uploads; on the embedded one (one replica) every earlier run's leftovers go.
    @Test func recovery_sharedCatalogue_touchesOnlyOwnLeftovers() async throws {
        let fixture = try Fixture(repository: InMemoryImageRepository())
        defer { fixture.directory.remove() }
        let others = try await fixture.savingImage(owner: "other")
        let mine = try await fixture.savingImage(owner: "me")
        fixture.touch(".\(others).other.0aa.tmp", age: 3600)
        fixture.touch(".\(mine).me.0bb.tmp", age: 3600)
        let report = try await fixture.service("me").recoverAfterRestart()
        #expect(report.uploadsReset == 1 && report.temporaryFilesRemoved == 1, "\(report)")
        #expect(try await fixture.repository.get(others)?.status == .saving)
        #expect(try await fixture.repository.get(mine)?.status == .queued)
        #expect(fixture.files() == [".\(others).other.0aa.tmp"])
    }

    @Test func recovery_embeddedCatalogue_takesEveryEarlierRunsLeftovers() async throws {
        let fixture = try Fixture(repository: try SQLiteImageRepository(path: ":memory:", logger: Self.logger))
        defer { fixture.directory.remove() }
        let earlier = try await fixture.savingImage(owner: "earlier-run")
        fixture.touch(".\(earlier).earlier-run.0aa.tmp", age: 3600)
        fixture.touch(".\(ImageID()).0cc.tmp", age: 3600)  // a name from before replica ids
        let report = try await fixture.service("me").recoverAfterRestart()
        #expect(report.uploadsReset == 1 && report.temporaryFilesRemoved == 2, "\(report)")
        #expect(try await fixture.repository.get(earlier)?.status == .queued)
        #expect(fixture.files().isEmpty)
    }

    @Test func temporaryFileNames_carryTheReplicaID() async throws {
        let fixture = try Fixture(repository: InMemoryImageRepository())
        defer { fixture.directory.remove() }
        let store = FilesystemImageStore(directory: fixture.directory.path, replicaID: "replica-1", logger: Self.logger)
        let id = ImageID()
        let writer = try await store.beginWrite(id, expectedSize: nil)
        let name = try #require(fixture.files().first)
        #expect(name.hasPrefix(".\(id).replica-1.") && name.hasSuffix(".tmp"), "\(name)")
        // Another replica's sweep of "replica-1" leftovers skips a file this process is writing.
        #expect(try await store.sweepTemporaryFiles { $0.replica == "replica-1" } == 0)
        await writer.abort()
        #expect(fixture.files().isEmpty)
    }

    func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
