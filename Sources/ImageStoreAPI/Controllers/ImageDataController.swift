import Logging
import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreCore
import NIOCore

/// `PUT`/`GET /v2/images/{id}/file`: streamed upload and download of image data.
struct ImageDataController {
    let access: ImageAccess
    let service: ImageService
    /// Chunks (1 MiB) a download may have read and not yet sent: the one being written, the socket's
    /// queue, the one read ahead.
    static let chunksInFlight = 4

    func addRoutes(to routes: RouteTable) {
        routes.add(.put, "/v2/images/{image_id}/file", upload)
        routes.add(.get, "/v2/images/{image_id}/file", download)
    }

    @Sendable func upload(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let id = try context.imageID()
        guard JSONPatch.mediaType(request.headers[.contentType] ?? "") == "application/octet-stream" else {
            throw ImageStoreError(.unsupportedMediaType, "The Content-Type of image data must be application/octet-stream.")
        }
        let declared = try Self.declaredSize(request.headers)
        _ = try await access.image(id, for: "upload_image", context)
        // Multi-store: the client names the store (an unknown one is 400); the default store otherwise.
        let storeID = service.stores.isMultiStore ? request.headers[.imageMetaStore] : nil
        let image = try await service.upload(id, body: request.body, declaredSize: declared, storeID: storeID)
        context.logger.info(
            "image uploaded",
            metadata: ["image_id": "\(id)", "size": "\(image.size ?? 0)", "checksum": "\(image.checksum ?? "")"])
        return Response(status: .noContent)
    }

    /// `x-openstack-image-size` wins over Content-Length; a chunked body without either is unknown.
    /// As Glance's `_get_image_size`, `Content-Length: 0` is unknown (`content_length or None`), while
    /// `x-openstack-image-size: 0` is a size of 0 (which the store then reads as "not given").
    static func declaredSize(_ headers: HTTPFields) throws -> Int64? {
        if let text = headers[.imageSize] {
            guard let size = Int64(text.trimmingCharacters(in: .whitespaces)), size >= 0 else {
                throw ImageStoreError.badRequest("x-openstack-image-size must be a non-negative integer")
            }
            return size
        }
        return headers[.contentLength].flatMap { Int64($0) }.flatMap { $0 == 0 ? nil : $0 }
    }

    @Sendable func download(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let id = try context.imageID()
        let image = try await access.image(id, for: "download_image", context)
        if image.status == .deactivated && !context.isAdmin {
            throw ImageStoreError.forbidden("The requested image has been deactivated. Image data download is forbidden.")
        }
        guard image.hasData, let size = image.size else { return Response(status: .noContent) }

        var range: Range<Int64>?
        if let header = request.headers[.range] {
            range = try ByteRange.parse(header, size: size)
        }
        guard let reader = try await service.download(image, range: range) else { return Response(status: .noContent) }

        var headers: HTTPFields = [.contentType: "application/octet-stream", .contentLength: "\(reader.length)"]
        if let checksum = image.checksum { headers[.contentMD5] = checksum }
        var status = HTTPResponse.Status.ok
        if let range {
            status = .partialContent
            headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(size)"
        }
        let channel = context.channel
        let body = ResponseBody(contentLength: Int(reader.length)) { writer in
            let sink = BodySink(writer)
            defer { writer = sink.writer }
            do {
                // A file's bytes go from the page cache to the socket with sendfile (no copy by the server),
                // each call on a store thread under the deadline; anything else is copied in chunks.
                let count = (sink.writer as? any CountsBytesSentElsewhere)?.countSentElsewhere
                if let fileReader = reader as? any FileSendingReader, fileReader.sendsPastFirstChunk,
                    let socket = await SendfileSocket.open(channel, onSent: { count?($0) })
                {
                    defer { socket.close() }
                    try await fileReader.send(writingFirstChunk: { chunk in try await sink.write(chunk) }, into: socket)
                    try await sink.writer.finish(nil)
                    return
                }
                // A few MiB per download, however fast the store reads and however busy the event loop.
                try await reader.forEachChunk(heldAtMost: Self.chunksInFlight) { chunk in try await sink.write(chunk) }
            } catch {
                await reader.close()
                throw error
            }
            try await sink.writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }
}

/// Lets the store's chunk callback write into Hummingbird's `inout` body writer. Used by one
/// task at a time, strictly sequentially.
private final class BodySink: @unchecked Sendable {
    var writer: any ResponseBodyWriter
    init(_ writer: any ResponseBodyWriter) { self.writer = writer }
    func write(_ buffer: ByteBuffer) async throws { try await writer.write(buffer) }
}

/// `Range: bytes=…` for a single range, as Glance: multi-range → 400, unsatisfiable or garbage → 416.
enum ByteRange {
    static func parse(_ header: String, size: Int64) throws -> Range<Int64> {
        let notSatisfiable = ImageStoreError(.rangeNotSatisfiable, "Requested range \(header) is not satisfiable for an image of \(size) bytes.")
        let text = header.trimmingCharacters(in: .whitespaces)
        guard text.lowercased().hasPrefix("bytes=") else { throw notSatisfiable }
        let spec = text.dropFirst(6)
        if spec.contains(",") { throw ImageStoreError.badRequest("Multiple ranges are not supported.") }
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw notSatisfiable }
        let first = parts[0].trimmingCharacters(in: .whitespaces)
        let last = parts[1].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            // bytes=-n: the last n bytes (all of them when n ≥ size). As webob parses it, `bytes=-0` is
            // `bytes=0-`. On a 0-byte image Glance answers a suffix range with 206 and no bytes
            // (`Content-Range: bytes 0--1/0`, its arithmetic): so do we, from the empty range 0..<0.
            guard let n = Int64(last), n >= 0 else { throw notSatisfiable }
            if n == 0 {
                guard size > 0 else { throw notSatisfiable }
                return 0..<size
            }
            return max(0, size - n)..<size
        }
        guard let start = Int64(first), start >= 0, start < size else { throw notSatisfiable }
        if last.isEmpty { return start..<size }
        guard let end = Int64(last), end >= start else { throw notSatisfiable }
        return start..<(min(end, size - 1) + 1)
    }
}
