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

/// The `os_hash_value` digest, of the algorithm `hashing_algorithm` chose.
struct MultihashDigest: Sendable {
    let algorithm: HashAlgorithm
    private var digest: Digest

    init(_ algorithm: HashAlgorithm) {
        self.algorithm = algorithm
        digest = Digest(algorithm)
    }

    mutating func update(_ buffer: ByteBuffer) { digest.update(buffer) }

    func hex() -> String { digest.hex() }
}

/// Lowercase hex, as Glance reports checksums.
func hexString(_ digest: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(128)
    for byte in digest {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// md5 (Glance's `checksum`) and the `os_hash_value` multihash of an upload.
///
/// The in-memory store updates both in one place; the filesystem store runs the two digests on
/// separate threads and joins them with `staged(size:md5:multihash:)`.
struct UploadHasher: Sendable {
    var md5 = Digest.md5()
    var multihash: MultihashDigest

    init(algorithm: HashAlgorithm) {
        multihash = MultihashDigest(algorithm)
    }

    mutating func update(_ buffer: ByteBuffer) {
        md5.update(buffer)
        multihash.update(buffer)
    }

    func staged(size: Int64) -> StagedImageData {
        Self.staged(size: size, md5: md5, multihash: multihash)
    }

    static func staged(size: Int64, md5: Digest, multihash: MultihashDigest) -> StagedImageData {
        StagedImageData(size: size, md5: md5.hex(), hashAlgorithm: multihash.algorithm.rawValue, hashValue: multihash.hex())
    }
}
