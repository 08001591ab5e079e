import Crypto
import ImageStoreCore
import NIOCore

/// Counts bytes against the declared size. Shared by every store so the messages (and the moment an
/// oversized upload is refused) are the same everywhere.
struct SizeTracker: Sendable {
    let expectedSize: Int64?
    private(set) var received: Int64 = 0

    init(expectedSize: Int64?) {
        self.expectedSize = expectedSize
    }

    /// Accounts for `count` more bytes; throws as soon as the total passes the expected size, so an
    /// oversized body is refused before it is stored.
    mutating func add(_ count: Int) throws {
        received += Int64(count)
        if let expectedSize, received > expectedSize {
            throw ImageStoreError(.sizeMismatch, "Size exceeds: expected \(expectedSize) bytes, got \(received) bytes")
        }
    }

    /// At the end of the stream: the total must equal the expected size, when one was given.
    func checkComplete() throws {
        if let expectedSize, received != expectedSize {
            throw ImageStoreError(.sizeMismatch, "Size mismatch: expected \(expectedSize) bytes, got \(received) bytes")
        }
    }
}

/// One running digest over a stream of buffers.
///
/// `@unchecked`: swift-crypto's digest structs are plain values (their state is copied, not shared)
/// but are not annotated `Sendable`; a digest is only ever mutated by one thread at a time.
struct StreamDigest<H: HashFunction>: @unchecked Sendable {
    private var function = H()

    mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { function.update(bufferPointer: $0) }
    }

    /// Lowercase hex, as Glance reports checksums.
    func hex() -> String {
        function.finalize().map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

/// md5 (Glance's `checksum`) and sha512 (the `os_hash_value` multihash) of an upload.
///
/// The in-memory store updates both in one place; the filesystem store runs the two digests on
/// separate threads (each is ~630 MB/s on one core) and joins them with `staged(size:md5:sha512:)`.
struct UploadHasher: Sendable {
    var md5 = StreamDigest<Insecure.MD5>()
    var sha512 = StreamDigest<SHA512>()

    mutating func update(_ buffer: ByteBuffer) {
        md5.update(buffer)
        sha512.update(buffer)
    }

    func staged(size: Int64) -> StagedImageData {
        Self.staged(size: size, md5: md5, sha512: sha512)
    }

    static func staged(size: Int64, md5: StreamDigest<Insecure.MD5>, sha512: StreamDigest<SHA512>) -> StagedImageData {
        StagedImageData(size: size, md5: md5.hex(), hashAlgorithm: "sha512", hashValue: sha512.hex())
    }
}
