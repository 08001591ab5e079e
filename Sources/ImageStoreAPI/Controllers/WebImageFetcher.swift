import AsyncHTTPClient
import Foundation
import ImageStoreCore
import NIOCore
import NIOHTTP1
import Synchronization

/// `web-download`'s HTTP client (async-http-client): the URI is checked against
/// `[import_filtering_opts]` again right before the request (a host name resolved, as Glance's
/// `normalize_hostname`), redirects are followed only to URIs that pass the same check (Glance's
/// `SafeRedirectHandler`; at most 10, as urllib), and the connection has deadlines on connecting and on
/// every read, so a server that stalls fails the import instead of holding it forever.
final class WebImageFetcher: ImageSourceFetcher {
    let filter: ImportFilter
    let readTimeout: TimeAmount
    /// Name lookups (getaddrinfo blocks) on threads of their own, each under `lookupDeadline`.
    private let resolver = BlockingCallExecutor(name: "web-download-dns", threads: 2)
    static let lookupDeadline: Duration = .seconds(10)
    /// urllib's `HTTPRedirectHandler.max_redirections`.
    static let maxRedirects = 10
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

    /// Whether `uri` may be fetched: `[import_filtering_opts]`, and a host name must resolve, to no
    /// internal address unless `allowed_hosts` names it.
    func permits(_ uri: String) async -> Bool {
        let resolver = self.resolver
        return await filter.permits(uri) { host in
            switch await resolver.run(deadline: Self.lookupDeadline, { Self.lookUp(host) }) {
            case .completed(let addresses): return addresses
            case .timedOut: throw ImageStoreError(.dependencyUnavailable, "Looking up \(host) timed out")
            }
        }
    }

    /// The numeric addresses `host` resolves to (empty when it does not). As Glance, a trailing dot makes
    /// it a DNS name, never a number spelled some other way.
    static func lookUp(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host.hasSuffix(".") ? host : host + ".", nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [String] = []
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let info = next {
            var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 {
                addresses.append(String(cString: text))
            }
            next = info.pointee.ai_next
        }
        return addresses
    }

    func fetch(_ uri: String, into sink: @escaping @Sendable (ByteBuffer) async throws -> Void) async throws {
        guard await permits(uri) else { throw ImageStoreError.badRequest("URI for web-download does not pass filtering: \(uri)") }
        var current = uri
        var redirects = 0
        do {
            while true {
                let request = HTTPClientRequest(url: current)
                // The per-read timeout bounds each wait; this only bounds the whole transfer of a huge image.
                let response = try await httpClient().execute(request, deadline: .now() + .hours(24))
                // urllib's HTTPRedirectHandler follows these; each target is checked as the first URI was.
                if [301, 302, 303, 307, 308].contains(response.status.code), let location = response.headers.first(name: "location") {
                    // What a redirect says besides its Location is not wanted; a bounded read ends it.
                    _ = try? await response.body.collect(upTo: 1 << 16)
                    guard let next = URL(string: location, relativeTo: URL(string: current))?.absoluteString else {
                        throw ImageStoreError.badRequest("Redirect to an unreadable URL: \(location)")
                    }
                    redirects += 1
                    guard redirects <= Self.maxRedirects else {
                        throw ImageStoreError(
                            .dependencyUnavailable, "More than \(Self.maxRedirects) redirects downloading \(uri): a redirect loop?")
                    }
                    guard await permits(next) else { throw ImageStoreError.badRequest("Redirect to disallowed URL: \(next)") }
                    current = next
                    continue
                }
                guard (200..<300).contains(response.status.code) else {
                    throw ImageStoreError(.dependencyUnavailable, "The web server answered \(response.status.code) for \(current)")
                }
                for try await chunk in response.body { try await sink(chunk) }
                return
            }
        } catch let error as ImageStoreError {
            throw error
        } catch is CancellationError {
            throw ImageStoreError(.clientDisconnected, "The download of \(uri) was stopped")
        } catch {
            throw ImageStoreError(.dependencyUnavailable, "Failed to download \(current): \(error)")
        }
    }
}
