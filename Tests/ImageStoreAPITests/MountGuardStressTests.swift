import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import ImageStoreTestSupport
import NIOCore
import Synchronization
import Testing

/// Issue #8, "NFS probe under stress": twenty ganesha restarts in a row while uploads and health probes
/// run. After each restart the libnfs probe is green within two guard intervals (a dead NFSv4 context
/// is replaced, never retried for 15 s); uploads during the outage answer 410 and stay `queued`, the
/// others become `active` with their bytes on the share; nothing answers 500 or hangs.
@Suite(.serialized, GaneshaServer.requiredTrait)
struct MountGuardStressTests {
    static let restarts = 20
    static let interval = Duration.milliseconds(500)
    /// Two intervals is the contract; the extra half second is room for a loaded 2-core machine.
    static let greenBound = interval * 2 + .milliseconds(500)

    @Test func twentyGaneshaRestarts_probeGreenWithinTwoIntervalsEachTime() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        // A marker with a store id: the guard reads the recorded id from the database once. With Glance's
        // empty marker it asks on every check, and this test's steady uploads kept SQLite busy past the
        // 500 ms guard deadline on a loaded machine ("the recorded store id was not read within 500 ms",
        // the NFS check green): a miss that is not the NFS recovery this test times.
        try WrongShareAPITests.putMarker(UUID().uuidString.lowercased(), share)
        var configuration = share.configuration()
        configuration.store.guardInterval = Self.interval
        configuration.healthcheck.backends = ["nfs", "store"]
        configuration.healthcheck.checkInterval = .milliseconds(200)
        try await share.run(configuration) { client in
            try await client.waitForGuard("enabled")
            let shared = Shared()

            // Uploads and probes all along, as a busy cloud would send them.
            async let uploads: Void = {
                while !shared.stop.load(ordering: .relaxed) {
                    let id = try await client.createImage()
                    let data = randomBytes(256 << 10)
                    let status = try await client.upload(id, data).status
                    shared.outcomes.withLock { $0.append((id, status, data)) }
                }
            }()
            async let probing: Void = {
                while !shared.stop.load(ordering: .relaxed) {
                    let status = try await client.execute(uri: "/healthcheck", method: .get).status
                    shared.probes.withLock { $0[status, default: 0] += 1 }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }()

            var slowest = Duration.zero
            var late: [String] = []
            let clock = ContinuousClock()
            for round in 1...Self.restarts {
                // restart() returns once ganesha serves NFS again (an nfs-ls mount succeeds).
                try await share.ganesha.restart()
                let served = clock.now
                var green = false
                while clock.now - served < .seconds(20) {
                    if try await client.guardState()?["state"]?.stringValue == "enabled" {
                        green = true
                        break
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                let took = clock.now - served
                slowest = max(slowest, took)
                if !green || took > Self.greenBound {
                    let detail = try await client.guardState().map { $0.serialized() } ?? "nil"
                    late.append("restart \(round): \(green ? "green after \(took)" : "not green within 20 s"): \(detail)")
                }
                try await Task.sleep(for: .milliseconds(300))
            }
            shared.stop.store(true, ordering: .relaxed)
            try await uploads
            try await probing
            print("ganesha restarts: \(Self.restarts), slowest green \(slowest); probes \(shared.probes.withLock { $0 })")
            #expect(late.isEmpty, "\(late.count) of \(Self.restarts) restarts not green within \(Self.greenBound):\n\(late.joined(separator: "\n"))")

            let results = shared.outcomes.withLock { $0 }
            #expect(results.contains { $0.status == .noContent }, "no upload succeeded")
            for (id, status, data) in results {
                #expect(status == .noContent || status == .gone, "upload of \(id): \(status)")
                let imageStatus = try await client.status(of: id)
                if status == .noContent {
                    #expect(imageStatus == "active")
                    #expect(share.shareBytes(id) == data, "bytes of \(id)")
                } else {
                    #expect(imageStatus == "queued")
                    #expect(share.shareBytes(id) == nil, "a refused upload left data for \(id)")
                }
            }
            #expect(shared.probes.withLock { $0.keys.allSatisfy { $0 == .ok || $0 == .serviceUnavailable } })
            // Nothing left half-written on the share.
            #expect(try share.shareFiles().filter { $0.hasSuffix(".tmp") } == [])
        }
    }
}

/// What the background uploads and probes share with the test.
private final class Shared: Sendable {
    let stop = Atomic(false)
    let outcomes = Mutex<[(id: String, status: HTTPResponse.Status, data: [UInt8])]>([])
    let probes = Mutex<[HTTPResponse.Status: Int]>([:])
}
