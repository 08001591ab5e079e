import AsyncHTTPClient
import ServiceLifecycle

/// Keeps an `HTTPClient` for the server's lifetime and shuts it down with the server.
public struct HTTPClientService: Service {
    public let client: HTTPClient
    public init(client: HTTPClient) { self.client = client }

    public func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
