/// One entry of `[DEFAULT] enabled_backends` (`id:type`). The id names the store's own section.
public struct StoreBackend: Sendable, Equatable {
    public var id: String
    /// The glance_store driver; only `file` is supported.
    public var type: String

    public init(id: String, type: String) {
        self.id = id
        self.type = type
    }

    /// Store types this server can run.
    public static let supportedTypes: Set<String> = ["file"]
    /// Glance reserves ids with this prefix for its internal stores (staging, tasks).
    public static let reservedIDPrefix = "os_glance_"
    /// The single backend's id when `enabled_backends` is not set (legacy `[glance_store]` mode).
    public static let legacyID = "file"
}
