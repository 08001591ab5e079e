import ImageStoreCore
import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreGuard
import ImageStoreHealth
import ImageStoreMetrics
import Logging
import NIOCore

/// `GET /metrics`: the Prometheus text exposition. No authentication (Prometheus scrapes without a
/// token); `[metrics] enabled` turns it on, `[metrics] bind_port` moves it to a listener of its own.
/// Answers from memory: guard and health figures are what their background checks last saw.
struct MetricsController: Sendable {
    let metrics: ServiceMetrics
    /// Every store's id and its guard's latest state (nil: unguarded, not sampled), in configuration order.
    let guards: [(storeID: String, state: @Sendable () -> GuardState?)]
    let healthMonitor: HealthMonitor
    /// The metadata repository's instrumentation (nil for the in-memory one) and its pool size.
    var metadata: MetadataInstrumentation? = nil
    var poolSize: Int? = nil

    func sample() -> ServiceMetrics.Sample {
        var stores: [ServiceMetrics.StoreSample] = []
        for (storeID, guardState) in guards {
            guard let state = guardState() else { continue }
            stores.append(
                ServiceMetrics.StoreSample(
                    store: storeID, enabled: state.enabled,
                    checks: state.orderedResults.filter { $0.verdict != .skipped }.map {
                        (name: $0.check.rawValue, passed: $0.verdict == .pass, seconds: $0.elapsed.fractionalSeconds)
                    },
                    freeBytes: state.freeBytes, totalBytes: state.totalBytes, hungCalls: state.hungCalls,
                    failures: state.failureCounts.map { (check: $0.key.check, reason: $0.key.reason, count: $0.value) }
                        .sorted { ($0.check, $0.reason) < ($1.check, $1.reason) }))
        }
        let report = healthMonitor.report(port: nil)
        return ServiceMetrics.Sample(
            metadata: metadata.map { .init(engine: $0.engine, inProgress: $0.inProgress, poolSize: poolSize) }, stores: stores,
            healthBackends: report.entries.map { (name: $0.backend, available: $0.result.available) },
            healthy: report.healthy)
    }

    func response() -> Response {
        let text = metrics.render(sampling: sample())
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// On the API's router (outside the route table: it is not part of the Image API contract).
    func addRoute<Context: RequestContext>(to router: Router<Context>) {
        router.get("/metrics") { _, _ in response() }
    }

    /// A listener of its own, run as one of the application's services.
    func application(host: String, port: Int, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        addRoute(to: router)
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "imagestore-metrics"),
            logger: logger)
    }
}
