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
        hexString(function.finalize())
    }
}

/// The `os_hash_value` digest, of the algorithm `hashing_algorithm` chose. An enum of the concrete
/// swift-crypto types rather than an existential, so `update` stays a direct call per batch.
struct MultihashDigest: @unchecked Sendable {
    private enum State {
        case sha1(Insecure.SHA1)
        case sha256(SHA256)
        case sha384(SHA384)
        case sha512(SHA512)
    }
    let algorithm: HashAlgorithm
    private var state: State

    init(_ algorithm: HashAlgorithm) {
        self.algorithm = algorithm
        switch algorithm {
        case .sha1: state = .sha1(Insecure.SHA1())
        case .sha256: state = .sha256(SHA256())
        case .sha384: state = .sha384(SHA384())
        case .sha512: state = .sha512(SHA512())
        }
    }

    mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            switch state {
            case .sha1(var h): h.update(bufferPointer: bytes); state = .sha1(h)
            case .sha256(var h): h.update(bufferPointer: bytes); state = .sha256(h)
            case .sha384(var h): h.update(bufferPointer: bytes); state = .sha384(h)
            case .sha512(var h): h.update(bufferPointer: bytes); state = .sha512(h)
            }
        }
    }

    func hex() -> String {
        switch state {
        case .sha1(let h): return hexString(h.finalize())
        case .sha256(let h): return hexString(h.finalize())
        case .sha384(let h): return hexString(h.finalize())
        case .sha512(let h): return hexString(h.finalize())
        }
    }
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
    var md5 = StreamDigest<Insecure.MD5>()
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

    static func staged(size: Int64, md5: StreamDigest<Insecure.MD5>, multihash: MultihashDigest) -> StagedImageData {
        StagedImageData(size: size, md5: md5.hex(), hashAlgorithm: multihash.algorithm.rawValue, hashValue: multihash.hex())
    }
}
