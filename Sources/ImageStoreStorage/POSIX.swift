#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ImageStoreCore

/// Whether a failing call was reading committed data or writing/publishing it: the same errno
/// (ENOENT) means "no such image" for the one and "the store went away" for the other.
enum IOContext {
    case read
    case write
}

/// The one place an errno becomes an `ImageStoreError`.
func imageStoreError(errno code: Int32, _ what: String, context: IOContext) -> ImageStoreError {
    let reason = "\(what): \(String(cString: strerror(code))) (errno \(code))"
    switch code {
    case ENOSPC, EFBIG, EDQUOT:
        return ImageStoreError(.storageFull, "Image storage media is full: \(reason)")
    case EACCES, EPERM, EROFS:
        return ImageStoreError(.writeDenied, "Image storage refused access: \(reason)")
    case ENOENT:
        switch context {
        case .read: return .notFound("No image data found: \(reason)")
        case .write: return .storeUnavailable("The image store directory is gone: \(reason)")
        }
    case ESTALE, EIO, ETIMEDOUT, ENOTCONN:
        return .storeUnavailable("Image storage is unavailable: \(reason)")
    case EEXIST:
        return .conflict("Image data already exists: \(reason)")
    default:
        return .internal(reason)
    }
}

/// Runs a syscall returning -1/errno, retrying on EINTR; throws the mapped error.
@discardableResult
func posixCall<T: BinaryInteger>(
    _ what: @autoclosure () -> String, context: IOContext, _ body: () -> T
) throws -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = errno
        if code == EINTR { continue }
        throw imageStoreError(errno: code, what(), context: context)
    }
}

/// Closes `fd`; reports the error, since NFS surfaces deferred write errors (ENOSPC, EDQUOT) at close.
func closeFile(_ fd: Int32, _ what: @autoclosure () -> String) throws {
    // No retry on EINTR: on Linux the descriptor is released even then.
    if close(fd) != 0, errno != EINTR {
        throw imageStoreError(errno: errno, what(), context: .write)
    }
}

/// Closes a descriptor that was only read from: there is nothing to report.
func closeDescriptor(_ fd: Int32) {
    _ = close(fd)
}

/// Writes all of `bytes` at the file position.
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ what: @autoclosure () -> String) throws {
    var offset = 0
    while offset < bytes.count {
        let written = try posixCall(what(), context: .write) {
            write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        }
        offset += written
    }
}

/// One write(2) at the file position: the byte count, or -1 with errno (for callers that handle errors
/// themselves, from a scope where `write` names something else).
func writeOnce(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
    write(fd, bytes.baseAddress!, bytes.count)
}

/// Makes directory entries (a created, renamed or removed name) durable.
func fsyncDirectory(_ directory: String) throws {
    let fd = try posixCall("open directory \(directory)", context: .write) {
        open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    }
    defer { close(fd) }
    if fsync(fd) != 0 {
        let code = errno
        // Some filesystems cannot fsync a directory; their metadata operations are synchronous.
        if code != EINVAL && code != ENOTSUP && code != EOPNOTSUPP {
            throw imageStoreError(errno: code, "fsync directory \(directory)", context: .write)
        }
    }
}

func fileStatus(_ path: String, context: IOContext) throws -> stat {
    var status = stat()
    try posixCall("stat \(path)", context: context) { stat(path, &status) }
    return status
}

func isRegularFile(_ status: stat) -> Bool {
    (status.st_mode & S_IFMT) == S_IFREG
}

#if os(Linux)
private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, UInt32) -> Int32
/// glibc ≥ 2.28 exports `renameat2`, but Swift cannot see its declaration (it needs _GNU_SOURCE) nor
/// call the variadic `syscall`, so it is looked up once by name.
private let renameAt2: RenameAt2? = glibcFunction("renameat2", as: RenameAt2.self)

/// A glibc function Swift cannot see the declaration of (it needs _GNU_SOURCE), looked up by name; nil
/// where the C library has none.
func glibcFunction<Function>(_ name: String, as type: Function.Type) -> Function? {
    guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, name) else { return nil }
    return unsafeBitCast(symbol, to: type)
}
private let renameNoReplaceFlag: UInt32 = 1  // RENAME_NOREPLACE
#endif

