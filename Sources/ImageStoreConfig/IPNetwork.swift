import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// An `allowed_source_ranges` entry: an IPv4 or IPv6 network (`10.0.0.0/8`, `fd00::/8`, or a
/// bare address meaning /32 or /128).
public struct IPNetwork: Sendable, Equatable, CustomStringConvertible {
    public let bytes: [UInt8]
    public let prefixLength: Int
    public let description: String

    /// nil if `text` is not an address with an optional prefix length. Host bits are ignored (Python's
    /// `ip_network` would reject them). The configuration reader parses each entry once, with this.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bytes = Self.parse(String(parts[0])) else { return nil }
        let maxPrefix = bytes.count * 8
        if parts.count == 2 {
            // Digits only ("/+8" and "/ 8" are not prefix lengths, though Int() would take the first).
            guard !parts[1].isEmpty, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let prefix = Int(parts[1]),
                (0...maxPrefix).contains(prefix)
            else { return nil }
            prefixLength = prefix
        } else {
            prefixLength = maxPrefix
        }
        self.bytes = bytes
        description = text
    }

    /// Whether `address` (textual, as the socket reports it) is in this network. Like oslo, an IPv4
    /// network only holds IPv4 addresses, but an IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`, seen on a
    /// dual-stack socket) counts as the IPv4 address it is.
    public func contains(address: String) -> Bool {
        guard var peer = Self.parse(address) else { return false }
        if peer.count == 16 && bytes.count == 4 && peer.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
            peer = Array(peer.suffix(4))
        }
        guard peer.count == bytes.count else { return false }
        var remaining = prefixLength
        for index in bytes.indices where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if peer[index] & mask != bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    static func parse(_ text: String) -> [UInt8]? {
        var v4 = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, text, &v4) == 1 { return v4 }
        var v6 = [UInt8](repeating: 0, count: 16)
        // Strip a zone (`fe80::1%eth0`).
        let address = text.split(separator: "%", maxSplits: 1).first.map(String.init) ?? text
        if inet_pton(AF_INET6, address, &v6) == 1 { return v6 }
        return nil
    }
}
