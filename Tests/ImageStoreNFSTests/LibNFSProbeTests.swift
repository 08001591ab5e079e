import Foundation
import ImageStoreTestSupport
import Testing

@testable import ImageStoreNFS

/// `LibNFSProbe` against a real nfs-ganesha on 127.0.0.1. Serialized: the timing checks (deadline + 200 ms) must not
/// compete with other ganesha instances for the 2 cores.
@Suite(.serialized, GaneshaServer.requiredTrait)
struct LibNFSProbeTests {
    static let marker = ".imagestore-marker"

    /// A started ganesha (marker in place unless `withMarker` is false) and a probe aimed at it; both cleaned up
    /// whatever `body` does.
    func withServer(
        withMarker: Bool = true, options: String = "", _ body: (GaneshaServer, LibNFSProbe) async throws -> Void
    ) async throws {
        let server = try GaneshaServer()
        defer { server.shutdown() }
        if withMarker {
            try Data("imagestore".utf8).write(to: URL(fileURLWithPath: server.exportDirectory + "/" + Self.marker))
        }
        try await server.start(ready: Self.probeReady)
        let probe = LibNFSProbe(target: Self.target(server, options: options))
        try await body(server, probe)
    }

    static func target(_ server: GaneshaServer, options: String = "") -> NFSServerTarget {
        var parsed = (try? NFSMountOptions(parsing: options)) ?? NFSMountOptions()
        parsed.port = server.port
        return NFSServerTarget(host: server.host, sharePath: server.pseudoPath, options: parsed)
    }

    /// Ready when a libnfs mount and statvfs succeed (ganesha accepts TCP slightly before it serves).
    @Sendable static func probeReady(_ server: GaneshaServer) async -> Bool {
        await LibNFSProbe(target: target(server)).probe(markerFile: "", deadline: .seconds(2)).reachable
    }

    @Test func probe_whenHealthy_reportsMarkerAndCapacity() async throws {
        try await withServer { _, probe in
            let first = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
            #expect(first.failure == nil, "\(first)")
            #expect(first.reachable)
            #expect(first.markerPresent == true)
            let free = try #require(first.freeBytes)
            let total = try #require(first.totalBytes)
            #expect(free > 0)
            #expect(total >= free)
            #expect(first.elapsed < .seconds(1))

            // The context is reused: a leading slash names the same file, and the answer comes fast.
            let second = await probe.probe(markerFile: "/" + Self.marker, deadline: .seconds(2))
            #expect(second.isHealthy, "\(second)")
            #expect(second.elapsed < .seconds(1), "well under the 2 s deadline")

            // No marker configured: reachability and capacity only.
            let noMarker = await probe.probe(markerFile: "", deadline: .seconds(2))
            #expect(noMarker.isHealthy)
            #expect(noMarker.markerPresent == nil)
        }
    }

    @Test func probe_whenMarkerAbsent_reportsMarkerMissing() async throws {
        try await withServer(withMarker: false) { _, probe in
            for _ in 0..<2 {  // twice: the context survives a missing marker
                let result = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
                #expect(result.failure == .markerMissing, "\(result)")
                #expect(result.reachable)
                #expect(result.markerPresent == false)
                #expect((result.freeBytes ?? 0) > 0)
            }
        }
    }

    @Test func probe_whenServerKilledThenRestarted_reportsUnreachableThenRecovers() async throws {
        try await withServer { server, probe in
            #expect(await probe.probe(markerFile: Self.marker, deadline: .seconds(2)).isHealthy)

            await server.kill()
            let down = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
            guard case .unreachable = down.failure else {
                Issue.record("expected unreachable, got \(down)")
                return
            }
            #expect(!down.reachable)
            #expect(down.elapsed < .milliseconds(1500), "a dead server is noticed at once, not at the 2 s deadline")

            // Still down: a new context cannot connect either.
            let stillDown = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
            guard case .unreachable = stillDown.failure else {
                Issue.record("expected unreachable, got \(stillDown)")
                return
            }

            try await server.restart(ready: Self.probeReady)
            let back = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
            #expect(back.isHealthy, "a fresh context after the restart: \(back)")
        }
    }

