import Crypto
import Foundation
import ImageStoreCore
import ImageStoreStorage
import ImageStoreTestSupport
import Logging
import NIOCore
import Synchronization
import Testing

/// The stores every conformance test runs on: the filesystem store with direct I/O (its default) and
/// with buffered writes, and the in-memory store.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case filesystem
    case filesystemBuffered
    case inMemory

    var testDescription: String { rawValue }
}

/// A store under test, plus its directory when it has one (to prove nothing is left on disk).
struct StoreFixture: Sendable {
    let store: any ImageDataStore
    let directory: String?

    /// Every name in the store's directory, hidden ones included; empty for the in-memory store.
    func filesOnDisk() throws -> [String] {
        guard let directory else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }
}

let testLogger = Logger(label: "imagestore.storage.tests")

/// A fresh empty directory; the caller removes it.
func makeTemporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("imagestore-storage-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    return path
}

func withStore<T>(
    _ kind: StoreKind, filePermissions: Int = 0, hashAlgorithm: HashAlgorithm = .default,
    _ body: (StoreFixture) async throws -> T
) async throws -> T {
    switch kind {
    case .inMemory:
        return try await body(StoreFixture(store: InMemoryImageStore(hashAlgorithm: hashAlgorithm), directory: nil))
    case .filesystem, .filesystemBuffered:
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = FilesystemImageStore(
            directory: directory, filePermissions: filePermissions, hashAlgorithm: hashAlgorithm,
            directIO: kind == .filesystem, logger: testLogger)
        return try await body(StoreFixture(store: store, directory: directory))
    }
}

func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset + 8 <= count {
            raw.storeBytes(of: generator.next() as UInt64, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < count {
            raw[offset] = UInt8.random(in: .min ... .max, using: &generator)
            offset += 1
        }
    }
    return bytes
}

func md5Hex(_ bytes: [UInt8]) -> String {
    Insecure.MD5.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

func sha512Hex(_ bytes: [UInt8]) -> String {
    SHA512.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// Writes `bytes` in chunks of `chunkSize`, finishes and commits.
@discardableResult
func upload(
    _ store: any ImageDataStore, _ id: ImageID, _ bytes: [UInt8], chunkSize: Int = 64 * 1024, declareSize: Bool = true
) async throws -> StagedImageData {
    let writer = try await store.beginWrite(id, expectedSize: declareSize ? Int64(bytes.count) : nil)
    try await write(bytes, to: writer, chunkSize: chunkSize)
    let staged = try await writer.finish()
    try await writer.commit()
    return staged
}

func write(_ bytes: [UInt8], to writer: any ImageDataWriter, chunkSize: Int) async throws {
    var offset = 0
    while offset < bytes.count {
        let end = min(offset + chunkSize, bytes.count)
        try await writer.write(ByteBuffer(bytes: bytes[offset..<end]))
        offset = end
    }
}

/// Collects a reader's chunks (the body is `@Sendable`, hence the lock).
final class ChunkCollector: Sendable {
    private let state = Mutex<(bytes: [UInt8], chunks: Int)>(([], 0))

    func append(_ buffer: ByteBuffer) {
        state.withLock {
            $0.bytes.append(contentsOf: buffer.readableBytesView)
            $0.chunks += 1
        }
    }

    var bytes: [UInt8] { state.withLock { $0.bytes } }
    var chunks: Int { state.withLock { $0.chunks } }
}

func readAll(_ store: any ImageDataStore, _ id: ImageID, range: Range<Int64>? = nil) async throws -> [UInt8] {
    let reader = try await store.read(id, range: range)
    let collector = ChunkCollector()
    try await reader.forEachChunk { collector.append($0) }
    #expect(Int64(collector.bytes.count) == reader.length)
    return collector.bytes
}

/// Mounts a tmpfs on a fresh directory for the duration of `body`; it is unmounted (lazily if still busy)
/// and removed afterwards, also when `body` throws.
func withTmpfs<T>(sizeBytes: Int64, readOnly: Bool = false, _ body: (String) async throws -> T) async throws -> T {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try Mounts.tmpfs(at: directory, sizeBytes: sizeBytes, readOnly: readOnly)
    defer { Mounts.unmount(directory) }
    return try await body(directory)
}

/// Mounts a ramfs (no size limit; it refuses O_DIRECT) on a fresh directory for the duration of `body`.
func withRamfs<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try Mounts.ramfs(at: directory)
    defer { Mounts.unmount(directory) }
    return try await body(directory)
}

/// The open flags (`/proc/self/fdinfo`) of this process's descriptor on `path`, nil if none is open.
func openFlags(of path: String) -> Int? {
    guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return nil }
    for fd in fds {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)"),
            target == path,
            let info = try? String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags:") })
        else { continue }
        return Int(line.dropFirst("flags:".count).trimmingCharacters(in: .whitespaces), radix: 8)
    }
    return nil
}

/// Linux's O_DIRECT on this architecture (x86_64; arm64 has 0o200000).
#if arch(arm64)
let oDirect = 0o200000
#else
let oDirect = 0o40000
#endif

/// Records what is logged (the direct I/O fallback must be logged once per store).
final class RecordingLogHandler: LogHandler, @unchecked Sendable {
    private let lock = Mutex<[String]>([])
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    var messages: [String] { lock.withLock { $0 } }

    func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        lock.withLock { $0.append(message.description) }
    }
}
