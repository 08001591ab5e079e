import Foundation
import ImageStoreCore
import ImageStoreMetadata
import ImageStoreTestSupport
import Synchronization
import Testing

@testable import ImageStoreGuard

/// The right share, not just a share: the marker's store id against the one recorded in the metadata.
@Suite struct StoreIdentityTests {
    static let idA = "11111111-1111-4111-8111-111111111111"
    static let idB = "22222222-2222-4222-8222-222222222222"

    @Test func marker_rendersAndParses_ignoringCommentsAndUnknownKeys() {
        let marker = StoreMarker(storeID: Self.idA, createdAt: "2026-12-02T14:00:00Z")
        #expect(StoreMarker(parsing: marker.rendered) == marker)
        #expect(StoreMarker(parsing: "# c\n\nother = 1\n  store_id =  \(Self.idB)  \n") == StoreMarker(storeID: Self.idB))
        #expect(StoreMarker(parsing: "") == StoreMarker(storeID: nil))
        #expect(StoreMarker(parsing: "store_id =\n") == StoreMarker(storeID: nil))
        let fresh = StoreMarker.new()
        #expect(UUID(uuidString: fresh.storeID ?? "") != nil)
        #expect(fresh.createdAt != nil)
    }

    @Test func marker_writeReplacesAtomically_andLeavesNoTemporaryFile() throws {
        let f = try GuardFixture(withMarker: false)
        defer { f.temp.remove() }
        try StoreMarker(storeID: Self.idA).write(to: f.markerPath)
        try StoreMarker(storeID: Self.idB).write(to: f.markerPath)
        #expect(try StoreMarker(parsing: StoreMarker.readText(at: f.markerPath).get()).storeID == Self.idB)
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.datadir) == [".glance"])
    }

    @Test func firstCheck_recordsTheMarkersID_sameIDKeepsPassing() async throws {
        let repository = InMemoryImageRepository()
        let f = try GuardFixture(withMarker: false, identity: StoreIdentityRecord(repository: repository, store: "file"))
        defer { f.temp.remove() }
        try f.putMarker(storeID: Self.idA)
        try await f.mountGuard.checkWritable()
        #expect(try await repository.storeIdentity(of: "file") == Self.idA)
        #expect(f.mountGuard.state.results[.marker]?.detail.contains("store id \(Self.idA)") == true)
        try await f.mountGuard.checkWritable()
        #expect(f.mountGuard.state.enabled)
    }

    @Test func otherShareMounted_refusesWritesNamingBothIDs_thenTheRightOneBack_enables() async throws {
        let repository = InMemoryImageRepository()
        let f = try GuardFixture(withMarker: false, identity: StoreIdentityRecord(repository: repository, store: "file"))
        defer { f.temp.remove() }
        try f.putMarker(storeID: Self.idA)
        try await f.mountGuard.checkWritable()

        try f.putMarker(storeID: Self.idB)
        let error = await imageStoreError { try await f.mountGuard.checkWritable() }
        #expect(error?.code == .storeUnavailable)
        #expect(error?.message == "store disabled: wrong share: marker id \(Self.idB), expected \(Self.idA)")
        #expect(!f.mountGuard.state.enabled)
        #expect(f.mountGuard.state.reason == "wrong share: marker id \(Self.idB), expected \(Self.idA)")
        // Reads of what the metadata knows are not this share's: they are refused too (503).
        #expect(await imageStoreError { try await f.mountGuard.checkReadable() }?.code == .readUnavailable)
        // The recorded id is never replaced by the wrong one.
        #expect(try await repository.storeIdentity(of: "file") == Self.idA)

        try f.putMarker(storeID: Self.idA)
        try await f.mountGuard.checkWritable()
        #expect(f.mountGuard.state.enabled)
    }

    @Test func recordedID_survivesARestart_aNewGuardRefusesTheOtherShare() async throws {
        let repository = InMemoryImageRepository()
        let identity = StoreIdentityRecord(repository: repository, store: "file")
        let first = try GuardFixture(withMarker: false, identity: identity)
        defer { first.temp.remove() }
        try first.putMarker(storeID: Self.idA)
        try await first.mountGuard.checkWritable()

        // Another process (a restart) with the same metadata, and a share with another id.
        let second = try GuardFixture(withMarker: false, identity: identity)
        defer { second.temp.remove() }
        try second.putMarker(storeID: Self.idB)
        let state = await second.mountGuard.runAllChecks()
        #expect(!state.enabled)
        #expect(state.reason == "wrong share: marker id \(Self.idB), expected \(Self.idA)")
    }

    @Test func emptyMarker_isAccepted_withoutRecordingAnything() async throws {
        let repository = InMemoryImageRepository()
        let f = try GuardFixture(identity: StoreIdentityRecord(repository: repository, store: "file"))
        defer { f.temp.remove() }
        try await f.mountGuard.checkWritable()
        #expect(f.mountGuard.state.enabled)
        #expect(f.mountGuard.state.results[.marker]?.detail.contains("without a store id") == true)
        #expect(try await repository.storeIdentity(of: "file") == nil)
        // Adopted later: the first id seen is recorded then.
        try f.putMarker(storeID: Self.idA)
        try await f.mountGuard.checkWritable()
        #expect(try await repository.storeIdentity(of: "file") == Self.idA)
    }

    @Test func emptyMarker_afterAnIDWasRecorded_isTheWrongShare() async throws {
        let repository = InMemoryImageRepository()
        _ = try await repository.claimStoreIdentity(Self.idA, of: "file")
        let f = try GuardFixture(identity: StoreIdentityRecord(repository: repository, store: "file"))
        defer { f.temp.remove() }
        let error = await imageStoreError { try await f.mountGuard.checkWritable() }
        #expect(error?.message == "store disabled: wrong share: marker \(f.markerPath) has no store id, expected \(Self.idA)")
    }

    @Test func withoutIdentityRecord_anyMarkerPasses() async throws {
        let f = try GuardFixture(withMarker: false)
        defer { f.temp.remove() }
        try f.putMarker(storeID: Self.idB)
        try await f.mountGuard.checkWritable()
        #expect(f.mountGuard.state.results[.marker]?.detail == "marker \(f.markerPath) present, store id \(Self.idB)")
    }

    // MARK: A database that stops answering (Glance's empty marker asks it again and again)

    /// The metadata's store-id read: answers "nothing recorded" `answers` times, then fails (throws or
    /// blocks past the guard's timeout) on every later read; counts the reads.
    final class FlakyIdentity: Sendable {
        enum Failure: Sendable { case throwing, blocking }
        struct DatabaseDown: Error {}
        let answers: Int
        let failure: Failure
        let reads = Mutex(0)

        init(answers: Int = 1, then failure: Failure = .throwing) {
            self.answers = answers
            self.failure = failure
        }

        var record: StoreIdentityRecord {
            StoreIdentityRecord(
                claim: { $0 },
                recorded: {
                    let read = self.reads.withLock { reads in
                        reads += 1
                        return reads
                    }
                    if read <= self.answers { return nil }
                    if self.failure == .blocking { try await Task.sleep(for: .seconds(5)) }
                    throw DatabaseDown()
                })
        }
    }

    @Test func emptyMarker_nothingRecorded_isRemembered_notReadOnEveryCheck() async throws {
        let database = FlakyIdentity()
        let f = try GuardFixture(identity: database.record)
        defer { f.temp.remove() }
        for _ in 0..<3 {
            try await f.mountGuard.checkWritable()
        }
        #expect(f.mountGuard.state.enabled)
        #expect(database.reads.withLock { $0 } == 1)
    }

    @Test(arguments: [FlakyIdentity.Failure.throwing, .blocking])
    func emptyMarker_aFailedRead_afterARecentAnswer_doesNotDisableTheShare(failure: FlakyIdentity.Failure) async throws {
        let database = FlakyIdentity(then: failure)
        // Every check asks the database (nothing is reused), and each later read fails or times out.
        let f = try GuardFixture(timeout: .milliseconds(200), identity: database.record, identityMaxAge: .zero)
        defer { f.temp.remove() }
        try await f.mountGuard.checkWritable()
        try await f.mountGuard.checkWritable()
        try await f.mountGuard.checkWritable()
        #expect(f.mountGuard.state.enabled)
        #expect(database.reads.withLock { $0 } == 3)
        #expect(f.mountGuard.state.results[.marker]?.detail.contains("without a store id") == true)
    }

    @Test func emptyMarker_aFailedRead_withoutARecentAnswer_stillFails() async throws {
        // Never answered: nothing stands in.
        let never = FlakyIdentity(answers: 0)
        let f = try GuardFixture(identity: never.record)
        defer { f.temp.remove() }
        let error = await imageStoreError { try await f.mountGuard.checkWritable() }
        #expect(error?.message.hasPrefix("store disabled: store id check failed: cannot read the recorded store id") == true)

        // Answered, but longer ago than the limit.
        let once = FlakyIdentity()
        let g = try GuardFixture(identity: once.record, identityMaxAge: .zero, identityStaleLimit: .zero)
        defer { g.temp.remove() }
        try await g.mountGuard.checkWritable()
        #expect(await imageStoreError { try await g.mountGuard.checkWritable() }?.code == .storeUnavailable)
        #expect(!g.mountGuard.state.enabled)
    }

    @Test func emptyMarker_rememberedAnswer_stillNoticesAMissingMarkerAtOnce_andALaterRecordedID() async throws {
        let repository = InMemoryImageRepository()
        let f = try GuardFixture(identity: StoreIdentityRecord(repository: repository, store: "file"), identityMaxAge: .zero)
        defer { f.temp.remove() }
        try await f.mountGuard.checkWritable()
        try f.removeMarker()
        #expect(await imageStoreError { try await f.mountGuard.checkWritable() }?.message == "store disabled: marker missing: \(f.markerPath) not found")
        try f.putMarker()
        try await f.mountGuard.checkWritable()
        // Another process records an id: once the remembered answer is old, the empty marker is the wrong share.
        _ = await repository.claimStoreIdentity(Self.idA, of: "file")
        let error = await imageStoreError { try await f.mountGuard.checkWritable() }
        #expect(error?.message == "store disabled: wrong share: marker \(f.markerPath) has no store id, expected \(Self.idA)")
    }
}
