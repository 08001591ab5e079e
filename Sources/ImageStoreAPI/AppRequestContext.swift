import Foundation
import Hummingbird
import Logging
import NIOCore

/// Per-request state: the request id every response and log line carries, and who is calling.
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// `req-<uuid>`, returned as `x-openstack-request-id`.
    public var requestID: String
    /// The caller's project (`X-Project-Id`/`X-Tenant-Id` under noauth); owner of images it creates.
    public var projectID: String?
    /// `X-Roles`, lowercased.
    public var roles: [String]
    /// Under noauth every caller is admin.
    public var isAdmin: Bool
    /// The TCP peer, for `allowed_source_ranges`.
    public let remoteAddress: SocketAddress?
    /// The server port the request arrived on (oslo's `req.server_port`, for `disable_by_files_ports`).
    public let localPort: Int?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.requestID = "req-" + UUID().uuidString.lowercased()
        self.projectID = nil
        self.roles = []
        self.isAdmin = true
        self.remoteAddress = source.channel.remoteAddress
        self.localPort = source.channel.localAddress?.port
    }

    /// JSON routes read at most this much; larger bodies are 413 before being read whole.
    public var maxUploadSize: Int { 1 << 20 }
}

import struct Foundation.UUID
