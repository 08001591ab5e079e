/// The domain errors every module throws. The API maps each code to an HTTP status in one table
/// (`ImageStoreError+HTTP.swift`); nothing else decides a status code.
///
/// A struct wrapping a code, so new codes do not break callers' switches (the PersistError pattern).
public struct ImageStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The image (or its data) does not exist.
        case notFound
        /// The request conflicts with the image's state (e.g. upload to a non-queued image).
        case conflict
        /// Malformed or invalid input.
        case badRequest
        /// Not allowed (read-only attribute, protected image, …).
        case forbidden
        /// The declared size and the bytes received differ.
        case sizeMismatch
        /// `image_size_cap` exceeded.
        case imageTooLarge
        /// `user_storage_quota` exceeded.
        case quotaExceeded
        /// A per-image limit exceeded: `image_property_quota`, `image_tag_quota`, `image_member_quota`,
        /// `image_location_quota` (Glance's 413).
        case limitExceeded
        /// The store's filesystem is full (ENOSPC/EFBIG).
        case storageFull
        /// The store refuses writes (EACCES/EROFS).
        case writeDenied
        /// The store is gone or disabled (mount guard): writes answer 410.
        case storeUnavailable
        /// Reads cannot be served right now: 503 with Retry-After.
        case readUnavailable
        /// The image was deleted while its data was being uploaded.
        case deletedDuringUpload
        /// Wrong Content-Type.
        case unsupportedMediaType
        /// A Range that cannot be satisfied.
        case rangeNotSatisfiable
        /// A request body too large for a JSON route.
        case payloadTooLarge
        /// The client stopped sending (disconnect or stall).
        case clientDisconnected
        /// No valid credentials (missing, invalid or expired token): 401 with `WWW-Authenticate`.
        case unauthorized
        /// A service this request depends on (Keystone) is down or too slow: 503.
        case dependencyUnavailable
        /// An unexpected failure; logged with details, answered 500.
        case `internal`
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func notFound(_ message: String) -> Self { .init(.notFound, message) }
    public static func conflict(_ message: String) -> Self { .init(.conflict, message) }
    public static func badRequest(_ message: String) -> Self { .init(.badRequest, message) }
    public static func forbidden(_ message: String) -> Self { .init(.forbidden, message) }
    public static func storeUnavailable(_ reason: String) -> Self { .init(.storeUnavailable, reason) }
    public static func `internal`(_ message: String) -> Self { .init(.internal, message) }
}