    @Test func probe_whenServerRestartedBehindItsBack_recoversByTheSecondProbe() async throws {
        try await withServer { server, probe in
            #expect(await probe.probe(markerFile: Self.marker, deadline: .seconds(2)).isHealthy)
            try await server.restart(ready: Self.probeReady)

            // The cached NFSv4 context is dead after a restart; the first probe may notice that, the next one must
            // be healthy on a new context.
            let first = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
            let second = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
            #expect(second.isHealthy, "first: \(first), second: \(second)")
        }
    }

    @Test func probe_whenServerHangs_timesOutAtDeadlineAndRecoversAfterContinue() async throws {
        try await withServer { server, probe in
            #expect(await probe.probe(markerFile: Self.marker, deadline: .seconds(2)).isHealthy)

            let deadline = Duration.milliseconds(300)
            try await server.stop()
            defer { server.resume() }
            func expectTimedOut(_ what: String, atLeast minimum: Duration) async {
                let hung = await probe.probe(markerFile: Self.marker, deadline: deadline)
                guard case .timedOut = hung.failure else {
                    Issue.record("\(what): expected timedOut, got \(hung)")
                    return
                }
                #expect(!hung.reachable)
                #expect(hung.elapsed >= minimum, "\(what): \(hung)")
                #expect(hung.elapsed < deadline + .seconds(1), "\(what): \(hung)")
            }
            // On the mounted context.
            await expectTimedOut("first", atLeast: deadline)
            // Right after: the call may still be stuck (answered at once) or back (a fresh context times out).
            await expectTimedOut("immediately after", atLeast: .zero)
            for attempt in 0..<3 {
                // Once the stuck call has returned, each probe builds a fresh context and times out mounting it.
                await probe.waitForWorker()
                await expectTimedOut("fresh context \(attempt)", atLeast: deadline)
            }

            server.resume()
            await probe.waitForWorker()
            let back = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
            #expect(back.isHealthy, "after SIGCONT: \(back)")
        }
    }

    @Test func probe_whenTimeoIsShorterThanDeadline_libnfsTimesOutFirst() async throws {
        try await withServer(options: "timeo=2") { server, probe in  // 200 ms
            #expect(await probe.probe(markerFile: Self.marker, deadline: .seconds(2)).isHealthy)
            try await server.stop()
            defer { server.resume() }
            let hung = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
            guard case .timedOut = hung.failure else {
                Issue.record("expected timedOut, got \(hung)")
                return
            }
            #expect(hung.elapsed < .seconds(1), "libnfs's own 200 ms timeout answers before the 2 s deadline: \(hung)")
        }
    }

    @Test func probe_whenShareNotExported_reportsMountFailed() async throws {
        try await withServer { server, _ in
            var target = Self.target(server)
            target.sharePath = "/not-exported"
            let result = await LibNFSProbe(target: target).probe(markerFile: Self.marker, deadline: .seconds(2))
            guard case .mountFailed(let why) = result.failure else {
                Issue.record("expected mountFailed, got \(result)")
                return
            }
            #expect(why.contains("NFS4ERR_NOENT"), "\(why)")
            #expect(!result.reachable)
        }
    }

    @Test func probe_latencyOnHealthyServer() async throws {
        try await withServer { _, probe in
            _ = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))  // mounts
            var samples: [Duration] = []
            for _ in 0..<200 {
                let result = await probe.probe(markerFile: Self.marker, deadline: .seconds(2))
                #expect(result.isHealthy, "\(result)")
                samples.append(result.elapsed)
            }
            samples.sort()
            let ms = { (d: Duration) in Double(d.components.attoseconds) / 1e15 + Double(d.components.seconds) * 1000 }
            print(
                "LibNFSProbe latency over 200 probes: median \(ms(samples[100])) ms, p90 \(ms(samples[180])) ms, "
                    + "max \(ms(samples[199])) ms")
        }
    }
}

/// Needs no server: runs even where ganesha is missing.
@Suite struct LibNFSProbeNoServerTests {
    @Test func probe_whenNothingListens_reportsUnreachable() async throws {
        let port = try freeTCPPort()
        let probe = LibNFSProbe(
            target: NFSServerTarget(host: "127.0.0.1", sharePath: "/images", options: NFSMountOptions(port: port)))
        let result = await probe.probe(markerFile: ".imagestore-marker", deadline: .seconds(2))
        guard case .unreachable = result.failure else {
            Issue.record("expected unreachable, got \(result)")
            return
        }
        #expect(!result.reachable)
        #expect(result.markerPresent == nil)
        #expect(result.elapsed < .milliseconds(1500), "refused at once, not at the 2 s deadline")
    }
}
