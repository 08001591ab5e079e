/// `[metrics]`: the Prometheus endpoint (`GET /metrics`, text exposition format).
public struct MetricsOptions: Sendable, Equatable {
    /// `enabled`: serve `/metrics` (default off: it shows routes, stores and load to whoever asks).
    public var enabled: Bool
    /// `bind_host` / `bind_port`: serve `/metrics` on a listener of its own (for example on a pod
    /// address Prometheus scrapes, while the API is exposed through a Service); without `bind_port`,
    /// `/metrics` is served on the API's listener.
    public var bindHost: String?
    public var bindPort: Int?

    public init(enabled: Bool = false, bindHost: String? = nil, bindPort: Int? = nil) {
        self.enabled = enabled
        self.bindHost = bindHost
        self.bindPort = bindPort
    }

    enum Key {
        static let enabled = "enabled"
        static let bindHost = "bind_host"
        static let bindPort = "bind_port"
        static let all: Set<String> = [enabled, bindHost, bindPort]
    }
}
