import AsyncHTTPClient
import Foundation
import ImageStoreCore
import NIOCore
import NIOHTTP1
import Synchronization

/// `web-download`'s HTTP client (async-http-client): the URI is checked against
/// `[import_filtering_opts]` again right before the request, redirects are not followed (a redirect
/// could lead past the filter), and the connection has deadlines on connecting and on every read, so a
/// server that stalls fails the import instead of holding it forever.
final class WebImageFetcher: ImageSourceFetcher {
    let filter: ImportFilter
    let readTimeout: TimeAmount
    /// Made on the first download (an application that is built but never run holds no client, which
    /// async-http-client would require to be shut down), shut down with the server.
    private let client = Mutex<(client: HTTPClient?, closed: Bool)>((nil, false))

    init(filter: ImportFilter, readTimeout: TimeAmount) {
        self.filter = filter
        self.readTimeout = readTimeout
    }

    private func httpClient() throws -> HTTPClient {
        try client.withLock { state in
            guard !state.closed else { throw ImageStoreError(.clientDisconnected, "The server is shutting down") }
            if let client = state.client { return client }
            let made = Self.makeClient(readTimeout: readTimeout)
            state.client = made
            return made
        }
    }

    /// Shuts the client down (server shutdown); later downloads fail at once.
    func shutdown() async {
        let made = client.withLock { state -> HTTPClient? in
            state.closed = true
            return state.client
        }
        try? await made?.shutdown()
    }

    /// - Parameters:
    ///   - connectTimeout: the most connecting may take.
    ///   - readTimeout: the most the server may stay silent while sending.
    static func makeClient(connectTimeout: TimeAmount = .seconds(10), readTimeout: TimeAmount = .seconds(60)) -> HTTPClient {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: connectTimeout, read: readTimeout))
        configuration.httpVersion = .http1Only
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    func fetch(_ uri: String, into sink: @escaping @Sendable (ByteBuffer) async throws -> Void) async throws {
        guard filter.allows(uri) else { throw ImageStoreError.badRequest("URI for web-download does not pass filtering: \(uri)") }
        do {
            let request = HTTPClientRequest(url: uri)
            // The per-read timeout bounds each wait; this only bounds the whole transfer of a huge image.
            let response = try await httpClient().execute(request, deadline: .now() + .hours(24))
            guard (200..<300).contains(response.status.code) else {
                throw ImageStoreError(.dependencyUnavailable, "The web server answered \(response.status.code) for \(uri)")
            }
            for try await chunk in response.body { try await sink(chunk) }
        } catch let error as ImageStoreError {
            throw error
        } catch is CancellationError {
            throw ImageStoreError(.clientDisconnected, "The download of \(uri) was stopped")
        } catch {
            throw ImageStoreError(.dependencyUnavailable, "Failed to download \(uri): \(error)")
        }
    }
}
