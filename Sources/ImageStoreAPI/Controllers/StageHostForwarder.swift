import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreCore
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Glance's distributed import (`images.py _proxy_request_to_host`): an image staged on another
/// replica (`os_glance_stage_host` differs from this replica's `worker_self_reference_url`) has its
/// data in that replica's staging directory, so `POST /import` (glance-direct) and `DELETE` are replayed
/// there with the client's own headers (token, identity, request id) and that replica's answer is
/// relayed. A replayed request carries `X-ImageStore-Forwarded-By`: the replica receiving it never
/// forwards it again. Every call has a deadline; a stage host that cannot be reached is a 503 naming it.
final class StageHostForwarder: Service {
    /// `worker_self_reference_url` (nil: this replica records no stage host, and any recorded one is elsewhere).
    let selfURL: String?
    let connectTimeout: TimeAmount
    /// The most a forwarded request may take, answer included.
    let deadline: TimeAmount
    /// The largest answer relayed (Glance's import and delete answers are empty or a small JSON error).
    static let maxResponseBytes = 1 << 20
    static let forwardedHeader = HTTPField.Name("X-ImageStore-Forwarded-By")!
    /// Not replayed: they describe the connection to this replica, or are set by the client library.
    static let hopByHop: Set<String> = [
        "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect",
        "proxy-authorization", "proxy-connection", "accept-encoding",
    ]
    /// Made on the first forward (an application built but never run holds no client), shut down with the server.
    private let client = Mutex<(client: HTTPClient?, closed: Bool)>((nil, false))

    init(selfURL: String?, connectTimeout: TimeAmount = .seconds(5), deadline: TimeAmount = .seconds(60)) {
        self.selfURL = selfURL
        self.connectTimeout = connectTimeout
        self.deadline = deadline
    }

    /// The replica to forward to: the image's stage host when it is set and is not this replica.
    func stageHost(of image: Image) -> String? {
        guard let host = image.properties[ImportProperty.stageHost], !host.isEmpty else { return nil }
        return Self.sameURL(host, selfURL) ? nil : host
    }

    /// Whether `request` was already forwarded by another replica.
    static func wasForwarded(_ request: Request) -> Bool { request.headers[forwardedHeader] != nil }

    static func sameURL(_ a: String, _ b: String?) -> Bool {
        guard let b else { return false }
        func trimmed(_ s: String) -> Substring {
            var s = Substring(s)
            while s.hasSuffix("/") { s = s.dropLast() }
            return s
        }
        return trimmed(a) == trimmed(b)
    }

    /// Replays `request` (method, path and query, headers, `body`) on `host` and returns its answer:
    /// status, content type and body. Unreachable, too slow or a broken answer: 503 naming the host.
    func forward(
        _ request: Request, body: ByteBuffer?, to host: String, context: AppRequestContext
    ) async throws -> Response {
        var base = Substring(host)
        while base.hasSuffix("/") { base = base.dropLast() }
        let url = String(base) + (request.uri.path) + (request.uri.query.map { "?" + $0 } ?? "")
        var outgoing = HTTPClientRequest(url: url)
        outgoing.method = HTTPMethod(rawValue: request.method.rawValue)
        for field in request.headers where !Self.hopByHop.contains(field.name.canonicalName) {
            outgoing.headers.add(name: field.name.rawName, value: field.value)
        }
        outgoing.headers.replaceOrAdd(name: "x-openstack-request-id", value: context.requestID)
        outgoing.headers.replaceOrAdd(name: Self.forwardedHeader.rawName, value: selfURL ?? "unknown")
        if let body {
            outgoing.headers.replaceOrAdd(name: "content-length", value: "\(body.readableBytes)")
            outgoing.body = .bytes(body)
        }
        context.logger.info(
            "proxying request to the stage host", metadata: ["stage_host": .string(host), "method": .string(request.method.rawValue)])
        let answer: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            answer = try await httpClient().execute(outgoing, deadline: .now() + deadline)
            bytes = try await answer.body.collect(upTo: Self.maxResponseBytes)
        } catch let error as ImageStoreError {
            throw error
        } catch {
            context.logger.error("failed to proxy to the stage host", metadata: ["url": .string(url), "error": "\(error)"])
            throw ImageStoreError(.dependencyUnavailable, "Stage host \(host) is unavailable: \(error)")
        }
        if let remoteID = answer.headers.first(name: "x-openstack-request-id") {
            context.logger.info("stage host answered", metadata: ["remote_request_id": .string(remoteID), "status": "\(answer.status.code)"])
        }
        var headers = HTTPFields()
        if let type = answer.headers.first(name: "content-type") { headers[.contentType] = type }
        if let retry = answer.headers.first(name: "retry-after") { headers[.retryAfter] = retry }
        return Response(
            status: .init(code: Int(answer.status.code), reasonPhrase: answer.status.reasonPhrase), headers: headers,
            body: .init(byteBuffer: bytes))
    }

    private func httpClient() throws -> HTTPClient {
        try client.withLock { state in
            guard !state.closed else { throw ImageStoreError(.dependencyUnavailable, "The server is shutting down") }
            if let client = state.client { return client }
            var configuration = HTTPClient.Configuration(
                redirectConfiguration: .disallow, timeout: .init(connect: connectTimeout, read: deadline))
            configuration.httpVersion = .http1Only
            configuration.connectionPool.retryConnectionEstablishment = false
            let made = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            state.client = made
            return made
        }
    }

    /// Waits for the server's shutdown, then shuts the client down; later forwards fail at once.
    func run() async throws {
        try? await gracefulShutdown()
        let made = client.withLock { state -> HTTPClient? in
            state.closed = true
            return state.client
        }
        try? await made?.shutdown()
    }
}
