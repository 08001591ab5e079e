import HTTPTypes
import Hummingbird
import ImageStoreMetrics
import NIOCore
import Prometheus

/// Counts every request by route template, method and status, with its latency to the last byte
/// written, and counts image data bytes as they cross the wire. The outermost middleware, so it sees
/// the status that the error mapping produced.
struct MetricsMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let metrics: ServiceMetrics

    /// Routes whose bodies are image data (uploads in, downloads out).
    static let dataRoutes: Set<String> = ["/v2/images/{image_id}/file", "/v2/images/{image_id}/stage"]

    func handle(
        _ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response
    )
        async throws -> Response
    {
        let start = ContinuousClock.now
        // No template for a path that matched no route: one label value for all of them.
        let route = context.endpointPath.map(Self.template) ?? "unmatched"
        let method = request.method.rawValue
        let inFlight = metrics.inFlight(route: route, method: method)
        inFlight.increment()
        var request = request
        let isData = Self.dataRoutes.contains(route)
        if isData && request.method == .put {
            let uploaded = metrics.imageBytes(.uploaded)
            request.body = RequestBody(asyncSequence: CountingSequence(base: request.body, counter: uploaded))
        }
        let metrics = self.metrics
        do {
            var response = try await next(request, context)
            let status = response.status.code
            let downloaded = isData && request.method == .get ? metrics.imageBytes(.downloaded) : nil
            response.body = Self.observed(response.body, counting: downloaded) {
                inFlight.decrement()
                metrics.requestFinished(route: route, method: method, status: status, duration: ContinuousClock.now - start)
            }
            return response
        } catch {
            // Only errors the request middleware did not map reach here (it maps every error).
            inFlight.decrement()
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.requestFinished(route: route, method: method, status: status, duration: ContinuousClock.now - start)
            throw error
        }
    }

    /// Hummingbird's `:name` parameters back to the OpenAPI-style `{name}` the route table uses.
    static func template(_ endpointPath: String) -> String {
        endpointPath.split(separator: "/", omittingEmptySubsequences: false).map { part in
            part.hasPrefix(":") ? "{" + part.dropFirst() + "}" : String(part)
        }.joined(separator: "/")
    }

    /// The same body, counting the bytes handed to the connection (when `counter` is given) and
    /// calling `finished` once after the last byte was written or the write failed.
    static func observed(_ body: ResponseBody, counting counter: Counter?, finished: @escaping @Sendable () -> Void) -> ResponseBody {
        ResponseBody(contentLength: body.contentLength) { writer in
            do {
                try await body.write(CountingWriter(base: writer, counter: counter))
            } catch {
                finished()
                throw error
            }
            finished()
        }
    }
}

/// Passes each buffer of a request body through, counting its bytes.
struct CountingSequence<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let counter: Counter

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let counter: Counter
        mutating func next() async throws -> ByteBuffer? {
            guard let buffer = try await base.next() else { return nil }
            counter.increment(by: Int64(buffer.readableBytes))
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), counter: counter) }
}

/// A body writer that counts bytes: also those a download sent into the socket past it (sendfile).
protocol CountsBytesSentElsewhere {
    var countSentElsewhere: (@Sendable (Int) -> Void)? { get }
}

/// A response body writer that counts what it passes on.
struct CountingWriter: ResponseBodyWriter, CountsBytesSentElsewhere {
    var base: any ResponseBodyWriter
    let counter: Counter?

    mutating func write(_ buffer: ByteBuffer) async throws {
        try await base.write(buffer)
        counter?.increment(by: Int64(buffer.readableBytes))
    }

    mutating func write(contentsOf buffers: some Sequence<ByteBuffer>) async throws {
        for buffer in buffers { try await write(buffer) }
    }

    var countSentElsewhere: (@Sendable (Int) -> Void)? {
        guard let counter else { return nil }
        return { (bytes: Int) in counter.increment(by: Int64(bytes)) }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        try await base.finish(trailingHeaders)
    }
}
