import Foundation

/// The marker file's content: which share this is.
///
/// `imagestore init-store` writes a store id (a UUID) and the creation time as `key = value` lines; the
/// mount guard records the id in the metadata at the first writable check and afterwards refuses writes
/// when the mounted share's marker carries another id (a different share mounted at the same path).
/// Glance's convention is an empty `.glance`: still accepted, as an unidentified share (with a warning),
/// until `imagestore init-store --adopt` writes an id into it.
public struct StoreMarker: Sendable, Equatable {
    /// The share's id; nil for an empty (Glance-style) marker or one without a `store_id` line.
    public var storeID: String?
    /// When `init-store` wrote it, as written (ISO 8601); informational.
    public var createdAt: String?

    /// More than this is not a marker we wrote; only the start is read (bounded work on a slow share).
    public static let maximumSize = 4096

    public init(storeID: String?, createdAt: String? = nil) {
        self.storeID = storeID
        self.createdAt = createdAt
    }

    /// A new identity for `init-store`.
    public static func new(now: Date = Date()) -> StoreMarker {
        StoreMarker(storeID: UUID().uuidString.lowercased(), createdAt: ISO8601DateFormatter().string(from: now))
    }

    enum Key {
        static let storeID = "store_id"
        static let createdAt = "created_at"
    }

    /// Reads `key = value` lines; blank lines and `#` comments are skipped, unknown keys ignored.
    public init(parsing text: String) {
        var storeID: String?
        var createdAt: String?
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#"), let equals = trimmed.firstIndex(of: "=") else { continue }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            guard !value.isEmpty else { continue }
            switch key {
            case Key.storeID: storeID = value
            case Key.createdAt: createdAt = value
            default: continue
            }
        }
        self.init(storeID: storeID, createdAt: createdAt)
    }

    /// The file's text.
    public var rendered: String {
        var text = "# ImageStore store marker: identifies this share. Never copy it to another share.\n"
        if let storeID { text += "\(Key.storeID) = \(storeID)\n" }
        if let createdAt { text += "\(Key.createdAt) = \(createdAt)\n" }
        return text
    }
}

#if canImport(Glibc)
import Glibc
#endif

// MARK: File I/O (blocking: call only under a deadline, e.g. on a `BlockingCallExecutor`)

extension StoreMarker {
    /// The marker's first `maximumSize` bytes as text, or the errno of the failing call.
    public static func readText(at path: String) -> Result<String, POSIXError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: maximumSize)
        let count = read(fd, &bytes, bytes.count)
        guard count >= 0 else { return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
        return .success(String(decoding: bytes[0..<count], as: UTF8.self))
    }

    /// Replaces (or creates) the marker at `path` atomically: a temporary file beside it, fsynced, renamed
    /// over it, then the directory fsynced, so a crash leaves the old marker or the new one, never half.
    public func write(to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        let temporary = "\(path).tmp-\(UUID().uuidString.prefix(8).lowercased())"
        func fail(_ what: String) -> POSIXError {
            POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO, userInfo: [NSLocalizedDescriptionKey: "\(what): \(String(cString: strerror(errno)))"])
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("create \(temporary)") }
        let bytes = Array(rendered.utf8)
        let written = Glibc.write(fd, bytes, bytes.count)
        guard written == bytes.count, fsync(fd) == 0 else {
            let error = fail("write \(temporary)")
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = fail("rename \(temporary) to \(path)")
            unlink(temporary)
            throw error
        }
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
    }
}
