import Foundation
import HTTPTypes
import Hummingbird
import ImageStoreCore
import Logging
import NIOCore

/// The single place where an error becomes an HTTP status. Glance's codes (see
/// docs/api.md): 410 for a gone/disabled store on writes (the SDK retries 503, so 503 would only
/// delay the answer), 503 + Retry-After for reads while the store is unavailable.
extension ImageStoreError.Code {
    var httpStatus: HTTPResponse.Status {
        switch self {
        case .notFound: .notFound
        case .conflict: .conflict
        case .badRequest, .sizeMismatch: .badRequest
        case .forbidden: .forbidden
        case .imageTooLarge, .quotaExceeded, .limitExceeded, .storageFull, .payloadTooLarge: .contentTooLarge
        case .writeDenied, .readUnavailable, .dependencyUnavailable: .serviceUnavailable
        case .unauthorized: .unauthorized
        case .storeUnavailable, .deletedDuringUpload: .gone
        case .unsupportedMediaType: .unsupportedMediaType
        case .rangeNotSatisfiable: .rangeNotSatisfiable
        case .clientDisconnected: .init(code: 499, reasonPhrase: "Client Closed Request")
        case .internal: .internalServerError
        }
    }
}

/// The deployment's choices in the table: `store_unavailable_status` answers writes to a gone or hung
/// store with 410 (default) or 503 + Retry-After.
struct ErrorTable: Sendable {
    var storeUnavailable: HTTPResponse.Status = .gone
    /// Seconds a client is told to wait before retrying a 503 caused by the store.
    static let retryAfterSeconds = "5"

    func status(for code: ImageStoreError.Code) -> HTTPResponse.Status {
        code == .storeUnavailable ? storeUnavailable : code.httpStatus
    }
}

/// An error on its way to the client: status, message and any extra headers.
struct APIError: Error, HTTPResponseError {
    var status: HTTPResponse.Status
    var message: String
    var headers: HTTPFields = [:]
    /// Unexpected errors are logged with their detail; the client sees a generic message.
    var isUnexpected = false

    init(status: HTTPResponse.Status, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.message = message
        self.headers = headers
    }

    init(_ error: any Error, table: ErrorTable = ErrorTable()) {
        switch error {
        case let error as APIError:
            self = error
        case let error as ImageStoreError:
            self.init(status: table.status(for: error.code), message: error.message)
            if error.code == .readUnavailable || (error.code == .storeUnavailable && status == .serviceUnavailable) {
                headers[.retryAfter] = ErrorTable.retryAfterSeconds
            }
            if error.code == .internal { isUnexpected = true }
        case let error as HTTPError:
            // Hummingbird's own errors: unknown route, body over the JSON limit, bad request line…
            let message: String
            switch error.status {
            case .notFound: message = "The resource could not be found."
            case .contentTooLarge: message = "Request body is too large."
            default: message = error.body ?? error.status.reasonPhrase
            }
            self.init(status: error.status, message: message, headers: error.headers)
        case is CancellationError:
            self.init(status: ImageStoreError.Code.clientDisconnected.httpStatus, message: "Request cancelled")
        default:
            self.init(status: .internalServerError, message: "\(error)")
            isUnexpected = true
        }
    }

    func response(requestID: String, logger: Logger) -> Response {
        var message = self.message
        if isUnexpected {
            logger.error("unexpected error", metadata: ["error": .string(message)])
            message = "The server has either erred or is incapable of performing the requested operation. (request \(requestID))"
        }
        // Nested object: glanceclient reads `message` from each top-level value; openstacksdk finds it nested too.
        let body: JSONValue = [
            "error": ["code": .int(Int64(status.code)), "title": .string(status.reasonPhrase), "message": .string(message)]
        ]
        var fields = headers
        fields[.contentType] = "application/json; charset=UTF-8"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: body.serialized())))
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        response(requestID: "", logger: context.logger)
    }
}

extension APIError {
    static func badRequest(_ message: String) -> APIError { .init(status: .badRequest, message: message) }
    static func forbidden(_ message: String) -> APIError { .init(status: .forbidden, message: message) }
    static func notFound(_ message: String) -> APIError { .init(status: .notFound, message: message) }
    static func conflict(_ message: String) -> APIError { .init(status: .conflict, message: message) }
}