/// Renames `source` to `target` atomically, but never over an existing `target` (→ `.conflict`).
/// `preferRenameAt2: false` exercises the link + unlink fallback (tests).
func renameNoReplace(_ source: String, _ target: String, preferRenameAt2: Bool = true) throws {
    #if os(Linux)
    if preferRenameAt2, let renameAt2 {
        if renameAt2(AT_FDCWD, source, AT_FDCWD, target, renameNoReplaceFlag) == 0 { return }
        let code = errno
        // NFS and some other filesystems do not support the flag: fall back to link + unlink.
        if code != EINVAL && code != ENOSYS && code != ENOTSUP && code != EOPNOTSUPP {
            throw imageStoreError(errno: code, "rename \(source) to \(target)", context: .write)
        }
    }
    #endif
    // link() refuses an existing target, so the check and the publish are one atomic step.
    if link(source, target) != 0 {
        let code = errno
        // A retransmitted NFS LINK can answer EEXIST although the first one succeeded: same inode → done.
        let linkedAlready =
            code == EEXIST
            && {
                guard let a = try? fileStatus(source, context: .write), let b = try? fileStatus(target, context: .write)
                else { return false }
                return a.st_dev == b.st_dev && a.st_ino == b.st_ino
            }()
        if !linkedAlready {
            throw imageStoreError(errno: code, "link \(source) to \(target)", context: .write)
        }
    }
    // The data is published; a left-over temp name is only a second link to it, removed by the sweep.
    _ = unlink(source)
}

/// Names in `directory`, without "." and "..".
func listDirectory(_ directory: String) throws -> [String] {
    guard let dir = opendir(directory) else {
        throw imageStoreError(errno: errno, "open directory \(directory)", context: .write)
    }
    defer { closedir(dir) }
    var names: [String] = []
    while true {
        errno = 0
        guard let entry = readdir(dir) else {
            if errno != 0 { throw imageStoreError(errno: errno, "read directory \(directory)", context: .write) }
            return names
        }
        let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
            pointer.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                String(cString: $0)
            }
        }
        if name != "." && name != ".." { names.append(name) }
    }
}

/// Linux's O_DIRECT, which Swift's Glibc module does not export (glibc defines it only under
/// _GNU_SOURCE); nil where this build does not know its value (direct I/O stays off there).
#if os(Linux) && arch(x86_64)
let directIOFlag: Int32? = 0o40000
#elseif os(Linux) && arch(arm64)
let directIOFlag: Int32? = 0o200000
#else
let directIOFlag: Int32? = nil
#endif

/// Turns O_DIRECT on or off for an open descriptor. On returns the errno when the filesystem refuses
/// it (EINVAL: tmpfs before Linux 6.6, ramfs, some FUSE filesystems), 0 on success.
func setDirectIO(_ fd: Int32, _ on: Bool) -> Int32 {
    guard let flag = directIOFlag else { return EINVAL }
    let flags = fcntl(fd, F_GETFL)
    if flags < 0 { return errno }
    let wanted = on ? flags | flag : flags & ~flag
    if wanted == flags { return 0 }
    return fcntl(fd, F_SETFL, wanted) == 0 ? 0 : errno
}

/// `sync_file_range(2)`, for write-behind: 0 or the errno.
package typealias SyncFileRangeCall = @Sendable (_ fd: Int32, _ offset: Int64, _ length: Int64, _ flags: UInt32) -> Int32

enum SyncFileRange {
    static let waitBefore: UInt32 = 1  // SYNC_FILE_RANGE_WAIT_BEFORE
    static let write: UInt32 = 2  // SYNC_FILE_RANGE_WRITE
    static let waitAfter: UInt32 = 4  // SYNC_FILE_RANGE_WAIT_AFTER

    #if os(Linux)
    private typealias Function = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    /// Linux-only and declared by glibc only under _GNU_SOURCE, so looked up once by name (as renameat2).
    private static let function = glibcFunction("sync_file_range", as: Function.self)
    #endif

    /// The system's call; ENOSYS where there is none.
    static let system: SyncFileRangeCall = { fd, offset, length, flags in
        #if os(Linux)
        guard let function else { return ENOSYS }
        return function(fd, offset, length, flags) == 0 ? 0 : errno
        #else
        return ENOSYS
        #endif
    }

    /// The errors that mean "not here" rather than "the data did not get written": no such call
    /// (ENOSYS, or EPERM from a seccomp filter), a descriptor or filesystem it does not apply to.
    static func isRefusal(_ code: Int32) -> Bool {
        code == EINVAL || code == ENOSYS || code == ESPIPE || code == EOPNOTSUPP || code == ENOTSUP || code == EPERM
    }
}

/// What an upload's file does about write-behind: the window (bytes, 0: off), the call, and whom to tell
/// when the system refuses it.
struct WriteBehind: Sendable {
    var window: Int
    var call: SyncFileRangeCall
    var onRefused: @Sendable (Int32) -> Void

    static let off = WriteBehind(window: 0, call: SyncFileRange.system, onRefused: { _ in })
}
