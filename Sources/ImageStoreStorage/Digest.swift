import COpenSSL
import ImageStoreCore
import NIOCore

/// A running digest over a stream of buffers, computed by the system's OpenSSL libcrypto (EVP) — the
/// library Glance's hashlib uses.
///
/// Why not swift-crypto for this one job: an upload hashes every byte with md5 and (by default) sha512,
/// and swift-crypto's SHA-512 cost about twice OpenSSL's per byte on this CPU (docs/performance.md,
/// "Hashing with OpenSSL"); md5 and sha256 cost the same in both.
///
/// A value: a copy that is updated leaves the original as it was (the context is copied on write).
/// `@unchecked Sendable`: a digest is only ever used by one thread at a time.
struct Digest: @unchecked Sendable {
    private final class Context {
        let pointer: OpaquePointer

        init(_ type: OpaquePointer) {
            pointer = EVP_MD_CTX_new()
            // Fails only without memory or with a digest this libcrypto lacks (none of ours).
            precondition(EVP_DigestInit_ex(pointer, type, nil) == 1, "EVP_DigestInit_ex failed")
        }

        init(copying other: Context) {
            pointer = EVP_MD_CTX_new()
            precondition(EVP_MD_CTX_copy_ex(pointer, other.pointer) == 1, "EVP_MD_CTX_copy_ex failed")
        }

        deinit { EVP_MD_CTX_free(pointer) }
    }

    private var context: Context

    /// md5: Glance's `checksum`.
    static func md5() -> Digest { Digest(type: EVP_md5()) }

    /// The `os_hash_value` digest of `algorithm`.
    init(_ algorithm: HashAlgorithm) {
        switch algorithm {
        case .sha1: self.init(type: EVP_sha1())
        case .sha256: self.init(type: EVP_sha256())
        case .sha384: self.init(type: EVP_sha384())
        case .sha512: self.init(type: EVP_sha512())
        }
    }

    private init(type: OpaquePointer) {
        context = Context(type)
    }

    mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { update($0) }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        if !isKnownUniquelyReferenced(&context) { context = Context(copying: context) }
        precondition(EVP_DigestUpdate(context.pointer, bytes.baseAddress, bytes.count) == 1, "EVP_DigestUpdate failed")
    }

    /// Lowercase hex, as Glance reports checksums. The digest can go on being updated afterwards.
    func hex() -> String {
        let final = Context(copying: context)
        var bytes = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        precondition(EVP_DigestFinal_ex(final.pointer, &bytes, &length) == 1, "EVP_DigestFinal_ex failed")
        return hexString(bytes.prefix(Int(length)))
    }
}
