import Foundation
import HTTPTypes
import HummingbirdTesting
import ImageStoreConfig
import ImageStoreCore
import ImageStoreGuard
import ImageStoreHealth
import ImageStoreMetadata
import ImageStoreMetrics
import Logging
import ImageStoreTestSupport
import NIOCore
import NIOPosix
import Testing

@testable import ImageStoreAPI

/// `/metrics` as Prometheus scrapes it: request counts by route template, image bytes both ways,
/// health and process figures; off unless `[metrics] enabled`; on its own listener with `bind_port`.
@Suite struct MetricsAPITests {
    /// The value of one sample line (`name{labels} value`), or nil when the line is absent.
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    @Test func metrics_countRequestsByRouteTemplate_andImageBytesBothWays() async throws {
        let harness = try APITestHarness { $0.metrics.enabled = true }
        try await harness.run { client in
            let id = try await client.createImage()
            // Over 1 MiB: the download's bytes past the first chunk go out with sendfile, and count too.
            let data = randomBytes((2 << 20) + 300_000)
            #expect(try await client.upload(id, data).status == .noContent)
            let download = try await client.execute(uri: "/v2/images/\(id)/file", method: .get)
            #expect(download.body.readableBytes == data.count)
            let missing = try await client.execute(uri: "/v2/images/\(UUID().uuidString)", method: .get)
            #expect(missing.status == .notFound)

            let scrape = try await client.execute(uri: "/metrics", method: .get)
            #expect(scrape.status == .ok)
            #expect(scrape.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = scrape.text
            #expect(Self.sample(text, #"imagestore_http_requests_total{route="/v2/images",method="POST",status="201"}"#) == 1, "\(text)")
            #expect(Self.sample(text, #"imagestore_http_requests_total{route="/v2/images/{image_id}/file",method="PUT",status="204"}"#) == 1)
            #expect(Self.sample(text, #"imagestore_http_requests_total{route="/v2/images/{image_id}/file",method="GET",status="200"}"#) == 1)
            #expect(Self.sample(text, #"imagestore_http_requests_total{route="/v2/images/{image_id}",method="GET",status="404"}"#) == 1)
            // Templates, never raw paths: no image id appears in any label.
            #expect(!text.contains(id))
            #expect(Self.sample(text, #"imagestore_image_bytes_total{direction="uploaded"}"#) == Double(data.count))
            #expect(Self.sample(text, #"imagestore_image_bytes_total{direction="downloaded"}"#) == Double(data.count))
            #expect(Self.sample(text, #"imagestore_http_request_duration_seconds_count{route="/v2/images",method="POST"}"#) == 1)
            #expect(text.contains("# TYPE imagestore_http_request_duration_seconds histogram"))
            #expect(Self.sample(text, "imagestore_healthy") == 1)
            #expect((Self.sample(text, "process_resident_memory_bytes") ?? 0) > 1_000_000)
            #expect((Self.sample(text, "process_open_fds") ?? 0) > 0)
        }
    }

    @Test func metrics_offByDefault_404() async throws {
        let harness = try APITestHarness()
        try await harness.run { client in
            let response = try await client.execute(uri: "/metrics", method: .get)
            #expect(response.status == .notFound)
        }
    }

    @Test func metrics_withBindPort_onItsOwnListenerOnly() async throws {
        let port = try freeTCPPort()
        let harness = try APITestHarness {
            $0.metrics = MetricsOptions(enabled: true, bindHost: "127.0.0.1", bindPort: port)
        }
        try await harness.run { client in
            #expect(try await client.execute(uri: "/metrics", method: .get).status == .notFound)
            _ = try await client.createImage()
            let text = try await Self.fetch(port: port)
            #expect(text.hasPrefix("HTTP/1.1 200"), "\(text)")
            #expect(Self.sample(text, #"imagestore_http_requests_total{route="/v2/images",method="POST",status="201"}"#) == 1, "\(text)")
        }
    }

    /// The guard's failures by check and reason, and its hung calls, from what the guard counted (a scrape
    /// adds only what happened since the previous one).
    @Test func metrics_storeCheckFailuresByReason_andHungCalls() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        let mountGuard = MountGuard(
            settings: MountGuardSettings(datadir: dir.path, markerPath: dir.appending(".glance")), probe: nil, logger: quiet)
        _ = await mountGuard.runAllChecks()
        _ = await mountGuard.runAllChecks()
        let controller = MetricsController(
            metrics: ServiceMetrics(), guards: [(storeID: "file", state: { mountGuard.state })],
            healthMonitor: HealthMonitor(backends: [], settings: .init(interval: .seconds(5), checkTimeout: .seconds(1)), logger: quiet))
        let failures = #"imagestore_store_check_failures_total{store="file",check="marker",reason="marker missing"}"#
        let first = controller.metrics.render(sampling: controller.sample())
        #expect(Self.sample(first, failures) == 2, "\(first)")
        #expect(Self.sample(first, #"imagestore_store_hung_calls{store="file"}"#) == 0)
        #expect(first.contains("# TYPE imagestore_store_check_failures_total counter"))

        _ = await mountGuard.runAllChecks()
        mountGuard.storeCallsStuck(2, detail: "timed out: a read did not answer")
        let second = controller.metrics.render(sampling: controller.sample())
        #expect(Self.sample(second, failures) == 3, "counted once per failed run, not once per scrape: \(second)")
        #expect(Self.sample(second, #"imagestore_store_hung_calls{store="file"}"#) == 2)
        #expect(Self.sample(second, #"imagestore_store_enabled{store="file"}"#) == 0)
    }

    /// The metadata database's latency by engine and operation, and its accesses in progress, through the
    /// repository's instrumentation (SQLite in memory here).
    @Test func metrics_metadataLatencyByOperation_andAccessesInProgress() async throws {
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        let repository = try SQLiteImageRepository(path: ":memory:", logger: quiet)
        let metrics = ServiceMetrics()
        repository.instrumentation.observe { operation, duration, failed in
            metrics.metadataAccess(engine: "sqlite", operation: operation, duration: duration, failed: failed)
        }
        _ = try await repository.get(ImageID())
        _ = try await repository.get(ImageID())
        let controller = MetricsController(
            metrics: metrics, guards: [(storeID: "file", state: { nil })],
            healthMonitor: HealthMonitor(backends: [], settings: .init(interval: .seconds(5), checkTimeout: .seconds(1)), logger: quiet),
            metadata: repository.instrumentation, poolSize: nil)
        let text = metrics.render(sampling: controller.sample())
        let getCount = text.split(separator: "\n").first {
            $0.hasPrefix("imagestore_metadata_duration_seconds_count{") && $0.contains(#"engine="sqlite""#) && $0.contains(#"operation="get""#)
        }
        #expect(getCount.map { $0.hasSuffix(" 2") } == true, "\(text)")
        #expect(Self.sample(text, #"imagestore_metadata_accesses_in_progress{engine="sqlite"}"#) == 0, "\(text)")
        #expect(!text.contains("imagestore_metadata_errors_total"))
    }

    /// A plain GET over a new connection (HTTP/1.0: the server closes after the answer), retried
    /// while the metrics listener is still starting.
    static func fetch(port: Int) async throws -> String {
        for _ in 0..<50 {
            if let answer = try? await offPool({ () -> String in
                let connection = try RawHTTPConnection(port: port)
                defer { connection.closeNormally() }
                try connection.send("GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                return connection.receive(until: "\u{0}")  // until the peer closes
            }), answer.hasPrefix("HTTP/1.") {
                return answer
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSupportError("no answer from the metrics listener on port \(port)")
    }
}
