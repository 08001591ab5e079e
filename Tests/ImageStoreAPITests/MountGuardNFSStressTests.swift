import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreAPI
import ImageStoreConfig
import NIOCore
import ImageStoreTestSupport
import Synchronization
import Testing

/// Issue #8, "NFS probe under stress": twenty ganesha restarts in a row while uploads and health probes
/// run. After each restart (ganesha serving again), the libnfs probe — the `nfs` health backend and the
/// guard — is green within two intervals; uploads meanwhile only ever get 204 or 410, never a 500 or a hang.
/// (Named MountGuard… so scripts/test runs it in the deadline phase: it bounds recovery times.)
@Suite(.serialized, GaneshaServer.requiredTrait)
struct MountGuardNFSStressTests {
    static let restarts = 20
    /// The guard's and the health monitor's interval.
    static let interval = 1.5

    @Test func twentyGaneshaRestarts_probeGreenWithinTwoIntervalsAfterEach() async throws {
        let share = try await GuardedShare.make()
        defer { share.tearDown() }
        var configuration = share.configuration()
        configuration.store.guardInterval = Self.interval
        configuration.healthcheck.backends = ["nfs"]
        configuration.healthcheck.checkInterval = Self.interval
        let bound = Duration.milliseconds(Int64(2 * Self.interval * 1000))

        try await share.run(configuration) { client in
            try await client.waitForGuard("enabled")
            let port = try #require(client.port)
            let stop = Atomic<Bool>(false)
            let uploadStatuses = Mutex<[Int]>([])
            // Uploads all along, one after the other, each on a fresh connection.
            let uploads = Task {
                while !stop.load(ordering: .relaxed) {
                    guard let id = try? await client.createImage() else { continue }
                    let started = ContinuousClock.now
                    let status = (try? await HTTPOneShot.put(port: port, path: "/v2/images/\(id)/file", body: randomBytes(128 << 10)))?.code ?? -1
                    #expect(ContinuousClock.now - started < .seconds(15), "an upload hung")
                    uploadStatuses.withLock { $0.append(status) }
                }
            }
            defer { uploads.cancel() }

            var recoveries: [Duration] = []
            for round in 1...Self.restarts {
                try await share.ganesha.restart()
                let restarted = ContinuousClock.now
                // Probes every 100 ms until the nfs backend answers 200.
                var green = false
                while ContinuousClock.now - restarted < bound + .seconds(10) {
                    if try await client.execute(uri: "/healthcheck", method: .get).status == .ok {
                        green = true
                        break
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
                let took = ContinuousClock.now - restarted
                recoveries.append(took)
                #expect(green, "round \(round): nfs backend not green \(took) after the restart")
                #expect(took <= bound, "round \(round): nfs backend green only after \(took), bound \(bound)")
                try await client.waitForGuard("enabled", timeout: bound + .seconds(5))
            }
            stop.store(true, ordering: .relaxed)
            _ = await uploads.value

            let statuses = uploadStatuses.withLock { $0 }
            #expect(statuses.allSatisfy { $0 == 204 || $0 == 410 }, "upload statuses: \(statuses)")
            #expect(statuses.contains(204), "no upload succeeded: \(statuses)")
            // For the record (seen in the test log): how long recovery took.
            let slowest = recoveries.max() ?? .zero
            print("ganesha restarts: \(recoveries.count), slowest nfs recovery \(slowest), uploads \(statuses.count) (\(statuses.filter { $0 == 204 }.count) ok)")
        }
    }
}
