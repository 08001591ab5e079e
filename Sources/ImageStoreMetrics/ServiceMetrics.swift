import Foundation
import Prometheus
import Synchronization

/// Every metric ImageStore exports, in one Prometheus registry (swift-prometheus) per application, so
/// several applications in one process (the tests) never share counters, and nothing is global.
///
/// Request counters and latencies are recorded as requests finish; store, guard and health figures
/// are gauges set from the current state just before each scrape (`render(sampling:)`), so a scrape
/// never waits on a store: it reads what the guard and the health monitor last saw.
public final class ServiceMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// Request latency buckets: from a cached list (sub-millisecond) to a multi-GiB upload.
    static let latencyBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
        .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    ]

    public init() {
        registry = PrometheusCollectorRegistry()
        _ = processStart
    }

    private let processStart = Date()

    // MARK: Requests

    /// A request finished: counted by route template (`/v2/images/{image_id}/file`, never the raw
    /// path, so image ids do not explode the label set), method and status, with its latency.
    public func requestFinished(route: String, method: String, status: Int, duration: Duration) {
        let labels = [("route", route), ("method", method), ("status", String(status))]
        registry.makeCounter(
            name: "imagestore_http_requests_total", labels: labels, help: "HTTP requests by route template, method and status"
        ).increment()
        registry.makeDurationHistogram(
            name: "imagestore_http_request_duration_seconds", labels: [("route", route), ("method", method)],
            buckets: Self.latencyBuckets, help: "HTTP request latency (to the last byte written) by route template and method"
        ).record(duration)
    }

    /// Requests being served now, by route template and method (uploads are PUT …/file, downloads
    /// GET …/file).
    public func inFlight(route: String, method: String) -> Gauge {
        registry.makeGauge(
            name: "imagestore_http_requests_in_flight", labels: [("route", route), ("method", method)],
            help: "HTTP requests being served, by route template and method")
    }

    public enum Direction: String, Sendable { case uploaded, downloaded }

    /// Image data bytes received (upload, stage) or sent (download).
    public func imageBytes(_ direction: Direction) -> Counter {
        registry.makeCounter(
            name: "imagestore_image_bytes_total", labels: [("direction", direction.rawValue)],
            help: "Image data bytes received from clients (uploaded) or sent to them (downloaded)")
    }

    // MARK: Metadata database

    /// Metadata access buckets: an indexed SQLite read (sub-millisecond) to a pool_timeout (seconds).
    static let metadataBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10),
    ]

    /// One metadata access finished (`operation` is a fixed name such as `get` or `updateImage`).
    public func metadataAccess(engine: String, operation: String, duration: Duration, failed: Bool) {
        let labels = [("engine", engine), ("operation", operation)]
        registry.makeDurationHistogram(
            name: "imagestore_metadata_duration_seconds", labels: labels, buckets: Self.metadataBuckets,
            help: "Metadata database access latency (waiting for a connection and the deadline included) by engine and operation"
        ).record(duration)
        if failed {
            registry.makeCounter(
                name: "imagestore_metadata_errors_total", labels: labels,
                help: "Metadata database accesses that failed (including deadline passed) by engine and operation"
            ).increment()
        }
    }

    // MARK: State sampled at scrape time

    /// One store's guard as last seen by its checks.
    public struct StoreSample: Sendable {
        public var store: String
        public var enabled: Bool
        /// (check name, passed, seconds the last run took); skipped checks are left out.
        public var checks: [(name: String, passed: Bool, seconds: Double)]
        public var freeBytes: Int64?
        public var totalBytes: Int64?
        /// Store calls past their deadline that have not returned (each holds one of the store's threads).
        public var hungCalls: Int
        /// Failed check runs since start: (check, reason class, count), counts only ever growing.
        public var failures: [(check: String, reason: String, count: Int)]
        public init(
            store: String, enabled: Bool, checks: [(name: String, passed: Bool, seconds: Double)], freeBytes: Int64?,
            totalBytes: Int64?, hungCalls: Int = 0, failures: [(check: String, reason: String, count: Int)] = []
        ) {
            self.store = store
            self.enabled = enabled
            self.checks = checks
            self.freeBytes = freeBytes
            self.totalBytes = totalBytes
            self.hungCalls = hungCalls
            self.failures = failures
        }
    }

    /// The failure counts already added to the counter, per (store, check, reason): a scrape adds only
    /// what the guard counted since the previous one.
    private let countedFailures = Mutex<[String: Int]>([:])

    /// The metadata database's accesses in progress, and its pool size (PostgreSQL's `max_pool_size`).
    public struct MetadataSample: Sendable {
        public var engine: String
        public var inProgress: Int
        public var poolSize: Int?
        public init(engine: String, inProgress: Int, poolSize: Int?) {
            self.engine = engine
            self.inProgress = inProgress
            self.poolSize = poolSize
        }
    }

    public struct Sample: Sendable {
        public var metadata: MetadataSample?
        public var stores: [StoreSample]
        /// (backend name, available) from the health monitor's last round.
        public var healthBackends: [(name: String, available: Bool)]
        public var healthy: Bool
        public init(
            metadata: MetadataSample? = nil, stores: [StoreSample] = [], healthBackends: [(name: String, available: Bool)] = [],
            healthy: Bool = true
        ) {
            self.metadata = metadata
            self.stores = stores
            self.healthBackends = healthBackends
            self.healthy = healthy
        }
    }

    /// The Prometheus text exposition, after setting the sampled gauges.
    public func render(sampling sample: Sample) -> String {
        for store in sample.stores {
            let labels = [("store", store.store)]
            registry.makeGauge(
                name: "imagestore_store_enabled", labels: labels,
                help: "1 when the store's mount guard allows writes, 0 when the store is disabled"
            ).set(store.enabled ? 1.0 : 0.0)
            for check in store.checks {
                let checkLabels = [("store", store.store), ("check", check.name)]
                registry.makeGauge(
                    name: "imagestore_store_check_passing", labels: checkLabels,
                    help: "1 when the guard check passed on its last run, 0 when it failed"
                ).set(check.passed ? 1.0 : 0.0)
                registry.makeGauge(
                    name: "imagestore_store_check_duration_seconds", labels: checkLabels,
                    help: "How long the guard check's last run took"
                ).set(check.seconds)
            }
            registry.makeGauge(
                name: "imagestore_store_hung_calls", labels: labels,
                help: "Store calls past their deadline that have not returned yet (the store is disabled while above 0)"
            ).set(Double(store.hungCalls))
            for failure in store.failures {
                let key = "\(store.store)\u{1F}\(failure.check)\u{1F}\(failure.reason)"
                let delta = countedFailures.withLock { counted -> Int in
                    let delta = failure.count - counted[key, default: 0]
                    if delta > 0 { counted[key] = failure.count }
                    return delta
                }
                let counter = registry.makeCounter(
                    name: "imagestore_store_check_failures_total",
                    labels: [("store", store.store), ("check", failure.check), ("reason", failure.reason)],
                    help: "Failed guard check runs by check and reason (the failure's detail up to its first colon)")
                if delta > 0 { counter.increment(by: Int64(delta)) }
            }
            if let free = store.freeBytes {
                registry.makeGauge(name: "imagestore_store_free_bytes", labels: labels, help: "Free bytes on the store's filesystem")
                    .set(Double(free))
            }
            if let total = store.totalBytes {
                registry.makeGauge(name: "imagestore_store_size_bytes", labels: labels, help: "Size of the store's filesystem")
                    .set(Double(total))
            }
        }
        for backend in sample.healthBackends {
            registry.makeGauge(
                name: "imagestore_health_backend_available", labels: [("backend", backend.name)],
                help: "1 when the /healthcheck backend passed its last round, 0 when it failed"
            ).set(backend.available ? 1.0 : 0.0)
        }
        registry.makeGauge(name: "imagestore_healthy", help: "1 when /healthcheck answers 200").set(sample.healthy ? 1.0 : 0.0)
        if let metadata = sample.metadata {
            let labels = [("engine", metadata.engine)]
            registry.makeGauge(
                name: "imagestore_metadata_accesses_in_progress", labels: labels,
                help: "Metadata database accesses running now (waiting for or holding a connection)"
            ).set(Double(metadata.inProgress))
            if let poolSize = metadata.poolSize {
                registry.makeGauge(name: "imagestore_metadata_pool_size", labels: labels, help: "Connections the metadata pool may open")
                    .set(Double(poolSize))
            }
        }
        sampleProcess()
        return registry.emitToString()
    }

    // MARK: Process (Prometheus' standard process_* names)

    /// Reads /proc/self: kernel memory, never a filesystem that can hang, so no deadline is needed.
    private func sampleProcess() {
        registry.makeGauge(name: "process_start_time_seconds", help: "Start time of the process since the Unix epoch in seconds")
            .set(processStart.timeIntervalSince1970)
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            let page = Double(sysconf(Int32(_SC_PAGESIZE)))
            if fields.count > 1, let virtualPages = Double(fields[0]), let residentPages = Double(fields[1]) {
                registry.makeGauge(name: "process_virtual_memory_bytes", help: "Virtual memory size in bytes")
                    .set(virtualPages * page)
                registry.makeGauge(name: "process_resident_memory_bytes", help: "Resident memory size in bytes")
                    .set(residentPages * page)
            }
        }
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            // Fields after the command name: state is field 3, utime 14, stime 15 (1-based in proc(5)).
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]), ticks > 0 {
                registry.makeGauge(name: "process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds")
                    .set((user + system) / ticks)
            }
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            registry.makeGauge(name: "process_open_fds", help: "Number of open file descriptors").set(Double(fds.count))
        }
    }
}
