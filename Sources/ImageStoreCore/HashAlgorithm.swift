/// The algorithm of an image's `os_hash_value` (Glance's `[DEFAULT] hashing_algorithm`, recorded per
/// image in `os_hash_algo`). `checksum` stays md5 whatever this is, as in Glance.
///
/// Glance accepts any name Python's hashlib knows; these are the SHA-1/SHA-2 ones (hashed by OpenSSL, Digest.swift). sha256
/// is the fast one on CPUs with SHA extensions (about twice sha512's speed there).
public enum HashAlgorithm: String, Sendable, CaseIterable, Equatable {
    case sha1
    case sha256
    case sha384
    case sha512

    /// Glance's default.
    public static let `default` = HashAlgorithm.sha512
}
